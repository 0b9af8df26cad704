import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import type * as Ort from 'onnxruntime-node';
import { loadOnnxRuntime, loadTransformers } from '../heavyLibs.ts';
import { InvalidInputError } from '../../core/errors.ts';
import { restoreFinalSeparator } from '../rerank/crossEncoder.ts';
import { type ModelInfo, type ModelVariant, readModelInfo } from '../artifactKinds/modelArtifact.ts';

/** Set by the first Encoder.load; feeds() builds tensors with it. */
let ort: typeof Ort;

export type TextKind = 'query' | 'passage';

export interface EncoderOptions {
  variant?: ModelVariant;
  /** onnxruntime intra-op threads; default: every core. */
  threads?: number;
}

export interface EncodeOptions {
  kind: TextKind;
  /** Most texts per onnxruntime call (default 64). */
  batchSize?: number;
  /**
   * Most tokens per call, padding included (default 1024): long passages go a few at a time, short
   * queries many at a time, and each call's activations stay in cache. Measured on 2 cores (texts per
   * CPU-second, 1024 vs 16384 tokens): Japanese paragraphs 11.1 vs 9.6, short questions 79 vs 44.
   */
  maxBatchTokens?: number;
  signal?: AbortSignal;
  /** Called after each batch with the number of texts embedded so far. */
  onProgress?: (done: number, total: number) => void;
}

/** Row-major embeddings: row i (dim floats) belongs to texts[i]. */
export interface Embeddings {
  dim: number;
  count: number;
  data: Float32Array;
}

export function row(e: Embeddings, i: number): Float32Array {
  return e.data.subarray(i * e.dim, (i + 1) * e.dim);
}

interface Tokens {
  ids: BigInt64Array;
  typeIds: BigInt64Array | undefined;
}

/**
 * Batches of text indices, longest first (so each batch pads to similar lengths, as
 * SentenceTransformer.encode does), each within `maxTexts` texts and `maxTokens` padded tokens.
 */
export function planBatches(lengths: readonly number[], maxTexts: number, maxTokens: number): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => (lengths[b] as number) - (lengths[a] as number) || a - b);
  const batches: number[][] = [];
  for (let i = 0; i < order.length; ) {
    const width = lengths[order[i] as number] as number;
    const n = Math.max(1, Math.min(maxTexts, Math.floor(maxTokens / Math.max(1, width))));
    batches.push(order.slice(i, i + n));
    i += n;
  }
  return batches;
}

/**
 * THE encoder: a `model` artifact's ONNX graph (fp32 or int8) run by onnxruntime-node, with the
 * tokenizer read by transformers.js from the artifact's st/ directory. Pooling and normalisation are
 * part of the graph (see trainer/export_model.py), so vectors equal SentenceTransformer.encode's.
 */
export class Encoder {
  readonly info: ModelInfo;
  readonly variant: ModelVariant;
  /** Texts run through the model since load (the memo tests count these). */
  modelCalls = 0;
  private readonly tokenizer: PreTrainedTokenizer;
  private readonly session: Ort.InferenceSession;

  private constructor(info: ModelInfo, variant: ModelVariant, tokenizer: PreTrainedTokenizer, session: Ort.InferenceSession) {
    this.info = info;
    this.variant = variant;
    this.tokenizer = tokenizer;
    this.session = session;
  }

  static async load(modelDir: string, opts: EncoderOptions = {}): Promise<Encoder> {
    const info = await readModelInfo(modelDir);
    const variant = opts.variant ?? 'fp32';
    ort = await loadOnnxRuntime();
    const tokenizer = await (await loadTransformers()).AutoTokenizer.from_pretrained(join(modelDir, 'st'));
    const onnxPath = join(modelDir, info.onnx[variant]);
    const session = await ort.InferenceSession.create(onnxPath, {
      intraOpNumThreads: opts.threads ?? availableParallelism(),
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      // Idle pool threads sleep instead of spinning: workers share their cores with other stages,
      // and spinning threads burn them for nothing between runs.
      extra: { session: { intra_op: { allow_spinning: '0' } } },
    }).catch((err: unknown) => {
      throw new InvalidInputError(`onnxruntime cannot load the ${variant} graph: ${(err as Error).message}`, {
        where: onnxPath,
        hint: 'pass a `model` artifact made by the prepareModel or train stage (trainer/export_model.py)',
        cause: err,
      });
    });
    for (const name of info.inputNames) {
      if (!session.inputNames.includes(name)) {
        throw new InvalidInputError(`the ONNX graph has no input "${name}" named in model.json`, {
          where: onnxPath,
          hint: 're-export the model with trainer/export_model.py',
        });
      }
    }
    return new Encoder(info, variant, tokenizer, session);
  }

  get dim(): number {
    return this.info.dim;
  }

  /** The text the model actually sees: the model's query/passage prefix applied. */
  prefixed(text: string, kind: TextKind): string {
    return (kind === 'query' ? this.info.queryPrefix : this.info.passagePrefix) + text;
  }

  /** Tokens the model sees per text (prefix and special tokens included, after truncation): what a server bills as usage. */
  tokenCounts(texts: readonly string[], kind: TextKind): number[] {
    return texts.map((t) => this.tokenize(this.prefixed(t, kind)).ids.length);
  }

  async encode(texts: readonly string[], opts: EncodeOptions): Promise<Embeddings> {
    const dim = this.info.dim;
    const out = new Float32Array(texts.length * dim);
    const tokens = texts.map((t) => this.tokenize(this.prefixed(t, opts.kind)));
    const batches = planBatches(
      tokens.map((t) => t.ids.length),
      opts.batchSize ?? 64,
      opts.maxBatchTokens ?? 1024,
    );
    let done = 0;
    let feeds = batches.length ? this.feeds(batches[0] as number[], tokens) : undefined;
    for (let b = 0; b < batches.length; b++) {
      opts.signal?.throwIfAborted();
      const rows = batches[b] as number[];
      const running = this.session.run(feeds as Record<string, Ort.Tensor>, [this.info.outputName]);
      // Build the next batch's tensors while onnxruntime works on this one in its own threads.
      feeds = b + 1 < batches.length ? this.feeds(batches[b + 1] as number[], tokens) : undefined;
      const result = await running;
      const emb = result[this.info.outputName] as Ort.Tensor;
      const data = emb.data as Float32Array;
      if (emb.dims[1] !== dim) {
        throw new InvalidInputError(`the model returns ${emb.dims[1]}-dimensional vectors, model.json says ${dim}`);
      }
      rows.forEach((textIndex, j) => out.set(data.subarray(j * dim, (j + 1) * dim), textIndex * dim));
      for (const t of Object.values(result)) t.dispose();
      this.modelCalls += rows.length;
      done += rows.length;
      opts.onProgress?.(done, texts.length);
    }
    return { dim, count: texts.length, data: out };
  }

  /** Token ids of one text, truncated to maxSeqLength the way Python's tokenizers truncate. */
  private tokenize(text: string): Tokens {
    const enc = this.tokenizer(text, { truncation: true, max_length: this.info.maxSeqLength }) as Record<
      string,
      { data: BigInt64Array; dims: number[] }
    >;
    // transformers.js cuts a long text's ids without keeping the closing [SEP]; Python keeps it.
    const sepId = this.tokenizer.sep_token_id;
    if (typeof sepId === 'number' && enc.attention_mask) restoreFinalSeparator(enc.input_ids!, enc.attention_mask, sepId);
    return { ids: enc.input_ids!.data, typeIds: enc.token_type_ids?.data };
  }

  /** Right-padded input tensors for a batch of tokenised texts. */
  private feeds(rows: number[], tokens: Tokens[]): Record<string, Ort.Tensor> {
    const width = Math.max(...rows.map((r) => (tokens[r] as Tokens).ids.length));
    const shape = [rows.length, width];
    const ids = new BigInt64Array(rows.length * width).fill(BigInt(this.tokenizer.pad_token_id ?? 0));
    const mask = new BigInt64Array(rows.length * width);
    // Single texts have one segment: token types are all 0 unless the tokenizer says otherwise.
    const types = new BigInt64Array(rows.length * width);
    rows.forEach((r, j) => {
      const t = tokens[r] as Tokens;
      ids.set(t.ids, j * width);
      mask.fill(1n, j * width, j * width + t.ids.length);
      if (t.typeIds) types.set(t.typeIds, j * width);
    });
    const byName: Record<string, BigInt64Array> = { input_ids: ids, attention_mask: mask, token_type_ids: types };
    const feeds: Record<string, Ort.Tensor> = {};
    for (const name of this.info.inputNames) {
      const data = byName[name];
      if (!data) throw new InvalidInputError(`the ONNX graph wants input "${name}", which the encoder cannot build`);
      feeds[name] = new ort.Tensor('int64', data, shape);
    }
    return feeds;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
