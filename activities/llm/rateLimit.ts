/**
 * Client-side rate control for hosted or shared servers: requests per minute and tokens per minute
 * as token buckets (refilled continuously, bursting up to one minute's allowance), and abortable
 * sleeps for backoff.
 */

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export class TokenBucket {
  private level: number;
  private last = performance.now();
  private readonly perMs: number;
  private readonly capacity: number;
  private queue: Promise<void> = Promise.resolve();

  constructor(perMinute: number) {
    this.capacity = perMinute;
    this.level = perMinute;
    this.perMs = perMinute / 60_000;
  }

  private refill(): void {
    const now = performance.now();
    this.level = Math.min(this.capacity, this.level + (now - this.last) * this.perMs);
    this.last = now;
  }

  /** Wait until `n` units are available (requests beyond one minute's allowance wait for a full bucket), then take them. */
  take(n: number, signal?: AbortSignal): Promise<void> {
    const run = async () => {
      const need = Math.min(n, this.capacity);
      for (;;) {
        this.refill();
        if (this.level >= need) break;
        await sleep(Math.ceil((need - this.level) / this.perMs), signal);
      }
      this.level -= n;
    };
    // FIFO: later callers queue behind earlier ones instead of starving them.
    const p = this.queue.then(run);
    this.queue = p.catch(() => {});
    return p;
  }

  /** Correct an earlier estimate once the real amount is known (negative gives units back). */
  adjust(delta: number): void {
    this.refill();
    this.level = Math.min(this.capacity, this.level - delta);
  }
}

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
}

/** "Full jitter" exponential backoff, never shorter than what the server asked for in Retry-After. */
export function backoffDelay(attempt: number, opts: BackoffOptions, retryAfterMs: number | undefined, random = Math.random): number {
  const ceiling = Math.min(opts.maxMs, opts.initialMs * 2 ** attempt);
  const jittered = random() * ceiling;
  return retryAfterMs === undefined ? jittered : Math.max(retryAfterMs, jittered);
}

/**
 * How long the server asked us to wait, in ms: `retry-after-ms` (OpenAI's and vLLM's finer header,
 * which the official clients prefer) else Retry-After as seconds or an HTTP date; undefined when
 * absent or unreadable. Capped at 10 minutes.
 */
export function parseRetryAfter(value: string | null, now = Date.now(), valueMs: string | null = null): number | undefined {
  const cap = 600_000;
  const ms = valueMs === null ? NaN : Number(valueMs.trim());
  if (Number.isFinite(ms) && ms >= 0) return Math.min(cap, ms);
  if (!value) return undefined;
  const secs = Number(value.trim());
  if (Number.isFinite(secs) && secs >= 0) return Math.min(cap, secs * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.min(cap, Math.max(0, at - now));
}
