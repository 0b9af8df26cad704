import { z } from 'zod';
import { InvalidInputError } from '../../core/errors.ts';

/**
 * How positions in a document's `raw_text` (the decoded file) map onto its `text` (extracted and
 * normalised). Human-written evaluation questions give their gold answers as spans of the raw file
 * text; chunks are spans of `text`; this map joins the two.
 *
 * A map is a chain of steps (e.g. HTML extraction, then NFKC), applied in order. One step is a list
 * of segments given by their start offsets: segment i covers raw [r[i], r[i+1]) and text
 * [t[i], t[i+1]) (the last one ends at rawLength/textLength). A segment whose two sides have the same
 * length maps character for character; any other (NFKC's ㌔ → キロ, an entity, a collapsed run of
 * whitespace, a dropped <script>) is atomic: a span touching it widens to all of it. Offsets are
 * UTF-16 code units, as JavaScript strings index.
 */
export interface OffsetStep {
  rawLength: number;
  textLength: number;
  r: number[];
  t: number[];
}

export interface OffsetMap {
  steps: OffsetStep[];
}

const StepJson = z
  .object({ raw: z.number().int().nonnegative(), text: z.number().int().nonnegative(), seg: z.array(z.number().int().nonnegative()) })
  .refine((s) => s.seg.length % 2 === 0, { message: 'seg must hold (raw, text) pairs' });
const MapJson = z.object({ v: z.literal(1), steps: z.array(StepJson) });

export function serializeOffsetMap(map: OffsetMap): string {
  return JSON.stringify({
    v: 1,
    steps: map.steps.map((s) => ({ raw: s.rawLength, text: s.textLength, seg: s.r.flatMap((r, i) => [r, s.t[i] ?? 0]) })),
  });
}

export function parseOffsetMap(json: string): OffsetMap {
  let parsed;
  try {
    parsed = MapJson.parse(JSON.parse(json));
  } catch (err) {
    throw new InvalidInputError('offset_map is not a valid offset map', { cause: err, hint: 'take offset_map from a documents artifact as it is' });
  }
  return {
    steps: parsed.steps.map((s) => ({
      rawLength: s.raw,
      textLength: s.text,
      r: s.seg.filter((_, i) => i % 2 === 0),
      t: s.seg.filter((_, i) => i % 2 === 1),
    })),
  };
}

/** The identity map of a text of `length` code units. */
export function identityStep(length: number): OffsetStep {
  return { rawLength: length, textLength: length, r: [0], t: [0] };
}

/**
 * Map a [start, end) span of the raw file text onto the document text: the smallest span of `text`
 * that holds everything the raw span became. `offsetMap` is the document's `offset_map` column (the
 * JSON string) or its parsed form.
 */
export function rawSpanToTextSpan(offsetMap: OffsetMap | string, start: number, end: number): [number, number] {
  const map = typeof offsetMap === 'string' ? parseOffsetMap(offsetMap) : offsetMap;
  const rawLength = map.steps[0]?.rawLength ?? 0;
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start || end > rawLength) {
    throw new InvalidInputError(`span [${start}, ${end}) is not inside the raw text (length ${rawLength})`, {
      hint: 'give 0 <= start <= end <= raw_text.length, in UTF-16 code units',
    });
  }
  let span: [number, number] = [start, end];
  for (const step of map.steps) span = mapSpan(step, span[0], span[1]);
  return span;
}

function mapSpan(step: OffsetStep, start: number, end: number): [number, number] {
  const s = mapStart(step, start);
  return start === end ? [s, s] : [s, Math.max(s, mapEnd(step, end))];
}

function segEnd(step: OffsetStep, i: number): [number, number] {
  return [step.r[i + 1] ?? step.rawLength, step.t[i + 1] ?? step.textLength];
}

/** Index of the last segment whose raw start satisfies `ok`, by binary search (starts are non-decreasing). */
function lastSegment(step: OffsetStep, ok: (rawStart: number) => boolean): number {
  let lo = 0;
  let hi = step.r.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ok(step.r[mid]!)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function mapStart(step: OffsetStep, pos: number): number {
  if (pos >= step.rawLength) return step.textLength;
  const i = lastSegment(step, (r) => r <= pos);
  const [rEnd, tEnd] = segEnd(step, i);
  const r0 = step.r[i]!;
  const t0 = step.t[i]!;
  return rEnd - r0 === tEnd - t0 ? t0 + (pos - r0) : t0;
}

function mapEnd(step: OffsetStep, pos: number): number {
  if (pos <= 0) return 0;
  const i = lastSegment(step, (r) => r < pos);
  const [rEnd, tEnd] = segEnd(step, i);
  const r0 = step.r[i]!;
  const t0 = step.t[i]!;
  return rEnd - r0 === tEnd - t0 ? t0 + (pos - r0) : tEnd;
}

/**
 * Builds one step while a reader walks the raw text in order and emits the output text piece by piece.
 * Raw text between pieces that nothing was emitted for is recorded as dropped.
 */
export class OffsetStepBuilder {
  private readonly parts: string[] = [];
  private readonly r: number[] = [];
  private readonly t: number[] = [];
  private rawPos = 0;
  private textPos = 0;
  /** The last segment maps char for char, so an adjacent char-for-char segment can extend it. */
  private lastIsCopy = false;

  /** Raw offset up to which the raw text has been accounted for. */
  get rawOffset(): number {
    return this.rawPos;
  }

  /** Emit `out` for raw [rawStart, rawEnd); raw text skipped since the previous piece counts as dropped. */
  emit(rawStart: number, rawEnd: number, out: string): void {
    if (rawStart < this.rawPos || rawEnd < rawStart) {
      throw new RangeError(`offset map pieces out of order: [${rawStart}, ${rawEnd}) after ${this.rawPos}`);
    }
    if (rawStart > this.rawPos) this.segment(rawStart - this.rawPos, '');
    this.segment(rawEnd - rawStart, out);
  }

  /** Emit text that has no counterpart in the raw text (a separator, a heading marker). */
  insert(out: string): void {
    this.segment(0, out);
  }

  private segment(rawLen: number, out: string): void {
    if (rawLen === 0 && out.length === 0) return;
    const copy = rawLen === out.length;
    if (!(copy && this.lastIsCopy)) {
      this.r.push(this.rawPos);
      this.t.push(this.textPos);
    }
    this.lastIsCopy = copy;
    this.rawPos += rawLen;
    this.textPos += out.length;
    if (out) this.parts.push(out);
  }

  /** The text and the step, the rest of the raw text (up to rawLength) counting as dropped. */
  finish(rawLength: number): { text: string; step: OffsetStep } {
    if (rawLength > this.rawPos) this.segment(rawLength - this.rawPos, '');
    if (this.r.length === 0) {
      this.r.push(0);
      this.t.push(0);
    }
    return { text: this.parts.join(''), step: { rawLength, textLength: this.textPos, r: this.r, t: this.t } };
  }
}
