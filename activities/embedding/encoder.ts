import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import type * as Ort from 'onnxruntime-node';
import { loadOnnxRuntime, loadTransformers } from '../heavyLibs.ts';
import { InvalidInputError } from '../errors.ts';
import { restoreFinalSeparator } from '../rerank/crossEncoder.ts';
import { type ModelInfo, type ModelVariant, readModelInfo } from './modelInfo.ts';

/** Set by the first Encoder.load; tokenize() builds tensors with it. */
let ort: typeof Ort;

export type TextKind = 'query' | 'passage';

export interface EncoderOptions {
  variant?: ModelVariant;
  /** onnxruntime intra-op threads; default: every core. */
  threads?: number;
}

export interface EncodeOptions {
  kind: TextKind;
  batchSize?: number;
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
    const session = await ort.InferenceSession.create(join(modelDir, info.onnx[variant]), {
      intraOpNumThreads: opts.threads ?? availableParallelism(),
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      // Idle pool threads sleep instead of spinning: workers share their cores with other stages,
      // and spinning threads burn them for nothing between runs.
      extra: { session: { intra_op: { allow_spinning: '0' } } },
    });
    for (const name of info.inputNames) {
      if (!session.inputNames.includes(name)) {
        throw new InvalidInputError(`the ONNX graph has no input "${name}" named in model.json`, {
          where: join(modelDir, info.onnx[variant]),
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

  async encode(texts: readonly string[], opts: EncodeOptions): Promise<Embeddings> {
    const dim = this.info.dim;
    const out = new Float32Array(texts.length * dim);
    const batchSize = opts.batchSize ?? 32;
    // Longest first, so each batch pads to similar lengths (as SentenceTransformer.encode does).
    const order = texts.map((_, i) => i).sort((a, b) => (texts[b] as string).length - (texts[a] as string).length);
    const batches: number[][] = [];
    for (let i = 0; i < order.length; i += batchSize) batches.push(order.slice(i, i + batchSize));

    let done = 0;
    // Tokenise batch i+1 on the JS thread while onnxruntime runs batch i on its own threads.
    let feeds = batches.length ? this.tokenize(batches[0] as number[], texts, opts.kind) : undefined;
    for (let b = 0; b < batches.length; b++) {
      opts.signal?.throwIfAborted();
      const ids = batches[b] as number[];
      const running = this.session.run(feeds as Record<string, Ort.Tensor>, [this.info.outputName]);
      feeds = b + 1 < batches.length ? this.tokenize(batches[b + 1] as number[], texts, opts.kind) : undefined;
      const result = await running;
      const emb = result[this.info.outputName] as Ort.Tensor;
      const data = emb.data as Float32Array;
      if (emb.dims[1] !== dim) {
        throw new InvalidInputError(`the model returns ${emb.dims[1]}-dimensional vectors, model.json says ${dim}`);
      }
      ids.forEach((textIndex, j) => out.set(data.subarray(j * dim, (j + 1) * dim), textIndex * dim));
      for (const t of Object.values(result)) t.dispose();
      this.modelCalls += ids.length;
      done += ids.length;
      opts.onProgress?.(done, texts.length);
    }
    return { dim, count: texts.length, data: out };
  }

  private tokenize(ids: number[], texts: readonly string[], kind: TextKind): Record<string, Ort.Tensor> {
    const batch = ids.map((i) => this.prefixed(texts[i] as string, kind));
    const enc = this.tokenizer(batch, { padding: true, truncation: true, max_length: this.info.maxSeqLength }) as Record<
      string,
      { data: BigInt64Array; dims: number[] }
    >;
    // transformers.js cuts a long text's ids without keeping the closing [SEP]; Python keeps it.
    const sepId = this.tokenizer.sep_token_id;
    if (typeof sepId === 'number' && enc.attention_mask) restoreFinalSeparator(enc.input_ids!, enc.attention_mask, sepId);
    const feeds: Record<string, Ort.Tensor> = {};
    const shape = (enc.input_ids as { dims: number[] }).dims;
    for (const name of this.info.inputNames) {
      const t = enc[name];
      // BERT-style graphs take token_type_ids; a tokenizer that does not produce them means all zeros.
      const data = t ? t.data : new BigInt64Array(shape[0]! * shape[1]!);
      feeds[name] = new ort.Tensor('int64', data, shape);
    }
    return feeds;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
