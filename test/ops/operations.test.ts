import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readChunkTexts } from '../../activities/artifactKinds/chunksArtifact.ts';
import { S3Store } from '../../artifacts/s3Store.ts';
import { LocalStore } from '../../artifacts/store.ts';
import type { RunView } from '../../cli/runs.ts';
import { llmEnv } from '../llm/fixtures.ts';
import { cli, collect, remote, spawnCliKilledAfterEach, testEnv, until } from '../support/cli.ts';
import { LlmServer } from '../support/llmServer.ts';
import { startS3Server } from '../support/s3Server.ts';

// Schedulers and on-call staff: scheduled reruns pay only for what changed (counted at the LLM
// server), a run survives losing a worker (SIGKILL or SIGTERM), cpu and gpu workers in separate
// processes share one S3 store, and gc never deletes what a kept run needs.

const PIPELINE = 'test/fixtures/pipelines/words.ts';
/** ingest → chunk → one question per chunk from the test LLM server. */
const SCHEDULED = 'test/fixtures/pipelines/scheduledLlm.ts';
/** words with its summary stage on the gpu queue. */
const GPU_PIPELINE = 'test/fixtures/pipelines/wordsGpu.ts';
const start = spawnCliKilledAfterEach();

function worker(env: Record<string, string>, pipeline = PIPELINE): ChildProcess {
  return start(['worker', '--queue', 'workflow', '--queue', 'cpu', '--queue', 'gpu', '--pipeline', pipeline], env);
}

const statuses = (json: { stages: Array<{ id: string; status: string }> }) => Object.fromEntries(json.stages.map((s) => [s.id, s.status]));

describe('operations', () => {
  it('a schedule triggered twice on an unchanged corpus runs everything cached; a new document pays only for its own chunks', async () => {
    const server = await LlmServer.start({ env: llmEnv, servedModel: 'gemma-test', threads: 1, parallel: 1, templates: 1 });
    try {
      const env = remote(await testEnv());
      const corpus = await mkdtemp(join(tmpdir(), 'ef-sched-corpus-'));
      await writeFile(join(corpus, 'harbour.md'), '# Harbour\n\nThe harbour lighthouse was built in 1872 and electrified in 1931.\n');
      await writeFile(join(corpus, 'library.md'), '# Library\n\nThe town library is closed on Mondays; its archive room keeps old maps.\n');
      const name = `sched-${env.EMBEDFLOW_QUEUE_PREFIX}`;
      const llm = { provider: 'openai', baseUrl: server.url, model: 'gemma-test', timeoutMs: 60_000 };
      // --every 24h and --paused: only `schedule trigger` starts runs here.
      const created = await cli(
        ['schedule', 'create', name, SCHEDULED, '--corpus', corpus, '--every', '24h', '--paused', '--set', `queries.llm=${JSON.stringify(llm)}`],
        env,
      );
      expect(created.code, created.stderr).toBe(0);
      worker(env, SCHEDULED);
      const runs: string[] = [];
      const triggerAndWait = async () => {
        expect((await cli(['schedule', 'trigger', name], env)).code).toBe(0);
        const runId = await until(async () => {
          const d = JSON.parse((await cli(['schedule', 'describe', name], env)).stdout) as { recentRuns: Array<{ runId: string }> };
          return d.recentRuns.map((r) => r.runId).find((id) => !runs.includes(id));
        }, 30_000, 'the triggered run');
        runs.push(runId);
        return until(async () => {
          const view = (await cli(['status', runId, '--json'], env)).json as RunView | undefined;
          return view?.status === 'completed' ? view : undefined;
        }, 180_000, `run ${runId} to complete`);
      };
      const store = new LocalStore(env.EMBEDFLOW_STORE);
      const chunksOf = async (view: RunView) => readChunkTexts(await store.open(view.stages.find((s) => s.id === 'chunks')!.artifact!));

      const first = await triggerAndWait();
      expect(statuses(first)).toEqual({ documents: 'ran', chunks: 'ran', queries: 'ran' });
      const before = await chunksOf(first);
      expect(before.length).toBeGreaterThanOrEqual(2);
      // One call per chunk, each chunk once.
      expect(server.calls).toHaveLength(before.length);
      for (const c of before) expect(server.callsFor(c.text), c.text).toBe(1);

      const second = await triggerAndWait();
      expect(statuses(second)).toEqual({ documents: 'cached', chunks: 'cached', queries: 'cached' });
      expect(server.calls).toHaveLength(before.length);

      await writeFile(join(corpus, 'market.md'), '# Market\n\nThe station market sells local vegetables and fish from six every morning.\n');
      const paidBefore = server.calls.length;
      const third = await triggerAndWait();
      expect(statuses(third)).toEqual({ documents: 'ran', chunks: 'ran', queries: 'ran' });
      const after = await chunksOf(third);
      const old = new Set(before.map((c) => c.text));
      const added = after.filter((c) => !old.has(c.text));
      expect(added.length).toBeGreaterThanOrEqual(1);
      expect(added.every((c) => c.text.includes('market'))).toBe(true);
      expect(after).toHaveLength(before.length + added.length);
      // Paid for: exactly the new document's chunks, once each; the old ones came from the memo.
      expect(server.calls.length - paidBefore).toBe(added.length);
      for (const c of added) expect(server.callsFor(c.text), c.text).toBe(1);
      for (const c of before) expect(server.callsFor(c.text), c.text).toBe(1);
      expect(third.stages.find((s) => s.id === 'queries')?.stats).toMatchObject({ chunks: after.length, llmCalls: added.length, memoHits: before.length });
      expect((await cli(['schedule', 'delete', name], env)).code).toBe(0);
    } finally {
      await server.close();
    }
  });

  it('two workers, one killed mid-run: the other finishes the run', async () => {
    const base = await testEnv();
    const env = remote({ ...base, EMBEDFLOW_TEST_LOG: join(base.EMBEDFLOW_STORE, 'stage.log') });
    const log = async () => (await readFile(env.EMBEDFLOW_TEST_LOG!, 'utf8').catch(() => '')).split('\n').filter(Boolean);
    const a = worker(env);
    const run = start(['run', PIPELINE, '--json', '--set', 'words.sleepMs=6000', '--set', 'chars.sleepMs=6000'], env);
    const result = collect(run);
    await until(async () => (await log()).includes('words start'), 60_000, 'words to start');
    worker(env);
    a.kill('SIGKILL');
    const res = await result;
    expect(res.code, res.stderr).toBe(0);
    expect((await log()).filter((l) => l === 'summary end')).toHaveLength(1);
  });

  it('Ctrl-C on `embedflow run` (embedded worker) returns at once with how to go on; `resume` finishes the run', async () => {
    const base = await testEnv();
    const env = { ...base, EMBEDFLOW_TEST_LOG: join(base.EMBEDFLOW_STORE, 'stage.log') };
    const log = async () => (await readFile(env.EMBEDFLOW_TEST_LOG, 'utf8').catch(() => '')).split('\n').filter(Boolean);
    const run = start(['run', PIPELINE, '--json', '--set', 'words.sleepMs=6000'], env);
    const result = collect(run);
    await until(async () => (await log()).includes('words start') && (await log()).includes('chars end'), 60_000, 'words to start');
    const interrupted = Date.now();
    run.kill('SIGINT');
    const res = await result;
    // Before, the CLI stopped its worker and then followed a run nothing served: it never returned.
    expect(Date.now() - interrupted).toBeLessThan(20_000);
    expect(res.code, res.stderr).toBe(130);
    const runId = /embedflow resume (\S+)`/.exec(res.stderr)?.[1];
    expect(runId, res.stderr).toMatch(/^words-/);

    const resumed = await cli(['resume', runId!, '--json'], env);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.json.status).toBe('completed');
    const lines = await log();
    expect(lines.filter((l) => l === 'chars start')).toHaveLength(1);
    expect(lines.filter((l) => l === 'words end')).toHaveLength(1);
    expect(lines.filter((l) => l === 'summary end')).toHaveLength(1);
  });

  it('SIGTERM: a worker shuts down gracefully, its activity is retried on another worker', async () => {
    const base = await testEnv();
    const env = remote({ ...base, EMBEDFLOW_TEST_LOG: join(base.EMBEDFLOW_STORE, 'stage.log') });
    const log = async () => (await readFile(env.EMBEDFLOW_TEST_LOG!, 'utf8').catch(() => '')).split('\n').filter(Boolean);
    const a = worker(env);
    const run = start(['run', PIPELINE, '--json', '--set', 'words.sleepMs=6000'], env);
    const result = collect(run);
    await until(async () => (await log()).includes('words start'), 60_000, 'words to start');
    worker(env);
    const aDone = collect(a);
    a.kill('SIGTERM');
    const aOut = await aDone;
    expect(aOut.code).toBe(0);
    expect(aOut.stderr).toContain('shutting down');
    const res = await result;
    expect(res.code, res.stderr).toBe(0);
    const lines = await log();
    expect(lines.filter((l) => l === 'words start')).toHaveLength(2);
    expect(lines.filter((l) => l === 'words end')).toHaveLength(1);
  });

  it('a cpu worker and a gpu worker sharing only the Temporal server and an S3 store: the gpu stage runs on the gpu worker', async () => {
    const s3 = await startS3Server();
    try {
      await s3.createBucket('ef-ops');
      const base = remote(await testEnv());
      const store = `s3://ef-ops/${base.EMBEDFLOW_QUEUE_PREFIX}`;
      // Each "host" has its own home (so its own S3 cache) and its own stage log: what one worker ran
      // shows up in its log only.
      const host = async (role: string) => {
        const home = await mkdtemp(join(tmpdir(), `ef-host-${role}-`));
        return { ...base, ...s3.env, EMBEDFLOW_STORE: store, EMBEDFLOW_HOME: home, EMBEDFLOW_TEST_LOG: join(home, 'stage.log') };
      };
      const lines = async (file: string) => (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean);
      const cpuHost = await host('cpu');
      const gpuHost = await host('gpu');
      start(['worker', '--queue', 'workflow', '--queue', 'cpu', '--pipeline', GPU_PIPELINE], cpuHost);
      start(['worker', '--queue', 'gpu', '--pipeline', GPU_PIPELINE], gpuHost);
      const res = await cli(['run', GPU_PIPELINE, '--json'], await host('cli'));
      expect(res.code, res.stderr).toBe(0);
      expect(statuses(res.json)).toEqual({ words: 'ran', chars: 'ran', summary: 'ran' });
      expect((await lines(cpuHost.EMBEDFLOW_TEST_LOG)).sort()).toEqual(['chars end', 'chars start', 'words end', 'words start']);
      expect(await lines(gpuHost.EMBEDFLOW_TEST_LOG)).toEqual(['summary start', 'summary end']);
      // The gpu worker read what the cpu worker published, and published its own result to the bucket.
      const summary = res.json.stages.find((s: { id: string }) => s.id === 'summary').artifact as string;
      const fresh = S3Store.fromUrl(store, { env: s3.env, home: await mkdtemp(join(tmpdir(), 'ef-host-reader-')) });
      const out = JSON.parse(await readFile((await fresh.open(summary)).file('summary.json'), 'utf8')) as { words: number; chars: number };
      expect(out.words).toBeGreaterThan(0);
      expect(out.chars).toBeGreaterThan(out.words);
    } finally {
      await s3.stop();
    }
  });

  it('gc keeps everything the last runs need, frees the rest, and is a dry run by default', async () => {
    const env = await testEnv();
    for (const salt of ['a', 'b', 'c']) {
      const r = await cli(['run', PIPELINE, '--json', '--set', `chars.salt=${salt}`], env);
      expect(r.code, r.stderr).toBe(0);
    }
    const artifacts = async () => (await readdir(join(env.EMBEDFLOW_STORE, 'artifacts'))).length;
    // corpus + words + three chars + three summaries
    expect(await artifacts()).toBe(8);
    const dry = await cli(['gc', '--keep', '1', '--json'], env);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.json.deleteArtifacts.length).toBeGreaterThanOrEqual(2);
    expect(await artifacts()).toBe(8);
    const applied = await cli(['gc', '--keep', '1', '--apply', '--json'], env);
    expect(applied.code, applied.stderr).toBe(0);
    // Other tests' runs of the same pipeline share this dev server but not this store: only this
    // store's unreachable summaries go.
    expect(await artifacts()).toBe(4);
    const kept = await cli(['run', PIPELINE, '--json', '--set', 'chars.salt=c'], env);
    expect(statuses(kept.json)).toEqual({ words: 'cached', chars: 'cached', summary: 'cached' });
    const verify = await cli(['store', 'verify'], env);
    expect(verify.code, verify.stderr).toBe(0);
  });
});
