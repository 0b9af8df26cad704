// Many runs at once on one machine, as a scheduler starts them (issue 19). On a fresh home:
//   1. `--runs` recipe runs at once, each on its own `--articles`-article subset of the corpus (with
//      its human questions), the bench's CPU settings and 2 training steps;
//   2. the same runs again, at once (everything cached);
//   3. `--tiny` runs of an engine-only pipeline at once;
//   then the dev server's log warnings and `store verify`; and, unless --no-solo, the same recipe
//   runs one after the other on a second fresh home: wall time against the concurrent ones, and each
//   run's stage digests against its concurrent twin's.
// Prints the machine, per phase runs completed/started, wall time, the machine's peak memory in use
// and load, each stage's measured peak (workerPeakRssMB, and peakRssMB of training kernels) against
// its estimate; the last stdout line is all of it as JSON. Not part of `npm test`.
//   node --import tsx bench/soak.ts [--runs 4] [--articles 5] [--tiny 20] [--steps 2] [--no-solo]
//        [--corpus DIR --questions FILE] [--pipeline pipelines/domain-embedding.ts] [--keep]
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { PROJECT_ROOT } from '../workers/config.ts';
import { CPU_SETTINGS } from './cpuSettings.ts';
import { benchMachine } from './machine.ts';

const BIN = join(PROJECT_ROOT, 'bin', 'embedflow.js');
const JAQUAD = resolve(PROJECT_ROOT, '..', 'shared', 'data', 'jaquad-dev');

const { values: opt } = parseArgs({
  options: {
    runs: { type: 'string', default: '4' },
    articles: { type: 'string', default: '5' },
    tiny: { type: 'string', default: '20' },
    steps: { type: 'string', default: '2' },
    'no-solo': { type: 'boolean', default: false },
    /** Keep the homes and subsets (each home holds its runs' models: ~6.5 GB for 4 e5 runs). */
    keep: { type: 'boolean', default: false },
    corpus: { type: 'string', default: join(JAQUAD, 'docs') },
    questions: { type: 'string', default: join(JAQUAD, 'questions.jsonl') },
    pipeline: { type: 'string', default: 'pipelines/domain-embedding.ts' },
  },
});
const count = (name: 'runs' | 'articles' | 'tiny' | 'steps', min: number) => {
  const n = Number(opt[name]);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} takes a whole number ≥ ${min}, e.g. --${name} ${min + 1}`);
  return n;
};
const [RUNS, ARTICLES, TINY, STEPS] = [count('runs', 1), count('articles', 1), count('tiny', 0), count('steps', 1)];

interface Stage {
  id: string;
  status: string;
  artifact?: string;
  seconds?: number;
  stats?: Record<string, unknown>;
}
interface Outcome {
  code: number | null;
  seconds: number;
  runId?: string;
  stages: Stage[];
  tail: string;
}

/** Memory in use on the machine (what other processes could not have), sampled, and the 1-min load. */
function machineSampler() {
  let peakUsedMB = 0;
  let peakLoad = 0;
  const sample = () => {
    const info = Object.fromEntries(
      readFileSync('/proc/meminfo', 'utf8')
        .split('\n')
        .map((l) => l.split(/:\s+/))
        .map(([k, v]) => [k, parseInt(v ?? '0', 10)]),
    ) as Record<string, number>;
    peakUsedMB = Math.max(peakUsedMB, Math.round(((info.MemTotal ?? 0) - (info.MemAvailable ?? 0)) / 1024));
    peakLoad = Math.max(peakLoad, loadavg()[0]!);
  };
  sample();
  const timer = setInterval(sample, 1000);
  return {
    stop: () => {
      clearInterval(timer);
      return { peakUsedMB, peakLoad: +peakLoad.toFixed(2) };
    },
  };
}

function embedflow(args: string[], home: string): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, EMBEDFLOW_HOME: home }, cwd: PROJECT_ROOT });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b));
  child.stderr.on('data', (b: Buffer) => (err = (err + b).slice(-4000)));
  return new Promise((done) => child.on('close', (code) => done({ code, out, err })));
}

async function runOnce(args: string[], home: string): Promise<Outcome> {
  const t0 = performance.now();
  const { code, out, err } = await embedflow(['run', ...args, '--json'], home);
  let summary: { runId?: string; stages?: Stage[] } = {};
  try {
    summary = JSON.parse(out.trim().split('\n').pop() ?? '{}');
  } catch {
    // No summary: the tail of stderr says why.
  }
  return { code, seconds: (performance.now() - t0) / 1000, runId: summary.runId, stages: summary.stages ?? [], tail: err.trim().split('\n').slice(-3).join(' | ') };
}

/** `runs` article subsets of the corpus, each a folder with its articles and a file of their questions. */
const dataRoot = mkdtempSync(join(tmpdir(), 'ef-soak-data-'));

function subsets(): Array<{ docs: string; questions: string; articles: string[] }> {
  const all = readdirSync(opt.corpus).filter((f) => f.endsWith('.md')).sort();
  if (all.length < RUNS * ARTICLES) throw new Error(`${opt.corpus} has ${all.length} articles; --runs ${RUNS} × --articles ${ARTICLES} needs ${RUNS * ARTICLES}`);
  const questions = readFileSync(opt.questions, 'utf8').trim().split('\n');
  const root = dataRoot;
  return Array.from({ length: RUNS }, (_, k) => {
    const articles = all.slice(k * ARTICLES, (k + 1) * ARTICLES);
    const docs = join(root, `subset-${k}`, 'docs');
    mkdirSync(docs, { recursive: true });
    for (const a of articles) copyFileSync(join(opt.corpus, a), join(docs, a));
    const mine = new Set(articles);
    const file = join(root, `subset-${k}`, 'questions.jsonl');
    writeFileSync(file, questions.filter((l) => mine.has((JSON.parse(l) as { doc?: string }).doc ?? '')).join('\n') + '\n');
    return { docs, questions: file, articles };
  });
}

interface Phase {
  name: string;
  started: number;
  completed: number;
  wallSeconds: number;
  peakUsedMB: number;
  peakLoad: number;
  outcomes: Outcome[];
}

async function phase(name: string, argsList: string[][], home: string, oneByOne = false): Promise<Phase> {
  const sampler = machineSampler();
  const t0 = performance.now();
  const outcomes: Outcome[] = [];
  if (oneByOne) for (const args of argsList) outcomes.push(await runOnce(args, home));
  else outcomes.push(...(await Promise.all(argsList.map((args) => runOnce(args, home)))));
  const wallSeconds = +((performance.now() - t0) / 1000).toFixed(1);
  const { peakUsedMB, peakLoad } = sampler.stop();
  const completed = outcomes.filter((o) => o.code === 0).length;
  console.log(`\n${name}: completed ${completed}/${argsList.length}; wall ${wallSeconds} s; machine memory in use at peak ${peakUsedMB} MB; peak 1-min load ${peakLoad}`);
  outcomes.forEach((o, i) => {
    const line = `  run ${i + 1} ${o.runId ?? '?'}: exit ${o.code}, ${o.seconds.toFixed(1)} s`;
    console.log(o.code === 0 ? line : `${line}\n    ${o.tail}`);
  });
  return { name, started: argsList.length, completed, wallSeconds, peakUsedMB, peakLoad, outcomes };
}

/** Measured and estimated peaks of the stages that ran (not cached). */
function stagePeaks(p: Phase) {
  const rows: Array<{ run: number; stage: string; seconds: number; workerPeakRssMB?: number; kernelPeakRssMB?: number; estimatedPeakMB?: number; ranAlone?: boolean }> = [];
  p.outcomes.forEach((o, run) => {
    for (const s of o.stages) {
      if (s.status !== 'ran') continue;
      const n = (k: string) => (typeof s.stats?.[k] === 'number' ? (s.stats[k] as number) : undefined);
      rows.push({ run: run + 1, stage: s.id, seconds: +(s.seconds ?? 0).toFixed(1), workerPeakRssMB: n('workerPeakRssMB'), kernelPeakRssMB: n('peakRssMB'), estimatedPeakMB: n('estimatedPeakMB'), ranAlone: s.stats?.ranAlone !== undefined });
    }
  });
  return rows;
}

function devServerWarnings(home: string): Record<string, number> {
  let log = '';
  try {
    log = readFileSync(join(home, 'logs', 'devserver.log'), 'utf8');
  } catch {
    return {};
  }
  const counts: Record<string, number> = {};
  for (const line of log.split('\n')) {
    if (!/level=(WARN|ERROR)/.test(line)) continue;
    const msg = /msg="([^"]*)"/.exec(line)?.[1] ?? line.slice(0, 80);
    counts[msg] = (counts[msg] ?? 0) + 1;
  }
  return counts;
}

const machine = benchMachine();
const sets = subsets();
const recipeArgs = sets.map((s) => [opt.pipeline, '--corpus', s.docs, '--eval-questions', s.questions, ...[...CPU_SETTINGS, `model.maxSteps=${STEPS}`].flatMap((x) => ['--set', x])]);
sets.forEach((s, k) => console.log(`subset ${k + 1}: ${s.articles.join(', ')}`));

const home = mkdtempSync(join(tmpdir(), 'ef-soak-home-'));
console.log(`soak: EMBEDFLOW_HOME=${home}; ${RUNS} × ${opt.pipeline} (${ARTICLES} articles each, ${STEPS} training steps), then cached, then ${TINY} tiny runs`);
const concurrent = await phase(`${RUNS} recipe runs at once`, recipeArgs, home);
const cached = await phase(`the same ${RUNS} again (cached)`, recipeArgs, home);
const tiny = TINY ? await phase(`${TINY} tiny runs at once`, Array.from({ length: TINY }, (_, i) => ['bench/noop-pipeline.ts', '--set', `s0.salt=soak-${i}`]), home) : undefined;

const warnings = devServerWarnings(home);
const verify = await embedflow(['store', 'verify'], home);
await embedflow(['dev', 'stop'], home);

console.log('\nstage peaks of the concurrent runs (MB; worker = the worker process and its children while the stage ran, shared with stages beside it):');
const peaks = stagePeaks(concurrent);
for (const r of peaks) {
  console.log(`  run ${r.run} ${r.stage.padEnd(18)} ${String(r.seconds).padStart(7)} s  worker ${r.workerPeakRssMB ?? '-'}  kernel ${r.kernelPeakRssMB ?? '-'}  estimated ${r.estimatedPeakMB ?? '-'}${r.ranAlone ? '  (ran alone)' : ''}`);
}
console.log(`\ndev server warnings: ${Object.keys(warnings).length ? JSON.stringify(warnings) : 'none'}`);
console.log(`store verify: exit ${verify.code}; ${verify.out.trim().split('\n').slice(-2).join(' | ')}`);

let solo: Phase | undefined;
const digestDiffs: string[] = [];
const homes = [home, dataRoot];
if (!opt['no-solo']) {
  const soloHome = mkdtempSync(join(tmpdir(), 'ef-soak-solo-'));
  homes.push(soloHome);
  solo = await phase(`the ${RUNS} recipe runs one after the other (fresh home ${soloHome})`, recipeArgs, soloHome, true);
  await embedflow(['dev', 'stop'], soloHome);
  solo.outcomes.forEach((o, i) => {
    const twin = new Map(concurrent.outcomes[i]!.stages.map((s) => [s.id, s.artifact]));
    for (const s of o.stages) if (s.artifact !== twin.get(s.id)) digestDiffs.push(`run ${i + 1} ${s.id}: alone ${s.artifact?.slice(0, 12)} vs at once ${twin.get(s.id)?.slice(0, 12)}`);
  });
  console.log(`\nconcurrent ${concurrent.wallSeconds} s vs one after the other ${solo.wallSeconds} s`);
  console.log(`stage digests alone vs at once: ${digestDiffs.length ? `${digestDiffs.length} differ:\n  ${digestDiffs.join('\n  ')}` : 'all equal'}`);
}

if (opt.keep) console.log(`kept: ${homes.join(' ')}`);
else for (const dir of homes) rmSync(dir, { recursive: true, force: true });

const summary = (p?: Phase) => p && { started: p.started, completed: p.completed, wallSeconds: p.wallSeconds, peakUsedMB: p.peakUsedMB, peakLoad: p.peakLoad };
const end = machine.finish();
console.log(
  JSON.stringify({
    machine: end,
    concurrent: summary(concurrent),
    cached: summary(cached),
    tiny: summary(tiny),
    solo: summary(solo),
    digestsDiffering: solo ? digestDiffs : null,
    devServerWarnings: warnings,
    storeVerifyExit: verify.code,
    stagePeaks: peaks,
  }),
);
