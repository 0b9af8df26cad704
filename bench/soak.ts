// Many runs at once on one machine: N `embedflow run` processes started together on a fresh home
// (one dev server for all of them, each with its embedded worker and its CPU/memory budget), a tiny
// pipeline on the example corpus (ICT queries, 2 training steps). Identical runs share one run id (the
// plan's hash), so N CLIs follow one run: pass distinct flags for distinct runs. Prints each run's exit code, wall
// time and the peak RSS its stages measured, and the load average. Not part of `npm test`.
//   node --import tsx bench/soak.ts [--runs N] [pipeline.ts] [embedflow run flags...]
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../workers/config.ts';
import { benchMachine } from './machine.ts';

const BIN = join(PROJECT_ROOT, 'bin', 'embedflow.js');

interface Outcome {
  code: number | null;
  seconds: number;
  stages: Array<{ id: string; status: string; stats?: Record<string, unknown> }>;
  tail: string;
}

function runOnce(args: string[], env: Record<string, string>): Promise<Outcome> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [BIN, 'run', ...args, '--json'], { env: { ...process.env, ...env }, cwd: PROJECT_ROOT });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b));
  child.stderr.on('data', (b: Buffer) => (err = (err + b).slice(-2000)));
  return new Promise((resolve) =>
    child.on('close', (code) => {
      let stages: Outcome['stages'] = [];
      try {
        stages = (JSON.parse(out.trim().split('\n').pop() ?? '{}') as { stages?: Outcome['stages'] }).stages ?? [];
      } catch {
        // No summary: the tail of stderr says why.
      }
      resolve({ code, seconds: (performance.now() - t0) / 1000, stages, tail: err.trim().split('\n').slice(-3).join(' | ') });
    }),
  );
}

const argv = process.argv.slice(2);
const runsAt = argv.indexOf('--runs');
const runs = runsAt >= 0 ? Number(argv.splice(runsAt, 2)[1]) : 4;
if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs takes a whole number ≥ 1, e.g. --runs 4');
const pipeline = argv[0]?.endsWith('.ts') ? argv.shift()! : 'pipelines/quickstart.ts';
const flags = argv.length ? argv : ['--set', 'model.maxSteps=2'];

const machine = benchMachine();
const home = mkdtempSync(join(tmpdir(), 'ef-soak-home-'));
console.log(`soak: ${runs} × embedflow run ${pipeline} ${flags.join(' ')} at once, EMBEDFLOW_HOME=${home}`);
let peakLoad = 0;
const sampler = setInterval(() => (peakLoad = Math.max(peakLoad, loadavg()[0]!)), 2000);
const t0 = performance.now();
const outcomes = await Promise.all(Array.from({ length: runs }, () => runOnce([pipeline, ...flags], { EMBEDFLOW_HOME: home })));
clearInterval(sampler);
const wall = (performance.now() - t0) / 1000;

outcomes.forEach((o, i) => {
  const peaks = o.stages
    .filter((s) => typeof s.stats?.peakRssMB === 'number')
    .map((s) => `${s.id} ${s.stats!.peakRssMB} MB, estimated ${s.stats!.estimatedPeakMB ?? '?'} MB (${s.status})`);
  console.log(`run ${i + 1}: exit ${o.code}, ${o.seconds.toFixed(1)} s; stages peak RSS: ${peaks.join(', ') || 'none reported'}`);
  if (o.code !== 0) console.log(`  ${o.tail}`);
});
const ok = outcomes.filter((o) => o.code === 0).length;
console.log(`completed ${ok}/${runs}; wall ${wall.toFixed(1)} s; peak 1-min load average ${peakLoad.toFixed(2)}`);
await new Promise((resolve) => spawn(process.execPath, [BIN, 'dev', 'stop'], { env: { ...process.env, EMBEDFLOW_HOME: home }, stdio: 'ignore' }).on('close', resolve));
machine.finish();
