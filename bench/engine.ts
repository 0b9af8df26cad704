// Engine overhead: cold and fully cached runs of a pipeline through the CLI, and the per-stage cost of
// the workflow/activity round trip (a chain of no-op stages).
//   node --import tsx bench/engine.ts [pipeline.ts] [--corpus DIR]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../workers/config.ts';
import { benchMachine } from './machine.ts';

const BIN = join(PROJECT_ROOT, 'bin', 'embedflow.js');

function timeRun(args: string[], env: Record<string, string>): { seconds: number; ran: number; cached: number } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [BIN, 'run', ...args, '--json'], { env: { ...process.env, ...env }, encoding: 'utf8', cwd: PROJECT_ROOT });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`run failed (${r.status}):\n${r.stderr}`);
  const json = JSON.parse(r.stdout.trim().split('\n').pop()!) as { stages: Array<{ status: string }> };
  return { seconds, ran: json.stages.filter((s) => s.status === 'ran').length, cached: json.stages.filter((s) => s.status === 'cached').length };
}

const machine = benchMachine();
const pipeline = process.argv[2] ?? 'pipelines/quickstart.ts';
const extra = process.argv.slice(3);
const home = mkdtempSync(join(tmpdir(), 'ef-bench-home-'));
const env = { EMBEDFLOW_HOME: home, EMBEDFLOW_QUEUE_PREFIX: 'bench' };

const first = timeRun([pipeline, ...extra], env);
const cached = timeRun([pipeline, ...extra], env);
const fresh = { ...env, EMBEDFLOW_STORE: mkdtempSync(join(tmpdir(), 'ef-bench-store-')) };
const coldStore = timeRun([pipeline, ...extra], fresh);
const cachedAgain = timeRun([pipeline, ...extra], fresh);

const chain = (n: number, store: string) => timeRun(['bench/noop-pipeline.ts'], { ...env, EMBEDFLOW_STORE: store, BENCH_NOOP_STAGES: String(n) });
const smallStore = mkdtempSync(join(tmpdir(), 'ef-bench-n1-'));
const small = chain(1, smallStore);
const smallCached = chain(1, smallStore);
const bigStore = mkdtempSync(join(tmpdir(), 'ef-bench-n21-'));
const big = chain(21, bigStore);
const bigCached = chain(21, bigStore);

spawnSync(process.execPath, [BIN, 'dev', 'stop'], { env: { ...process.env, ...env } });
for (const dir of [home, fresh.EMBEDFLOW_STORE, smallStore, bigStore]) rmSync(dir, { recursive: true, force: true });

const rows = [
  ['first run (starts dev server, builds workflow bundle)', first],
  ['fully cached rerun', cached],
  ['cold store (dev server warm)', coldStore],
  ['fully cached rerun', cachedAgain],
  ['no-op chain, 1 stage', small],
  ['no-op chain, 1 stage, cached', smallCached],
  ['no-op chain, 21 stages', big],
  ['no-op chain, 21 stages, all cached', bigCached],
] as const;
console.log(`pipeline: ${pipeline}  (node ${process.version}, ${new Date().toISOString()})`);
console.log('| run | wall s | ran | cached |\n|---|---:|---:|---:|');
for (const [name, r] of rows) console.log(`| ${name} | ${r.seconds.toFixed(2)} | ${r.ran} | ${r.cached} |`);
const ratio = (100 * cachedAgain.seconds) / coldStore.seconds;
const executed = (1000 * (big.seconds - small.seconds)) / 20;
const hit = (1000 * (bigCached.seconds - smallCached.seconds)) / 20;
const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');
console.log(`cached/cold ratio: ${ratio.toFixed(1)}% (target <= 5%: ${verdict(ratio <= 5)}); cached rerun ${cachedAgain.seconds.toFixed(2)} s (target < 5 s: ${verdict(cachedAgain.seconds < 5)})`);
console.log(`per-stage overhead (executed no-op): ${executed.toFixed(0)} ms (target <= 200 ms: ${verdict(executed <= 200)})`);
console.log(`per-stage overhead (cache hit): ${hit.toFixed(0)} ms`);
machine.finish();
