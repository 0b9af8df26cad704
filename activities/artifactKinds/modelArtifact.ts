import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { InvalidInputError } from '../../core/errors.ts';

/** model.json of a `model` artifact, as trainer/export_model.py writes it. */
export const MODEL_INFO_FILE = 'model.json';

export const ModelInfo = z.object({
  name: z.string(),
  source: z.string(),
  dim: z.number().int().positive(),
  pooling: z.string(),
  normalize: z.boolean(),
  maxSeqLength: z.number().int().positive(),
  queryPrefix: z.string(),
  passagePrefix: z.string(),
  /** Graph inputs, in the tokenizer's names (input_ids, attention_mask, token_type_ids). */
  inputNames: z.array(z.string()).min(1),
  /** The graph output holding pooled (and, if `normalize`, unit-length) sentence embeddings. */
  outputName: z.string(),
  onnx: z.object({ fp32: z.string(), int8: z.string() }),
});
export type ModelInfo = z.infer<typeof ModelInfo>;

export type ModelVariant = 'fp32' | 'int8';

export async function readModelInfo(modelDir: string): Promise<ModelInfo> {
  const path = join(modelDir, MODEL_INFO_FILE);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new InvalidInputError(`${path} is missing or not JSON`, {
      where: path,
      hint: 'pass a `model` artifact made by the prepareModel or train stage',
      cause: err,
    });
  }
  const parsed = ModelInfo.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InvalidInputError(`${MODEL_INFO_FILE}: ${issue?.path.join('.')}: ${issue?.message}`, {
      where: path,
      hint: 're-export the model with trainer/export_model.py',
    });
  }
  return parsed.data;
}
