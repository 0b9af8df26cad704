import { isGrpcServiceError } from '@temporalio/client';
import { z } from 'zod';
import { ConfigError, EmbedflowError } from '../core/errors.ts';

// A CLI following a run outlives a busy or restarting Temporal server: calls that fail for want of an
// answer are retried with backoff, the person is told once per outage, and giving up (only when asked
// to) leaves the run running and says how to get back to it.

/** Following gave up while Temporal did not answer; the run itself goes on. */
export class RunStillOpenError extends EmbedflowError {}
/** The CLI's exit status then: EX_TEMPFAIL (try again later), not the 1 of a failed run. */
export const STILL_OPEN_EXIT = 75;

/** gRPC status codes that mean "no answer now", not "no": UNKNOWN and INTERNAL are left out, they are mostly real errors. */
const NO_ANSWER_CODES = new Set([
  4, // DEADLINE_EXCEEDED: a server too busy to answer in time
  8, // RESOURCE_EXHAUSTED
  10, // ABORTED
  14, // UNAVAILABLE: stopped, restarting, or the connection was reset
]);
const NO_ANSWER_ERRNO = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH']);

/** Whether an error from the Temporal client (or anything it wraps) means the server did not answer. */
export function isNoAnswer(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (isGrpcServiceError(e) && NO_ANSWER_CODES.has(e.code)) return true;
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && NO_ANSWER_ERRNO.has(code)) return true;
    // gRPC's own word for an HTTP/2 stream the server dropped (INTERNAL, but retryable).
    if (/RST_STREAM with code [02]\b|Call ended without gRPC status/i.test(e.message)) return true;
  }
  return false;
}

const DurationText = z
  .string()
  .trim()
  .regex(/^\d+(\.\d+)?(ms|s|m|h)?$/, 'a duration such as 90s, 10m or 2h (plain numbers are seconds)')
  .transform((s) => {
    const [, num, unit] = /^([\d.]+)(ms|s|m|h)?$/.exec(s)!;
    return Number(num) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(unit ?? 's') as 'ms' | 's' | 'm' | 'h'];
  });

/**
 * EMBEDFLOW_FOLLOW_PATIENCE: how long a CLI following a run waits for a Temporal that does not answer
 * before it stops following (the run goes on). Unset: it waits as long as it takes.
 */
export function followPatienceMs(vars: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = vars.EMBEDFLOW_FOLLOW_PATIENCE;
  if (raw === undefined || raw === '') return undefined;
  const parsed = DurationText.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(`environment variable EMBEDFLOW_FOLLOW_PATIENCE: ${parsed.error.issues[0]?.message ?? 'invalid'}`, {
      where: `EMBEDFLOW_FOLLOW_PATIENCE=${raw}`,
      hint: 'e.g. EMBEDFLOW_FOLLOW_PATIENCE=10m, or unset it to wait as long as it takes',
    });
  }
  return parsed.data;
}

export interface PatienceOptions {
  runId: string;
  /** Give up after Temporal has not answered for this long; undefined: never. */
  patienceMs?: number;
  /** Where the once-per-outage lines go (stderr by default). */
  say?: (line: string) => void;
  /** First and longest pause between tries. */
  minDelayMs?: number;
  maxDelayMs?: number;
}

/**
 * The state of one follower's conversation with Temporal: since when it has not answered, and
 * whether the person was told. Shared by every call the follower makes, so one outage is one line.
 */
export class Patience {
  private since: number | undefined;
  private tries = 0;
  private readonly opts: Required<Omit<PatienceOptions, 'patienceMs'>> & Pick<PatienceOptions, 'patienceMs'>;

  constructor(opts: PatienceOptions) {
    this.opts = {
      runId: opts.runId,
      patienceMs: opts.patienceMs,
      say: opts.say ?? ((line) => void process.stderr.write(`${line}\n`)),
      minDelayMs: opts.minDelayMs ?? 500,
      maxDelayMs: opts.maxDelayMs ?? 10_000,
    };
  }

  /** Temporal answered: an outage, if there was one, is over. */
  answered(): void {
    if (this.since !== undefined) this.opts.say(`Temporal answers again; following run ${this.opts.runId}`);
    this.since = undefined;
    this.tries = 0;
  }

  /** Temporal did not answer: say so (once), wait before the next try, or give up when patience has run out. */
  async unanswered(err: unknown): Promise<void> {
    const now = Date.now();
    if (this.since === undefined) {
      this.since = now;
      this.opts.say(`Temporal is not answering, retrying… (${shortReason(err)}); run ${this.opts.runId} goes on`);
    }
    const { patienceMs, runId } = this.opts;
    if (patienceMs !== undefined && now - this.since >= patienceMs) {
      throw new RunStillOpenError(`Temporal has not answered for ${Math.round((now - this.since) / 1000)} s; stopped following run ${runId}, which goes on`, {
        hint: `\`embedflow status ${runId}\` shows where it is; \`embedflow resume ${runId}\` follows it again (and serves it, without TEMPORAL_ADDRESS)`,
        cause: err,
      });
    }
    const delay = Math.min(this.opts.maxDelayMs, this.opts.minDelayMs * 2 ** this.tries++);
    await new Promise((r) => setTimeout(r, delay));
  }

  /** `call`, tried again for as long as Temporal does not answer. */
  async call<T>(call: () => Promise<T>): Promise<T> {
    for (;;) {
      try {
        const out = await call();
        this.answered();
        return out;
      } catch (err) {
        if (!isNoAnswer(err)) throw err;
        await this.unanswered(err);
      }
    }
  }
}

function shortReason(err: unknown): string {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (isGrpcServiceError(e)) return e.details || e.message;
    if (!(e.cause instanceof Error)) return e.message;
  }
  return String(err);
}
