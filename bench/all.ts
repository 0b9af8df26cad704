// `npm run bench`: the default recipe on real data, measured, written to BENCHMARKS.md.
//   node --import tsx bench/all.ts [--pipeline pipelines/domain-embedding.ts]
//        [--corpus ../shared/data/jaquad-dev/docs] [--questions FILE] [--set k=v ...]
//        [--levers default|all|none|NAME,...] [--llm-sample 40] [--no-reruns] [--out BENCHMARKS.md]
//        [--render BENCHMARKS.json]   (redraw the tables from an earlier bench's raw results)
// Lever names: negatives, sample (ICT vs local LLM on one sample), epochs, merge, roundtrip.
// Cold run, fully cached rerun, and an incremental rerun after changing 10% of the documents (wall
// time, LLM calls, embeddings computed), the quality table with confidence intervals, then the
// levers, each a rerun on the same store, so only the stages a lever touches run again. The file is
// rewritten after every run, so a long bench stopped part-way keeps what it measured. --no-reruns
// skips the cached and incremental reruns (for a levers-only table, e.g. on a smaller corpus).
//
// Without --set it runs the recipe with the CPU settings (bench/cpuSettings.ts): rule-written queries
// instead of the embedded LLM's, which on a 2-core CPU writes 2-6 chunks' queries a minute
// (bench/llm.ts), many hours for jaquad-dev's 2,240 chunks; the fine-tune is the recipe's own.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadPipeline } from '../dsl/load.ts';
import { PROJECT_ROOT } from '../workers/config.ts';
import { benchMachine, describeCpu } from './machine.ts';
import { CPU_SETTINGS } from './cpuSettings.ts';

// Pipelines with a cross-encoder (pipelines/minilm.ts, llm-jp-vllm.ts) also get these. Cross-encoder
// scoring is the slowest part of evaluation on a CPU: base's top 30 for 100 queries.
const RERANKER_SETTINGS = ['reranker.maxSteps=30', 'evaluation.rerankDepths=[30]', 'evaluation.rerankFinetuned=false', 'evaluation.rerankMaxQueries=100'];

const { values } = parseArgs({
  options: {
    pipeline: { type: 'string', default: 'pipelines/domain-embedding.ts' },
    corpus: { type: 'string', default: resolve(PROJECT_ROOT, '..', 'shared', 'data', 'jaquad-dev', 'docs') },
    questions: { type: 'string' },
    set: { type: 'string', multiple: true },
    out: { type: 'string', default: join(PROJECT_ROOT, 'BENCHMARKS.md') },
    levers: { type: 'string', default: 'default' },
    'llm-sample': { type: 'string', default: '40' },
    'no-reruns': { type: 'boolean', default: false },
    /** Redraw --out from the .json an earlier bench wrote beside it; measures nothing. */
    render: { type: 'string' },
  },
});
const hasReranker = (await loadPipeline(resolve(values.pipeline!))).def.stages.some((st) => st.id === 'reranker');
const sets = values.set ?? [...CPU_SETTINGS, ...(hasReranker ? RERANKER_SETTINGS : [])];

interface Stage {
  id: string;
  status: string;
  seconds: number | null;
  stats: Record<string, number | string | boolean>;
}
type Metric = { value: number; lo: number; hi: number };
interface Summary {
  runId: string;
  status: string;
  stages: Stage[];
  metrics: Record<string, Record<string, Record<string, Metric>>>;
}
interface Measured {
  label: string;
  seconds: number;
  summary: Summary;
}

const BIN = join(PROJECT_ROOT, 'bin', 'embedflow.js');
const home = mkdtempSync(join(tmpdir(), 'ef-bench-all-'));
const env = { ...process.env, EMBEDFLOW_HOME: home, EMBEDFLOW_QUEUE_PREFIX: 'bench-all' };
const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: PROJECT_ROOT, encoding: 'utf8' }).stdout.trim() || '?';

/** The corpus is copied (before the cold run), so the incremental step can change 10% of it. */
const corpus = join(home, 'corpus');
const questions = values.questions ?? (existsSync(resolve(values.corpus!, '..', 'questions.jsonl')) ? resolve(values.corpus!, '..', 'questions.jsonl') : undefined);

function run(label: string, opts: { corpus?: string; extra?: string[] } = {}): Measured {
  const args = [BIN, 'run', values.pipeline!, '--corpus', opts.corpus ?? corpus, '--json', ...(questions ? ['--eval-questions', questions] : [])];
  for (const s of [...sets, ...(opts.extra ?? [])]) args.push('--set', s);
  process.stderr.write(`bench: ${label}...\n`);
  const t0 = performance.now();
  const r = spawnSync(process.execPath, args, { env, encoding: 'utf8', cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const seconds = (performance.now() - t0) / 1000;
  const summary = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Summary;
  if (r.status !== 0) throw new Error(`${label} failed: ${JSON.stringify(summary).slice(0, 2000)}`);
  return { label, seconds, summary };
}

const num = (s: Stage | undefined, k: string) => (typeof s?.stats[k] === 'number' ? (s.stats[k] as number) : 0);
const stage = (sum: Summary, id: string) => sum.stages.find((s) => s.id === id);
// A cached stage shows the stats of the run that made it: only stages that ran count.
const sumStat = (sum: Summary, k: string) => sum.stages.reduce((n, s) => n + (s.status === 'ran' ? num(s, k) : 0), 0);
/** Chunks the training-query stage had no memo for: what it asked its generator about. */
const generatedFor = (sum: Summary) => {
  const g = stage(sum, 'generatedQueries');
  return g?.status === 'ran' ? num(g, 'chunks') - num(g, 'memoHits') : 0;
};
const ran = (sum: Summary) => sum.stages.filter((s) => s.status === 'ran').length;
// The two training stages start together (both follow the dataset) and run side by side: their
// longer one is the training share of the wall time.
const trainingSeconds = (s: Summary) => Math.max(...['model', 'reranker'].map((id) => (stage(s, id)?.status === 'ran' ? (stage(s, id)?.seconds ?? 0) : 0)));
const ci = (m: Metric | undefined) => (m ? `${m.value.toFixed(3)} [${m.lo.toFixed(3)}, ${m.hi.toFixed(3)}]` : '-');
const embedded = (st: Stage['stats'], sec: number) => `${(Number(st.embeddingsComputed) / sec).toFixed(1)} texts embedded/s`;
/** What each recipe stage gets through per second of its own wall time, from its stats. */
const THROUGHPUT: Record<string, (st: Stage['stats'], sec: number) => string> = {
  documents: (st, sec) => `${(Number(st.textMB) / sec).toFixed(2)} MB/s`,
  chunks: (st, sec) => `${(Number(st.chunks) / sec).toFixed(0)} chunks/s`,
  generatedQueries: (st, sec) => `${((Number(st.chunks) - Number(st.memoHits)) / sec).toFixed(1)} chunks/s`,
  queries: (st, sec) => `${(Number(st.input) / sec).toFixed(0)} queries/s`,
  evalQueries: (st, sec) => `${(Number(st.chunks) / sec).toFixed(1)} chunks/s`,
  humanQuestions: (st, sec) => `${(Number(st.questions) / sec).toFixed(0)} questions/s`,
  negatives: embedded,
  dataset: (st, sec) => `${(Number(st.trainRows) / sec).toFixed(0)} rows/s`,
  model: (st) => `${st.samplesPerSecond} rows/s`,
  reranker: (st, sec) => `${(Number(st.steps) / sec).toFixed(3)} steps/s`,
  evaluation: embedded,
};
const throughput = (s: Stage) => {
  const f = THROUGHPUT[s.id];
  return s.status === 'ran' && f && s.seconds ? f(s.stats, s.seconds).replace(/^NaN.*/, '-') : '-';
};
const statsText = (s: Stage) => Object.entries(s.stats).map(([k, v]) => `${k}=${v}`).join(', ');

/** What the tables say about the run besides its measurements: saved with them, for --render. */
// --render measures nothing: the machine it describes is the saved one.
const machine = benchMachine((line) => (values.render ? undefined : process.stderr.write(`bench: ${line}\n`)));
const meta = {
  commit,
  sets,
  corpus: values.corpus!,
  questions,
  pipeline: values.pipeline!,
  machine: `${describeCpu(machine.cpu)}; no GPU; node ${process.version}`,
  loadAtStart: loadavg(),
  loadNow: loadavg(),
  writtenAt: '',
  changedNote: '',
};
const runs: Measured[] = [];
const leverRuns: Measured[] = [];

function write(): void {
  meta.writtenAt = new Date().toISOString();
  meta.loadNow = loadavg();
  // The raw summaries first, so a table can be redrawn without measuring again (and a rendering
  // bug costs no measurement).
  writeFileSync(values.out!.replace(/\.md$/, '') + '.json', JSON.stringify({ meta, runs, leverRuns }, null, 1));
  try {
    writeMarkdown();
  } catch (err) {
    process.stderr.write(`bench: could not write ${values.out}: ${String(err)}\n`);
  }
}

function writeMarkdown(): void {
  const [cold, cached, incremental] = runs;
  if (!cold) return;
  const lines: string[] = [];
  lines.push('# Benchmarks', '', `Generated by \`npm run bench\` (bench/all.ts) at commit ${meta.commit}, ${meta.writtenAt}.`, '');
  lines.push(`- Machine: ${meta.machine}.`);
  lines.push(`- Load average at start ${meta.loadAtStart.map((l) => l.toFixed(1)).join(' ')}, at the end ${meta.loadNow.map((l) => l.toFixed(1)).join(' ')}: other work shared the cores, and wall times include it.`);
  lines.push(`- Pipeline \`${meta.pipeline}\`, corpus \`${meta.corpus}\`${meta.questions ? `, human-written questions \`${meta.questions}\`` : ''}.`);
  lines.push(`- Settings: ${meta.sets.length ? meta.sets.map((x) => `\`${x}\``).join(', ') : 'the pipeline defaults'}.`);
  lines.push('', '## Per stage', '', '| stage | cold: status | cold: s | cold: throughput | incremental: status | incremental: s | cold stats |', '|---|---|---:|---|---|---:|---|');
  for (const s of cold.summary.stages) {
    const inc = incremental ? stage(incremental.summary, s.id) : undefined;
    lines.push(`| ${s.id} | ${s.status} | ${s.seconds?.toFixed(1) ?? '-'} | ${throughput(s)} | ${inc?.status ?? '-'} | ${inc?.seconds?.toFixed(1) ?? '-'} | ${statsText(s)} |`);
  }
  lines.push('', 'Stages start as soon as their inputs exist, so some run side by side (the two trainings, for one) and share the cores: a stage\'s wall time is not its cost alone.');
  lines.push('', '## Reruns', '', '| run | wall s | stages ran | chunks sent to the query generator | LLM calls | embeddings computed | wall s excluding training |', '|---|---:|---:|---:|---:|---:|---:|');
  for (const r of runs) {
    lines.push(`| ${r.label} | ${r.seconds.toFixed(1)} | ${ran(r.summary)} | ${generatedFor(r.summary)} | ${sumStat(r.summary, 'llmCalls')} | ${sumStat(r.summary, 'embeddingsComputed')} | ${(r.seconds - trainingSeconds(r.summary)).toFixed(1)} |`);
  }
  lines.push('', 'Chunks sent to the query generator: chunk texts the training-query stage found no memo for. With an LLM each costs its calls; with ICT they are free, but the count shows what an LLM would have been asked.');
  if (incremental) {
    const share = (100 * (incremental.seconds - trainingSeconds(incremental.summary))) / (cold.seconds - trainingSeconds(cold.summary));
    lines.push('', `${meta.changedNote} Incremental wall time excluding training (the model and reranker stages): ${share.toFixed(1)}% of the cold run's.`);
  }
  lines.push('', '## Quality (cold run)', '', '| eval set | system | accuracy@1 | accuracy@10 | MRR@10 | nDCG@10 |', '|---|---|---|---|---|---|');
  for (const [set, systems] of Object.entries(cold.summary.metrics)) {
    for (const [system, m] of Object.entries(systems)) {
      lines.push(`| ${set} | ${system} | ${ci(m['accuracy@1'])} | ${ci(m['accuracy@10'])} | ${ci(m['mrr@10'])} | ${ci(m['ndcg@10'])} |`);
    }
  }
  lines.push('', 'Each metric with its 95% bootstrap interval; the report (HTML) of the run has the paired tests and latency.');
  if (leverRuns.length) {
    lines.push('', '## Levers (human-written questions)', '', 'Each row reruns the recipe with one change on the same store; stages it does not touch are cache hits.' + (LEVER_TRIM.length ? ' Lever rows also set `' + LEVER_TRIM.join('`, `') + '`: the reranker is not what they compare.' : ''), '');
    lines.push('| run | training rows | stages ran | wall s | base acc@1 | fine-tuned acc@1 | base acc@10 | fine-tuned acc@10 | fine-tuned MRR@10 |', '|---|---:|---:|---:|---|---|---|---|---|');
    for (const l of [{ ...cold, label: 'cold run (settings above)' }, ...leverRuns]) {
      const h = l.summary.metrics.human ?? l.summary.metrics.generated ?? {};
      const ft = h.finetuned ?? {};
      const base = h.base ?? {};
      lines.push(`| ${l.label} | ${num(stage(l.summary, 'dataset'), 'trainRows') || '-'} | ${ran(l.summary)} | ${l.seconds.toFixed(0)} | ${ci(base['accuracy@1'])} | ${ci(ft['accuracy@1'])} | ${ci(base['accuracy@10'])} | ${ci(ft['accuracy@10'])} | ${ci(ft['mrr@10'])} |`);
    }
  }
  lines.push(...llmSection());
  writeFileSync(values.out!, `${lines.join('\n')}\n`);
  process.stderr.write(`bench: wrote ${values.out}\n`);
}

/** The newest bench/llm.ts results (LLM time dwarfs the rest, so it is measured on its own). */
function llmSection(): string[] {
  const dir = join(PROJECT_ROOT, 'bench', 'results');
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => /^llm-.*\.json$/.test(f)) : [];
  const newest = files.map((f) => join(dir, f)).sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
  if (!newest) return ['', '## LLM generation', '', 'No bench/llm.ts results yet: run `node --import tsx bench/llm.ts`.'];
  const r = JSON.parse(readFileSync(newest, 'utf8')) as { args: Record<string, unknown>; chunks: number; rows: Array<Record<string, number | string>> };
  const out = ['', '## LLM generation (embedded local model)', '', `From \`bench/llm.ts\` (${newest.split('/').pop()}): ${r.chunks} jaquad-dev paragraphs, ${String(r.args.n)} queries each (${String(r.args.styles)}), ${String(r.args.threads)} llama.cpp thread(s).`, ''];
  out.push('| run | concurrency | s | chunks/min | completion tok/s | total tok/s | calls | stage/raw |', '|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const x of r.rows) out.push(`| ${x.what} | ${x.concurrency} | ${x.seconds} | ${x.chunksPerMin} | ${x.completionTokPerS} | ${x.totalTokPerS} | ${x.calls} | ${x.stageOfRaw ?? ''} |`);
  return out;
}

// The levers, chosen before anything runs so a misspelt name fails at once.
const sample = Number(values['llm-sample']);
const sampleLevers = sample > 0
  ? [
      { label: `ICT queries on a ${sample}-chunk sample`, extra: [`generatedQueries.maxChunks=${sample}`] },
      { label: `local LLM queries on the same ${sample} chunks`, extra: ['generatedQueries.llm={"provider":"local"}', 'generatedQueries.concurrency=1', `generatedQueries.maxChunks=${sample}`] },
    ]
  : [];
const all = [
  { name: 'negatives', label: 'no hard negatives (in-batch only)', extra: ['model.numNegatives=0'] },
  ...sampleLevers.map((l) => ({ name: 'sample', ...l })),
  { name: 'epochs', label: 'one epoch instead of two', extra: ['model.epochs=1'] },
  { name: 'merge', label: 'the fine-tune as trained (no merge with the base)', extra: ['model.mergeWithBase=1'] },
  { name: 'roundtrip', label: 'round-trip filter (base model top 10)', extra: ['queries.roundTripTopK=10'] },
];
// A lever changes the training data, so the reranker would retrain beside the model and evaluation
// would rerank again: the lever table compares fine-tuned models only, so both are cut to a token
// (one reranker step, one reranked query) to spend the time on what the table shows.
const LEVER_TRIM = hasReranker ? ['reranker.maxSteps=1', 'evaluation.rerankMaxQueries=1'] : [];
const chosen = values.levers!;
const unknown = ['none', 'all', 'default'].includes(chosen) ? [] : chosen.split(',').filter((n) => !all.some((l) => l.name === n));
if (unknown.length) {
  rmSync(home, { recursive: true, force: true });
  throw new Error(`unknown lever(s) ${unknown.join(', ')}: use negatives, sample, epochs, merge, roundtrip, or default, all, none`);
}
const levers =
  chosen === 'none'
    ? []
    : chosen === 'all'
      ? all
      : chosen === 'default'
        ? all.filter((l) => l.name === 'negatives' || l.name === 'sample')
        : // In the order given, so the one that matters most runs first on a bench that may be cut short.
          chosen.split(',').flatMap((n) => all.filter((l) => l.name === n));

if (values.render) {
  const saved = JSON.parse(readFileSync(values.render, 'utf8')) as { meta: typeof meta; runs: Measured[]; leverRuns: Measured[] };
  Object.assign(meta, saved.meta);
  runs.push(...saved.runs);
  leverRuns.push(...saved.leverRuns);
  rmSync(home, { recursive: true, force: true });
  writeMarkdown();
  process.exit(0);
}

try {
  cpSync(values.corpus!, corpus, { recursive: true });
  runs.push(run('cold'));
  write();
  if (!values['no-reruns']) {
    runs.push(run('fully cached'));
    write();
    // Change 10% of the documents: append a sentence to every tenth file.
    const docs = readdirSync(corpus).sort();
    const changed = docs.filter((_, i) => i % 10 === 0);
    for (const d of changed) writeFileSync(join(corpus, d), `${readFileSync(join(corpus, d), 'utf8')}\n\nこの段落は増分ベンチマークのために追加された。\n`);
    meta.changedNote = `The incremental run appended a sentence to ${changed.length} of ${docs.length} documents.`;
    runs.push(run(`incremental (${changed.length}/${docs.length} documents changed)`));
    write();
  }

  // The levers, on the original documents: every upstream stage is a cache hit from the cold run.
  for (const l of levers) {
    leverRuns.push({ ...run(`lever: ${l.label}`, { corpus: values.corpus!, extra: [...LEVER_TRIM, ...l.extra] }), label: l.label });
    write();
  }
} finally {
  spawnSync(process.execPath, [BIN, 'dev', 'stop'], { env });
  machine.finish();
  // The store holds gigabytes (models, checkpoints, embeddings): nothing reads it after the bench.
  rmSync(home, { recursive: true, force: true });
}
