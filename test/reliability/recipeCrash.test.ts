import type { ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { builtinTemplate, renderMessages } from '../../activities/llm/prompts.ts';
import { readChunkTexts } from '../../activities/artifactKinds/chunksArtifact.ts';
import { readQueries } from '../../activities/artifactKinds/queriesArtifact.ts';
import { hashJson } from '../../artifacts/hash.ts';
import { LocalStore } from '../../artifacts/store.ts';
import recipe from '../fixtures/pipelines/recipe-tiny.ts';
import { llmEnv } from '../llm/fixtures.ts';
import { cli, collect, remote, spawnCliKilledAfterEach, testEnv } from '../support/cli.ts';
import { LlmServer } from '../support/llmServer.ts';
import { DEV_FILE, TRAIN_FILE } from '../../activities/artifactKinds/datasetArtifact.ts';

// The whole default recipe (at toy sizes) with its worker SIGKILLed once inside each stage in turn and
// a new worker started after each kill, compared with the same recipe run without a fault. The kills
// come from a failpoint the worker honours (EMBEDFLOW_FAILPOINT_KILL, engine/engine.ts): stages
// that last milliseconds on three documents cannot be caught "running" from outside.

const PIPELINE = 'test/fixtures/pipelines/recipe-tiny.ts';
const CHECKPOINT_EVERY = 3;
const MAX_STEPS = 6;
/** Chunks the generation stage answers before its kill. */
const ANSWERED_BEFORE_KILL = 2;
/** The generation stages' `concurrency`: chunks in flight at once, so at most this many calls are lost per kill. */
const CONCURRENCY = 1;

/** Where each worker kills itself: every stage of the recipe's chain, in order, at a point inside it. */
const KILLS: Array<{ stage: string; at?: number }> = [
  { stage: 'documents', at: 1 }, // one file read
  { stage: 'chunks', at: 1 }, // one document chunked
  { stage: 'generatedQueries', at: ANSWERED_BEFORE_KILL }, // answered and memoised
  { stage: 'queries' }, // the filter reports no progress: at its start
  { stage: 'negatives', at: 1 }, // embedding
  { stage: 'dataset' },
  { stage: 'model', at: CHECKPOINT_EVERY + 1 }, // a checkpoint is complete and training went past it
  { stage: 'evaluation', at: 1 }, // embedding the corpus
  { stage: 'report' },
];

/** The generation stages' prompts (one template each in the fixture), told apart by their last line. */
const PROMPTS = { generatedQueries: 'questions that this passage answers', evalQueries: 'search keyword queries' } as const;

/**
 * Stages whose output is a function of their inputs' data. Not: the two LLM stages (llama.cpp does not
 * promise the same tokens for the same prompt, see warmUp), evaluation and report (they hold measured
 * latencies; the evaluation's quality figures are compared instead).
 */
const DETERMINISTIC = new Set(['documents', 'chunks', 'baseModel', 'queries', 'negatives', 'dataset', 'model', 'reranker']);

/**
 * The files holding an artifact's data, for kinds whose other files record where and when it was made,
 * which differs between two runs even without faults: the store path and seconds in reranker.json, and
 * input digests in a dataset card or model.json (a query table's digest covers each LLM call's latency).
 */
const DATA_FILES: Record<string, string[]> = {
  dataset: [TRAIN_FILE, DEV_FILE],
  model: ['st/model.safetensors', 'onnx/model.onnx', 'onnx/model_int8.onnx'],
  reranker: ['st/model.safetensors', 'onnx/model.onnx'],
};

let server: LlmServer;
let client: Client;
const start = spawnCliKilledAfterEach();

beforeAll(async () => {
  server = await LlmServer.start({ env: llmEnv, servedModel: 'gemma-test', threads: 1, parallel: 1, templates: 2 });
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
});
afterAll(async () => {
  await server?.close();
  await client?.connection.close();
});

function worker(env: Record<string, string>): ChildProcess {
  const c = start(['worker', '--queue', 'workflow', '--queue', 'cpu', '--queue', 'gpu', '--pipeline', PIPELINE], env);
  c.stdout?.resume();
  c.stderr?.resume();
  return c;
}

function run(env: Record<string, string>, json = true) {
  const llm = ['generatedQueries', 'evalQueries'].flatMap((s) => ['--set', `${s}.llm.baseUrl=${server.url}`]);
  return collect(start(['run', PIPELINE, ...(json ? ['--json'] : []), ...llm], env), 900_000);
}

/** When the worker died, of what, and the end of what it said. */
function death(c: ChildProcess): Promise<{ signal: NodeJS.Signals | null; at: number; stderr: string }> {
  let stderr = '';
  c.stderr?.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  return new Promise((resolve) => c.once('exit', (_code, signal) => resolve({ signal, at: Date.now(), stderr })));
}

/**
 * One call per template before the first run. llama.cpp keeps each sequence's last prompt and
 * evaluates only what a new prompt adds to it; a call on an empty cache is evaluated in other batches
 * and can sample other tokens, so without this the first chunk of the first run alone could differ.
 */
async function warmUp(): Promise<void> {
  for (const style of ['question', 'keyword'] as const) {
    const messages = renderMessages(builtinTemplate('en', style), { passage: 'The village bakery opens at six and sells rye bread.', count: 2 });
    const res = await fetch(`${server.url}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: server.servedModel, messages, max_tokens: 8 }),
    });
    expect(res.status).toBe(200);
  }
}

interface StageSummary {
  id: string;
  status: string;
  artifact: string;
  stats: Record<string, number | string | boolean>;
}

interface ActivityRecord {
  scheduled: number;
  /** The attempt that completed. */
  attempt: number;
  scheduledAt: number;
  closedAt: number;
}

/** Per stage (its activity id), from the run's Temporal history. */
async function activityRecords(runId: string): Promise<Map<string, ActivityRecord>> {
  const history = await client.workflow.getHandle(runId).fetchHistory();
  const ms = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) => Number(t?.seconds ?? 0) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6);
  const byEvent = new Map<string, ActivityRecord>();
  const out = new Map<string, ActivityRecord>();
  for (const e of history.events ?? []) {
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled?.activityId) {
      const rec = { scheduled: (out.get(scheduled.activityId)?.scheduled ?? 0) + 1, attempt: 0, scheduledAt: ms(e.eventTime), closedAt: 0 };
      out.set(scheduled.activityId, rec);
      byEvent.set(String(e.eventId), rec);
    }
    const started = e.activityTaskStartedEventAttributes;
    if (started) byEvent.get(String(started.scheduledEventId))!.attempt = started.attempt ?? 0;
    const completed = e.activityTaskCompletedEventAttributes;
    if (completed) byEvent.get(String(completed.scheduledEventId))!.closedAt = ms(e.eventTime);
  }
  return out;
}

/** What an artifact holds, for comparing runs: query rows without their latencies, the data files, or else the digest. */
async function dataOf(store: LocalStore, digest: string): Promise<string> {
  const reader = await store.open(digest);
  const { kind, files } = reader.manifest;
  if (kind === 'queries' || kind === 'evalQueries') return hashJson((await readQueries(reader)).map(({ latency_ms: _, ...row }) => row));
  const keep = DATA_FILES[kind];
  if (!keep) return digest;
  const data = files.filter((f) => keep.includes(f.path)).map((f) => [f.path, f.sha256]);
  expect(data.map(([p]) => p).sort(), `data files of a ${kind} artifact`).toEqual([...keep].sort());
  return hashJson(data);
}

/** The evaluation's quality figures (its other stats are timings and memo hits). */
function quality(stats: StageSummary['stats']): Record<string, unknown> {
  return Object.fromEntries(Object.entries(stats).filter(([k]) => /recall|ndcg|mrr|map/i.test(k)));
}

describe('a worker SIGKILLed during each stage of the default recipe', () => {
  it(
    'each run completes on a new worker: finished stages not redone, LLM paid once per chunk, training resumed, artifacts as without the faults',
    async () => {
      await warmUp();
      const refEnv = remote(await testEnv());
      const refWorker = worker(refEnv);
      const ref = await run(refEnv);
      expect(ref.code, ref.stderr).toBe(0);
      expect(ref.json.status).toBe('completed');
      // With --json, stdout is the JSON object alone, its headline metrics as documented:
      // metrics.<eval set>.<system>.<metric> = {value, lo, hi}.
      expect(ref.stdout.trim().split('\n')).toHaveLength(1);
      expect(Object.keys(ref.json.metrics)).toEqual(['generated']);
      const generated = ref.json.metrics.generated as Record<string, Record<string, { value: number; lo: number; hi: number }>>;
      expect(Object.keys(generated)).toEqual(expect.arrayContaining(['base', 'finetuned', 'base+rerank@5']));
      for (const [system, table] of Object.entries(generated)) {
        for (const metric of ['recall@1', 'recall@10', 'mrr@10', 'ndcg@10']) {
          const m = table[metric];
          expect(m, `${system} ${metric}`).toEqual({ value: expect.any(Number), lo: expect.any(Number), hi: expect.any(Number) });
          expect(m!.lo, `${system} ${metric}`).toBeLessThanOrEqual(m!.value);
          expect(m!.value, `${system} ${metric}`).toBeLessThanOrEqual(m!.hi);
          expect(m!.lo).toBeGreaterThanOrEqual(0);
          expect(m!.hi).toBeLessThanOrEqual(1);
        }
      }
      // The same run again without --json: every stage cached, and stdout is the report's Markdown summary.
      const again = await run(refEnv, false);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toMatch(/COMPLETED: 0 stage\(s\) ran, \d+ cached/);
      const summaryMd = await readFile(join(dirname(ref.json.report), 'summary.md'), 'utf8');
      expect(summaryMd).toMatch(/^# embedflow evaluation\n[\s\S]*## generated eval queries \(\d+ queries\)[\s\S]*\| finetuned \| \d\.\d{3} \(/);
      expect(again.stdout.trim()).toBe(summaryMd.trim());
      refWorker.kill('SIGTERM');
      const callsBefore = server.calls.length;

      const env = remote(await testEnv());
      const result = run(env);
      const ended = result.then(() => 'ended' as const);
      const kills: number[] = [];
      for (const { stage, at } of KILLS) {
        const spec = at === undefined ? stage : `${stage}:${at}`;
        const died = await Promise.race([death(worker({ ...env, EMBEDFLOW_FAILPOINT_KILL: spec })), ended]);
        if (died === 'ended') throw new Error(`the run ended before failpoint ${spec} fired:\n${(await result).stderr.slice(-4000)}`);
        expect(died.signal, `failpoint ${spec}: ${died.stderr}`).toBe('SIGKILL');
        kills.push(died.at);
      }
      worker(env);
      const res = await result;
      expect(res.code, res.stderr).toBe(0);
      expect(res.json.status).toBe('completed');

      // No finished stage ran again: each stage was scheduled once, and only attempts cut short by a kill
      // (its own, or another stage's while it ran beside it) were repeated.
      const stages = new Map<string, StageSummary>(res.json.stages.map((s: StageSummary) => [s.id, s]));
      const history = await activityRecords(res.json.runId);
      const killsDuring = (h: ActivityRecord) => kills.filter((t) => t > h.scheduledAt && t < h.closedAt).length;
      for (const [id, s] of stages) {
        const h = history.get(id)!;
        expect(s.status, id).toBe('ran');
        expect(h.scheduled, id).toBe(1);
        expect(h.attempt - 1, `${id}: attempts beyond the kills while it ran`).toBeLessThanOrEqual(killsDuring(h));
      }
      KILLS.forEach(({ stage }, i) => {
        const h = history.get(stage)!;
        expect(kills[i], `kill ${i + 1} lands in ${stage}`).toBeGreaterThan(h.scheduledAt);
        expect(kills[i], `kill ${i + 1} lands in ${stage}`).toBeLessThan(h.closedAt);
        expect(h.attempt, stage).toBeGreaterThan(1);
      });

      // The LLM, counted at the server: each chunk once per generation stage, plus what was in flight
      // at the kills that stage lived through (at most CONCURRENCY chunks each).
      const store = new LocalStore(env.EMBEDFLOW_STORE);
      const chunks = await readChunkTexts(await store.open(stages.get('chunks')!.artifact));
      const calls = server.calls.slice(callsBefore);
      for (const [stage, marker] of Object.entries(PROMPTS)) {
        const lost = (history.get(stage)!.attempt - 1) * CONCURRENCY;
        const perChunk = chunks.map((c) => calls.filter((k) => k.prompt.includes(marker) && k.prompt.includes(c.text.trim())).length);
        for (const n of perChunk) expect(n, stage).toBeGreaterThanOrEqual(1);
        for (const n of perChunk) expect(n, stage).toBeLessThanOrEqual(1 + lost);
        expect(perChunk.reduce((a, b) => a + b, 0), stage).toBeLessThanOrEqual(chunks.length + lost);
      }
      expect(stages.get('generatedQueries')!.stats.memoHits).toBeGreaterThanOrEqual(ANSWERED_BEFORE_KILL);

      // Training continued from its checkpoint: the steps before it were not trained again.
      const model = stages.get('model')!.stats as { steps: number; stepsRun: number; resumedFromStep: number };
      expect(model.steps).toBe(MAX_STEPS);
      expect(model.resumedFromStep).toBeGreaterThanOrEqual(CHECKPOINT_EVERY);
      expect(model.stepsRun).toBeLessThanOrEqual(MAX_STEPS - CHECKPOINT_EVERY);

      // Artifacts as without the faults: a deterministic stage whose inputs hold the same data in both
      // runs has the same output. Upstream of the LLM that is always so; downstream, when the model wrote
      // the same queries in both runs (it does, greedy and warmed up, but llama.cpp does not promise it).
      const refStore = new LocalStore(refEnv.EMBEDFLOW_STORE);
      const refStages = new Map<string, StageSummary>(ref.json.stages.map((s: StageSummary) => [s.id, s]));
      const sameData = new Map<string, boolean>();
      const sameDigest: string[] = [];
      for (const decl of recipe.def.stages) {
        const s = stages.get(decl.id);
        if (!s) continue;
        const r = refStages.get(decl.id)!;
        if (r.artifact === s.artifact) sameDigest.push(decl.id);
        const equal = (await dataOf(refStore, r.artifact)) === (await dataOf(store, s.artifact));
        sameData.set(decl.id, equal);
        const inputsEqual = Object.values((decl.inputs ?? {}) as Record<string, string>).every((src) => !stages.has(src) || sameData.get(src));
        if (DETERMINISTIC.has(decl.id) && inputsEqual) expect(equal, `${decl.id} differs from the uninterrupted run`).toBe(true);
        if (decl.id === 'evaluation' && ['model', 'reranker', 'evalQueries'].every((src) => sameData.get(src))) {
          expect(Object.keys(quality(r.stats)).length).toBeGreaterThan(0);
          expect(quality(s.stats), 'evaluation figures').toEqual(quality(r.stats));
        }
      }
      for (const id of ['documents', 'chunks', 'baseModel']) expect(sameDigest, id).toContain(id);
      console.info(
        `as in the uninterrupted run: digest ${sameDigest.join(', ')}; data ${[...sameData].filter(([, v]) => v).map(([k]) => k).join(', ')}; ` +
          `differing data: ${[...sameData].filter(([, v]) => !v).map(([k]) => k).join(', ') || 'none'}`,
      );

      const verify = await cli(['store', 'verify', '--json'], env);
      expect(verify.code, verify.stderr).toBe(0);
      expect(verify.json).toMatchObject({ corrupt: [], danglingCache: [] });
    },
    1_200_000,
  );
});
