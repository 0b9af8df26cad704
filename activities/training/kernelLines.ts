import { z } from 'zod';

// The training kernel's stdout protocol (trainer/train.py): one JSON object per line, told apart by
// `type`. Unknown types and non-JSON lines are not errors: a newer kernel may say more.

const num = z.number().nullable();

export const StartLine = z.object({
  type: z.literal('start'),
  device: z.string(),
  /** The GPU's name, on CUDA. */
  gpu: z.string().optional(),
  precision: z.string(),
  rows: z.number().int(),
  droppedRows: z.number().int(),
  resumeFrom: z.string().nullable(),
});

export const StatusLine = z.object({ type: z.literal('status'), message: z.string() });

export const ProgressLine = z.object({
  type: z.literal('progress'),
  step: z.number().int(),
  total: z.number().int(),
  epoch: z.number(),
  loss: num,
  lr: num.optional(),
  samplesPerSecond: num,
  lastCheckpoint: z.string().nullable(),
});

export const CheckpointLine = z.object({
  type: z.literal('checkpoint'),
  step: z.number().int(),
  total: z.number().int(),
  path: z.string(),
  seconds: z.number(),
});

export const EvalLine = z.object({
  type: z.literal('eval'),
  step: z.number().int(),
  metrics: z.record(z.string(), num),
  final: z.boolean().optional(),
});

export const DoneLine = z.object({
  type: z.literal('done'),
  step: z.number().int(),
  total: z.number().int(),
  stepsExecuted: z.number().int(),
  trainLoss: num,
  trainSeconds: z.number(),
  samplesPerSecond: num,
  peakGpuMemoryMB: num.optional(),
  /** The kernel's peak resident memory (ru_maxrss). */
  peakRssMB: num.optional(),
  /** Texts per GradCache mini-batch, when the loss ran as GradCache (trainer/memory.py). */
  gradCacheMiniBatch: num.optional(),
  /** The frozen layers' output kept per text (trainer/frozen_cache.py), with trainLayers. */
  frozenCache: z
    .object({ hits: z.number().int(), misses: z.number().int(), texts: z.number().int(), mb: z.number(), full: z.boolean() })
    .nullable()
    .optional(),
  checkpointSeconds: z.array(z.number()),
  lastCheckpoint: z.string().nullable(),
  finalModel: z.string(),
  device: z.string(),
  precision: z.string(),
  /** Why that precision, e.g. "bf16: CPU has avx512_bf16". */
  precisionReason: z.string().optional(),
  rows: z.number().int(),
  droppedRows: z.number().int(),
  evalMetrics: z.record(z.string(), num),
  /** The WiSE-FT merge with the base, when asked for: the share kept and the dev scores it was chosen by. */
  merge: z
    .object({ share: z.number(), chosenBy: z.string(), candidates: z.array(z.record(z.string(), num)) })
    .nullable()
    .optional(),
  export: z.record(z.string(), z.unknown()).nullable(),
});

export const ErrorLine = z.object({
  type: z.literal('error'),
  error: z.enum(['TrainerConfigError', 'OutOfMemoryError', 'TrainerFailedError']),
  message: z.string(),
  where: z.string().optional(),
  hint: z.string().optional(),
  batchSize: z.number().int().optional(),
  suggestedBatchSize: z.number().int().optional(),
});

export const KernelLine = z.discriminatedUnion('type', [StartLine, StatusLine, ProgressLine, CheckpointLine, EvalLine, DoneLine, ErrorLine]);
export type KernelLine = z.infer<typeof KernelLine>;
export type DoneLine = z.infer<typeof DoneLine>;
export type ErrorLine = z.infer<typeof ErrorLine>;

/** A kernel line, or undefined for anything that is not one (a stray print, a newer line type). */
export function parseKernelLine(line: string): KernelLine | undefined {
  const text = line.trim();
  if (!text.startsWith('{')) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  const parsed = KernelLine.safeParse(raw);
  return parsed.success ? parsed.data : undefined;
}

/** Splits a byte stream into complete lines; a line cut across chunks is held until its newline. */
export class LineSplitter {
  private rest = '';
  private readonly decoder = new TextDecoder();

  push(chunk: Uint8Array | string): string[] {
    this.rest += typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    const lines = this.rest.split('\n');
    this.rest = lines.pop() ?? '';
    return lines.filter((l) => l.trim() !== '');
  }

  /** Whatever is left after the stream ended (a last line without its newline). */
  end(): string[] {
    const last = (this.rest + this.decoder.decode()).trim();
    this.rest = '';
    return last ? [last] : [];
  }
}

/** The last `maxLines` lines of a stream (for error messages: what the kernel said before it died). */
export class TailBuffer {
  private lines: string[] = [];
  private readonly splitter = new LineSplitter();

  constructor(private readonly maxLines = 30) {}

  push(chunk: Uint8Array | string): void {
    // tqdm-style progress redraws with \r: keep only the final state of such a line.
    for (const line of this.splitter.push(chunk)) this.add(line);
  }

  private add(line: string): void {
    const shown = line.split('\r').filter((s) => s.trim() !== '').pop() ?? '';
    if (!shown) return;
    this.lines.push(shown.length > 500 ? `${shown.slice(0, 500)}…` : shown);
    if (this.lines.length > this.maxLines) this.lines.shift();
  }

  text(): string {
    for (const line of this.splitter.end()) this.add(line);
    return this.lines.join('\n');
  }
}
