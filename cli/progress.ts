import { z } from 'zod';
import { ConfigError } from '../core/errors.ts';
import { type Pace, colorWanted, stageLine } from './render.ts';
import type { RunView } from './runs.ts';

// Progress while a run goes, on stderr. On a terminal: bars redrawn in place, with rate and ETA.
// Elsewhere (CI logs, nohup, a scheduler's log): a line when a stage changes state, and one line per
// running stage at a steady interval, so a log shows a 40-minute stage advancing.

export const DEFAULT_PROGRESS_INTERVAL_MS = 30_000;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `30s`, `2m`, `500ms`, `1h`, or a bare number of seconds; at least 100 ms. */
export const ProgressInterval = z
  .string()
  .trim()
  .regex(/^\d+(\.\d+)?(ms|s|m|h)?$/, 'a duration such as 30s, 2m or 500ms')
  .transform((text) => {
    const [, n, unit] = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text)!;
    return Number(n) * UNIT_MS[unit ?? 's']!;
  })
  .refine((ms) => ms >= 100, 'at least 100ms')
  .describe('how often a log that is not a terminal gets a progress line per running stage');

/** Parses a progress interval, or throws a message fit for the flag or variable named `what`. */
export function parseProgressInterval(text: string, what: string): number {
  const parsed = ProgressInterval.safeParse(text);
  if (parsed.success) return parsed.data;
  throw new ConfigError(`${what} ${JSON.stringify(text)}: ${parsed.error.issues[0]?.message ?? 'invalid'}`, { hint: 'e.g. 30s, 2m or 500ms' });
}

/** The interval from `--progress-interval`, else EMBEDFLOW_PROGRESS_INTERVAL, else 30 s. */
export function progressIntervalMs(flag: number | undefined, vars: NodeJS.ProcessEnv = process.env): number {
  if (flag !== undefined) return flag;
  const env = vars.EMBEDFLOW_PROGRESS_INTERVAL;
  return env ? parseProgressInterval(env, 'EMBEDFLOW_PROGRESS_INTERVAL') : DEFAULT_PROGRESS_INTERVAL_MS;
}

interface Sample {
  t: number;
  done: number;
}

/**
 * A stage's pace from the progress it reports, measured between changes of its count as this process
 * saw them: from the first change (not the stage's start, which may include loading a model or a
 * resume's memo hits) to the latest (not to now, so the rate does not sag between heartbeats). Both
 * ends are seen the same way, one poll after a heartbeat, so the delay cancels out.
 */
class Pacer {
  private seen: Sample | undefined;
  private first: Sample | undefined;
  private latest: Sample | undefined;
  private attempt = 0;

  observe(done: number, attempt: number, t: number): void {
    if (attempt !== this.attempt || !this.seen || done < this.seen.done) {
      this.attempt = attempt;
      this.seen = { t, done };
      this.first = this.latest = undefined;
      return;
    }
    if (done === this.seen.done) return;
    this.seen = { t, done };
    if (!this.first) this.first = this.seen;
    else this.latest = this.seen;
  }

  pace(): Pace | undefined {
    if (!this.first || !this.latest) return undefined;
    const seconds = (this.latest.t - this.first.t) / 1000;
    return seconds > 0 ? { rate: (this.latest.done - this.first.done) / seconds } : undefined;
  }
}

export interface PrinterOptions {
  intervalMs?: number;
  stream?: Pick<NodeJS.WriteStream, 'write' | 'isTTY'>;
  now?: () => number;
}

export class ProgressPrinter {
  private readonly last = new Map<string, string>();
  private readonly pacers = new Map<string, Pacer>();
  private drawn = 0;
  private readonly stream: Pick<NodeJS.WriteStream, 'write' | 'isTTY'>;
  private readonly tty: boolean;
  private readonly color: boolean;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private nextTick: number;

  constructor(opts: PrinterOptions = {}) {
    this.stream = opts.stream ?? process.stderr;
    this.tty = this.stream.isTTY === true;
    this.color = colorWanted(this.stream);
    this.intervalMs = opts.intervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS;
    this.now = opts.now ?? Date.now;
    this.nextTick = this.now() + this.intervalMs;
  }

  update(view: RunView): void {
    const now = this.now();
    const pending = new Map(view.pending.map((p) => [p.stage, p]));
    const paces = new Map<string, Pace>();
    for (const s of view.stages) {
      const p = pending.get(s.id);
      if (s.status !== 'running' || typeof p?.progress?.done !== 'number') continue;
      const pacer = this.pacers.get(s.id) ?? new Pacer();
      this.pacers.set(s.id, pacer);
      pacer.observe(p.progress.done, p.attempt, now);
      const pace = pacer.pace();
      if (pace) paces.set(s.id, pace);
    }
    const line = (i: number) => stageLine(view.stages[i]!, pending.get(view.stages[i]!.id), { paces, color: this.color }, now);
    if (this.tty) {
      if (this.drawn) this.stream.write(`\x1b[${this.drawn}A`);
      view.stages.forEach((_, i) => this.stream.write(`\x1b[2K${line(i)}\n`));
      this.drawn = view.stages.length;
      return;
    }
    const periodic = now >= this.nextTick;
    if (periodic) this.nextTick = now + this.intervalMs;
    view.stages.forEach((s, i) => {
      const changed = this.last.get(s.id) !== s.status;
      this.last.set(s.id, s.status);
      if ((changed && s.status !== 'pending') || (periodic && !changed && s.status === 'running')) this.stream.write(`${line(i)}\n`);
    });
  }
}
