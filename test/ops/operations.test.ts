import type { ChildProcess } from 'node:child_process';
import { cp, mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, collect, remote, spawnCliKilledAfterEach, testEnv, until } from '../support/cli.ts';

// Schedulers and on-call staff: scheduled reruns pay only for what changed, a run survives losing a
// worker (SIGKILL or SIGTERM), and gc never deletes what a kept run needs.

const PIPELINE = 'test/fixtures/pipelines/words.ts';
const FIXTURE_CORPUS = 'test/fixtures/smallcorpus';
const start = spawnCliKilledAfterEach();

function worker(env: Record<string, string>): ChildProcess {
  return start(['worker', '--queue', 'workflow', '--queue', 'cpu', '--queue', 'gpu', '--pipeline', PIPELINE], env);
}

async function corpusCopy(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ef-corpus-'));
  await cp(FIXTURE_CORPUS, dir, { recursive: true });
  return dir;
}

const statuses = (json: { stages: Array<{ id: string; status: string }> }) => Object.fromEntries(json.stages.map((s) => [s.id, s.status]));

describe('operations', () => {
  it('a schedule triggered twice on an unchanged corpus runs everything cached; a grown corpus reruns', async () => {
    const env = remote(await testEnv());
    const corpus = await corpusCopy();
    const name = `sched-${env.EMBEDFLOW_QUEUE_PREFIX}`;
    const created = await cli(['schedule', 'create', name, PIPELINE, '--corpus', corpus, '--every', '24h', '--paused'], env);
    expect(created.code, created.stderr).toBe(0);
    worker(env);
    const runs: string[] = [];
    const triggerAndWait = async () => {
      expect((await cli(['schedule', 'trigger', name], env)).code).toBe(0);
      const runId = await until(async () => {
        const d = JSON.parse((await cli(['schedule', 'describe', name], env)).stdout) as { recentRuns: Array<{ runId: string }> };
        const fresh = d.recentRuns.map((r) => r.runId).find((id) => !runs.includes(id));
        return fresh;
      }, 30_000, 'the triggered run');
      runs.push(runId);
      return until(async () => {
        const s = await cli(['status', runId, '--json'], env);
        const view = JSON.parse(s.stdout) as { status: string; stages: Array<{ id: string; status: string }> };
        return view.status === 'completed' ? view : undefined;
      }, 60_000, `run ${runId} to complete`);
    };
    const first = await triggerAndWait();
    expect(statuses(first)).toEqual({ words: 'ran', chars: 'ran', summary: 'ran' });
    const second = await triggerAndWait();
    expect(statuses(second)).toEqual({ words: 'cached', chars: 'cached', summary: 'cached' });
    await writeFile(join(corpus, 'new.md'), '# new\n\nA new document arrived overnight.\n');
    const third = await triggerAndWait();
    expect(statuses(third)).toEqual({ words: 'ran', chars: 'ran', summary: 'ran' });
    expect((await cli(['schedule', 'delete', name], env)).code).toBe(0);
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
