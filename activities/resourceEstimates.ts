import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { ArtifactReader } from '../artifacts/store.ts';
import type { ResourceNeeds } from '../dsl/stage.ts';
import { MODEL_INFO_FILE } from './artifactKinds/modelArtifact.ts';

// What the heavy built-in stage kinds need of a worker (StageKind.resources → resourceBudget.ts):
// CPU-heavy or not, and an estimate of peak resident memory from the stage's parameters and its input
// model's shape. Estimates, not promises: they decide what may run side by side, so each errs high
// where it was not measured. Every constant says what it was checked against; `peakRssMB` in the
// training stages' stats is the measured figure to compare with.

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** The transformer shape that sets training and inference memory. */
export interface ModelShape {
  layers: number;
  hidden: number;
  heads: number;
  intermediate: number;
  vocab: number;
  /** Tokens the model reads at most (sentence-transformers' max_seq_length). */
  maxSeqLength: number;
}

/** multilingual-e5-small (the recipe's base): assumed where a model's config cannot be read. */
export const E5_SMALL: ModelShape = { layers: 12, hidden: 384, heads: 12, intermediate: 1536, vocab: 250037, maxSeqLength: 512 };

const HfConfig = z.object({
  num_hidden_layers: z.number().int().positive(),
  hidden_size: z.number().int().positive(),
  num_attention_heads: z.number().int().positive(),
  intermediate_size: z.number().int().positive(),
  vocab_size: z.number().int().positive(),
});

/** The shape of a `model` artifact's network (st/config.json, model.json's maxSeqLength); E5_SMALL's where unreadable. */
export async function modelShape(model: Pick<ArtifactReader, 'dir'> | undefined): Promise<ModelShape> {
  if (!model) return E5_SMALL;
  const json = (rel: string) => readFile(join(model.dir, rel), 'utf8').then((t) => JSON.parse(t) as unknown, () => undefined);
  const cfg = HfConfig.safeParse(await json('st/config.json'));
  if (!cfg.success) return E5_SMALL;
  const info = z.object({ maxSeqLength: z.number().int().positive() }).safeParse(await json(MODEL_INFO_FILE));
  const c = cfg.data;
  return {
    layers: c.num_hidden_layers,
    hidden: c.hidden_size,
    heads: c.num_attention_heads,
    intermediate: c.intermediate_size,
    vocab: c.vocab_size,
    maxSeqLength: info.success ? info.data.maxSeqLength : 512,
  };
}

/** Parameters of a BERT-style encoder: embeddings, then per layer attention, MLP and two layer norms. */
export function parameterCount(s: ModelShape): { total: number; embedding: number } {
  const h = s.hidden;
  const embedding = (s.vocab + s.maxSeqLength + 2) * h;
  const layer = 4 * (h * h + h) + 2 * h * s.intermediate + s.intermediate + h + 4 * h;
  return { total: embedding + 2 * h + s.layers * layer + h * h + h, embedding };
}

/**
 * Bytes of activations one token keeps for the backward pass, all layers: Korthikanti et al. (2022)
 * count 34·h + 5·heads·seq bytes per layer in 16-bit; ×2 in fp32. Times 0.85, fitted to the recipe's
 * MiniLM step on a CPU: 32 rows × 3 texts × 256 tokens took 8.8 GB plain and 3.1 GB as GradCache in
 * mini-batches of 16 (README), i.e. ~0.28 MB per token with a graph (the formula: 0.33).
 */
function activationBytesPerToken(s: ModelShape, seq: number, precision: Precision): number {
  const fp32 = 2 * (34 * s.hidden + 5 * s.heads * seq) * s.layers * 0.85;
  // bf16/fp16 autocast keeps part of the graph in 16 bits: not measured on a CPU, hence only 0.6.
  return precision === 'bf16' || precision === 'fp16' ? fp32 * 0.6 : fp32;
}

/**
 * Python, torch, transformers, the tokenizer and the datasets: 1.0 GB, and ~7.4 copies of the fp32
 * weights (the trained model, the base and the candidate of mergeWithBase, ONNX export's traced graph
 * and protobuf, int8 quantisation). Both fitted to two measured peaks: MiniLM (91 MB of weights, all
 * trained) as GradCache at 3.1 GB, and multilingual-e5-small (470 MB, embeddings frozen) batch 32 × 4
 * texts × 256 tokens as GradCache at 7,060 MB.
 */
const PYTHON_RUNTIME_BYTES = 1.0 * GiB;
const WEIGHT_COPIES = 7.4;
/** Per trained parameter: its gradient and AdamW's two moments, fp32. */
const OPTIMIZER_BYTES_PER_PARAM = 12;

/** Tokens a CPU step may embed with gradients before MNRL runs as GradCache: trainer/memory.py's CPU_TOKENS_WITH_GRAPH. */
const CPU_TOKENS_WITH_GRAPH = 4096;
/** trainer/memory.py's CACHED_MNRL_MINI_BATCH. */
const CACHED_MNRL_MINI_BATCH = 32;

type Precision = 'auto' | 'fp32' | 'bf16' | 'fp16';

export interface TrainingShape {
  loss: 'mnrl' | 'cached-mnrl' | 'gist' | 'cross-encoder';
  batchSize: number;
  miniBatchSize?: number;
  textsPerRow: number;
  maxSeqLength?: number;
  device: 'auto' | 'cpu' | 'cuda';
  precision: Precision;
  cpuThreads?: number;
  freezeEmbeddings: boolean;
  /** Only the top N layers learn (and keep a graph). */
  trainLayers?: number | 'all';
  /** With trainLayers: the cap on the frozen layers' output kept per text (trainer/frozen_cache.py). */
  frozenCacheMB?: number;
  /** Training rows (dataset train + dev), bounding what that cache can hold. */
  rows?: number;
}

/** trainer/memory.py's grad_cache_plan: the GradCache mini-batch, or undefined for plain MNRL. */
export function gradCacheMiniBatch(t: TrainingShape, seq: number, share = 1): number | undefined {
  if (t.loss === 'cached-mnrl') return t.miniBatchSize ?? CACHED_MNRL_MINI_BATCH;
  if (t.loss !== 'mnrl') return undefined;
  if (t.miniBatchSize !== undefined) return t.miniBatchSize < t.batchSize ? t.miniBatchSize : undefined;
  if (t.device === 'cuda' || t.batchSize * t.textsPerRow * seq * share <= CPU_TOKENS_WITH_GRAPH) return undefined;
  return Math.min(t.batchSize, Math.max(1, Math.floor(CPU_TOKENS_WITH_GRAPH / (seq * share))));
}

/** The share of a model's layers that learn, and so keep activations for the backward pass. */
export function trainedShare(shape: ModelShape, trainLayers: number | 'all' | undefined): number {
  return trainLayers === undefined || trainLayers === 'all' ? 1 : Math.min(1, trainLayers / shape.layers);
}

/** A fine-tune in a Python child (trainer/train.py, train_reranker.py): all cores, and its peak resident memory. */
export function trainingNeeds(shape: ModelShape, t: TrainingShape): ResourceNeeds {
  const seq = Math.min(t.maxSeqLength ?? shape.maxSeqLength, shape.maxSeqLength);
  const params = parameterCount(shape);
  const weights = 4 * params.total;
  const host = PYTHON_RUNTIME_BYTES + WEIGHT_COPIES * weights;
  // On a GPU the graph and the optimiser live in its memory: the host holds the rest, one core drives it.
  if (t.device === 'cuda') return { cpu: 'heavy', cores: 1, memoryBytes: host };
  const share = trainedShare(shape, t.trainLayers);
  const mini = gradCacheMiniBatch(t, seq, share);
  // GradCache embeds one column's mini-batch with its graph at a time; plain MNRL the whole step.
  const tokensWithGraph = (mini !== undefined ? mini * seq : t.batchSize * t.textsPerRow * seq) * share;
  const trained = share < 1 ? share * (params.total - params.embedding) : t.freezeEmbeddings ? params.total - params.embedding : params.total;
  // At most every text of every row at full length, fp32, up to the cap (a chunk recurs: it errs high).
  const frozenCache = share < 1 ? Math.min((t.frozenCacheMB ?? 0) * MiB, (t.rows ?? 0) * t.textsPerRow * seq * shape.hidden * 4) : 0;
  return {
    cpu: 'heavy',
    cores: t.cpuThreads,
    memoryBytes: Math.round(host + OPTIMIZER_BYTES_PER_PARAM * trained + tokensWithGraph * activationBytesPerToken(shape, seq, t.precision) + frozenCache),
  };
}

/**
 * A model converted and exported by trainer/export_model.py (a child): the runtime and 9 copies of
 * the fp32 weights (the model, the traced graph, its protobuf, the int8 quantisation and parity
 * checks). Fitted to multilingual-e5-small's export in the soak (bench/soak.ts, BENCHMARKS.md): the
 * worker with the export child peaked at 5,727 and 5,785 MB, ~0.8 GB of it the worker itself; the
 * training-derived 7.4 copies (4,345 MB) was low.
 */
const EXPORT_WEIGHT_COPIES = 9;
export function exportNeeds(shape: ModelShape = E5_SMALL): ResourceNeeds {
  return { cpu: 'heavy', memoryBytes: Math.round(PYTHON_RUNTIME_BYTES + EXPORT_WEIGHT_COPIES * 4 * parameterCount(shape).total) };
}

/**
 * onnxruntime in this process (embedding, mining, evaluation): the session holds the graph's weights
 * about twice (initialisers and pre-packed copies), the tokenizer and the batch arena ~300 MiB
 * (Encoder batches at most 1,024 tokens); the corpus's vectors on top. Not measured: it errs high.
 */
export function encodingNeeds(graphs: Array<{ bytes: number }>, vectors = 0, threads?: number): ResourceNeeds {
  const sessions = graphs.reduce((sum, g) => sum + 2 * g.bytes + 300 * MiB, 0);
  return { cpu: 'heavy', cores: threads, memoryBytes: Math.round(sessions + vectors) };
}

/** The ONNX graph `variant` of a `model` artifact, by its manifest (model.json names it; the default layout is onnx/model[_int8].onnx). */
export function onnxGraph(model: Pick<ArtifactReader, 'manifest'> | undefined, variant: 'fp32' | 'int8' = 'fp32'): { bytes: number } {
  const want = variant === 'int8' ? /onnx\/model_int8\.onnx(_data)?$/ : /onnx\/model\.onnx(_data)?$/;
  const bytes = (model?.manifest.files ?? []).filter((f) => want.test(f.path)).reduce((s, f) => s + f.bytes, 0);
  // E5-small's fp32 graph where the artifact is unknown.
  return { bytes: bytes || (variant === 'int8' ? 120 : 470) * MiB };
}

/** Rows of a table artifact (chunks, queries) by its manifest, for the vectors an encoding stage keeps. */
export function tableRows(a: Pick<ArtifactReader, 'manifest'> | undefined): number {
  return Object.values(a?.manifest.rows ?? {}).reduce((s, n) => s + n, 0);
}

/**
 * A BM25 index of `rows` chunks: a 256-token chunk of Japanese gives ~600 character and bigram terms,
 * about 400 distinct, at 8 bytes a posting (a document and its weight) plus the term dictionary.
 */
export function lexicalIndexBytes(rows: number): number {
  return rows * 4096;
}

/** Vectors of `rows` texts kept in memory (fp32 at the model's width, E5's 384 by default). */
export function vectorBytes(rows: number, dim = 384): number {
  return rows * dim * 4;
}

/**
 * llama.cpp in this process: the GGUF mapped in (its size), the KV cache (≤ 128 KiB per token of
 * context for the ≤ 3B models this runs on a CPU; gemma3-270m needs far less) and ~512 MiB of
 * buffers. Not measured: it errs high.
 */
export async function localLlmNeeds(ggufPath: string | undefined, contextSize: number, threads?: number): Promise<ResourceNeeds> {
  const bytes = ggufPath ? await stat(ggufPath).then((s) => s.size, () => 1 * GiB) : 1 * GiB;
  return { cpu: 'heavy', cores: threads, memoryBytes: bytes + contextSize * 128 * 1024 + 512 * MiB };
}
