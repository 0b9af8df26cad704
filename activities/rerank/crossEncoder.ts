import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import type * as Ort from 'onnxruntime-node';
import { loadOnnxRuntime, loadTransformers } from '../heavyLibs.ts';
import { z } from 'zod';
import { exists } from '../../artifacts/fsutil.ts';
import { ModelNotFoundError } from '../../core/errors.ts';

/**
 * A cross-encoder (reranker) run with onnxruntime-node: it reads a (query, passage) pair together
 * and returns one relevance logit. Works for any cross-encoder directory that has an ONNX export:
 * embedflow's `reranker` artifact (st/ + onnx/model.onnx + reranker.json) or a Hugging Face
 * layout (tokenizer.json at the top, onnx/model.onnx or model.onnx), e.g. an ONNX bge-reranker.
 */

/** reranker.json, written by trainer/train_reranker.py; every field optional for foreign directories. */
export const RerankerInfo = z.object({
  name: z.string().optional(),
  source: z.string().optional(),
  base: z.string().optional(),
  maxSeqLength: z.number().int().positive().optional(),
  outputName: z.string().optional(),
});
export type RerankerInfo = z.infer<typeof RerankerInfo>;

export interface CrossEncoderOptions {
  /** Longest (query + passage) in tokens; longer pairs lose the passage's tail. */
  maxLength?: number;
  /** Pairs per forward pass. */
  batchSize?: number;
  /** onnxruntime intra-op threads; defaults to the machine's cores. */
  threads?: number;
}

export interface CrossEncoder {
  readonly name: string;
  readonly maxLength: number;
  /** One logit per passage (higher = more relevant to the query), in passage order. */
  score(query: string, passages: readonly string[]): Promise<Float32Array>;
  close(): Promise<void>;
}

async function firstExisting(paths: string[]): Promise<string | undefined> {
  for (const p of paths) if (await exists(p)) return p;
  return undefined;
}

export async function loadCrossEncoder(dir: string, opts: CrossEncoderOptions = {}): Promise<CrossEncoder> {
  const onnxPath = await firstExisting([join(dir, 'onnx', 'model.onnx'), join(dir, 'model.onnx')]);
  const tokenizerDir = await firstExisting([join(dir, 'st', 'tokenizer.json'), join(dir, 'tokenizer.json')]);
  if (!onnxPath || !tokenizerDir) {
    throw new ModelNotFoundError(`${dir} is not a cross-encoder directory with an ONNX export`, {
      where: dir,
      hint: 'pass a `reranker` artifact (stage kind trainReranker) or a directory with tokenizer.json and onnx/model.onnx',
    });
  }
  const infoPath = join(dir, 'reranker.json');
  const info = (await exists(infoPath)) ? RerankerInfo.parse(JSON.parse(await readFile(infoPath, 'utf8'))) : {};

  const [ort, hf] = await Promise.all([loadOnnxRuntime(), loadTransformers()]);
  // An absolute directory is then read as-is (transformers.js joins localModelPath + the id).
  hf.env.localModelPath = '/';
  const tokenizer: PreTrainedTokenizer = await hf.AutoTokenizer.from_pretrained(join(tokenizerDir, '..'));
  const session = await ort.InferenceSession.create(onnxPath, {
    executionProviders: ['cpu'],
    intraOpNumThreads: opts.threads ?? availableParallelism(),
    graphOptimizationLevel: 'all',
  });
  const outputName = info.outputName ?? session.outputNames[0]!;
  const tokenizerMax = Number(tokenizer.model_max_length);
  const maxLength = opts.maxLength ?? info.maxSeqLength ?? (tokenizerMax > 0 && tokenizerMax < 100_000 ? tokenizerMax : 512);
  const batchSize = opts.batchSize ?? 32;
  const sepId = tokenizer.sep_token_id;
  if (sepId === undefined || sepId === null) {
    throw new ModelNotFoundError('the cross-encoder tokenizer has no separator token', { where: tokenizerDir });
  }

  async function scoreBatch(query: string, passages: readonly string[]): Promise<Float32Array> {
    const enc = tokenizer(
      passages.map(() => query),
      { text_pair: [...passages], padding: true, truncation: true, max_length: maxLength },
    ) as Record<string, { data: BigInt64Array; dims: number[] }>;
    restoreFinalSeparator(enc.input_ids!, enc.attention_mask!, sepId);
    const feeds: Record<string, Ort.Tensor> = {};
    for (const name of session.inputNames) {
      const t = enc[name];
      if (!t) {
        throw new ModelNotFoundError(`the ONNX model wants input "${name}", which the tokenizer does not produce`, {
          where: onnxPath,
        });
      }
      feeds[name] = new ort.Tensor('int64', t.data, t.dims);
    }
    const out = (await session.run(feeds, [outputName]))[outputName]!;
    const logits = out.data as Float32Array;
    const width = out.dims.length > 1 ? out.dims[out.dims.length - 1]! : 1;
    const scores = new Float32Array(passages.length);
    // Two-label heads (not-relevant, relevant) rank by the margin of "relevant".
    for (let i = 0; i < passages.length; i++) {
      scores[i] = width === 1 ? logits[i]! : logits[i * width + width - 1]! - logits[i * width]!;
    }
    return scores;
  }

  return {
    name: info.name ?? dir,
    maxLength,
    async score(query, passages) {
      const out = new Float32Array(passages.length);
      for (let i = 0; i < passages.length; i += batchSize) {
        out.set(await scoreBatch(query, passages.slice(i, i + batchSize)), i);
      }
      return out;
    },
    async close() {
      await session.release();
    },
  };
}

/**
 * transformers.js truncates a pair by cutting the end of the id list, which drops the closing
 * separator that the model was trained to see (Python's tokenizers truncate the passage and keep
 * it). A full row that does not end with the separator was cut: put the separator back in its
 * last place, which gives exactly the ids Python produces for a short query and a long passage.
 */
export function restoreFinalSeparator(
  ids: { data: BigInt64Array; dims: number[] },
  mask: { data: BigInt64Array; dims: number[] },
  sepId: number,
): void {
  const [rows, width] = ids.dims as [number, number];
  const sep = BigInt(sepId);
  for (let r = 0; r < rows; r++) {
    const last = r * width + width - 1;
    if (mask.data[last] === 1n && ids.data[last] !== sep) ids.data[last] = sep;
  }
}

/** Reorder candidates by cross-encoder score, best first (stable for equal scores). */
export function orderByScore<T>(items: readonly T[], scores: ArrayLike<number>): T[] {
  return items
    .map((item, i) => ({ item, s: scores[i]!, i }))
    .sort((a, b) => b.s - a.s || a.i - b.i)
    .map((x) => x.item);
}
