import { mkdirSync, openSync, closeSync, readFileSync, readdirSync, statSync, unlinkSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';

// The workers of one home share its machine: a scheduler starting four `embedflow run`s at once
// starts four embedded workers, each sure the whole machine is its own, and four trainings at 7 GB
// each met the OOM killer. Each admitted heavy stage leaves a claim file in the home's budget folder;
// a worker admits a stage only when it fits beside the live claims of every worker, its own
// included. Deciding is serialised by a lock file held for milliseconds; a claim or lock whose
// process is gone does not count (a killed worker cannot leak its share).

export interface Claim {
  cores: number;
  memoryBytes: number;
  /** Bigger than the budget: admitted only when no other claim is live, and nothing beside it. */
  alone: boolean;
}

interface ClaimFile extends Claim {
  pid: number;
  stage: string;
}

const POLL_MS = 500;
const LOCK_RETRY_MS = 15;
/** A lock older than this is a holder's that died between taking and removing it. */
const STALE_LOCK_MS = 10_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), reject(signal.reason)), { once: true });
  });

export class SharedBudget {
  private seq = 0;
  private readonly claims: string;
  private readonly lock: string;

  constructor(
    readonly dir: string,
    private readonly limits: { cpus: number; memoryBytes: number },
  ) {
    this.claims = join(dir, 'claims');
    this.lock = join(dir, 'lock');
  }

  /** Wait until `claim` fits beside every live claim; returns the function that gives it back. */
  async admit(claim: Claim, stage: string, signal: AbortSignal, onWait: (others: string) => void): Promise<() => void> {
    mkdirSync(this.claims, { recursive: true });
    const file = join(this.claims, `${process.pid}-${++this.seq}-${Date.now()}.json`);
    let told = false;
    for (;;) {
      signal.throwIfAborted();
      const others = await this.locked(signal, () => {
        const live = this.liveClaims();
        if (!this.fits(claim, live)) return live;
        const tmp = `${file}.tmp`;
        writeFileSync(tmp, JSON.stringify({ ...claim, pid: process.pid, stage } satisfies ClaimFile));
        renameSync(tmp, file);
        return undefined;
      });
      if (!others) break;
      if (!told) {
        told = true;
        const cores = others.reduce((n, c) => n + c.cores, 0);
        const gib = others.reduce((n, c) => n + c.memoryBytes, 0) / 2 ** 30;
        onWait(`${others.length} stage(s) of workers on this machine hold ${cores} core(s) and ${gib.toFixed(1)} GiB (${others.map((c) => c.stage).join(', ')})`);
      }
      await sleep(POLL_MS, signal);
    }
    return () => {
      try {
        unlinkSync(file);
      } catch {
        // Already gone: nothing to give back.
      }
    };
  }

  private fits(c: Claim, live: ClaimFile[]): boolean {
    if (live.some((l) => l.alone)) return false;
    if (c.alone) return live.length === 0;
    const cores = live.reduce((n, l) => n + l.cores, 0);
    const memory = live.reduce((n, l) => n + l.memoryBytes, 0);
    return cores + c.cores <= this.limits.cpus && memory + c.memoryBytes <= this.limits.memoryBytes;
  }

  private liveClaims(): ClaimFile[] {
    const live: ClaimFile[] = [];
    for (const name of readdirSync(this.claims)) {
      if (!name.endsWith('.json')) continue;
      const path = join(this.claims, name);
      let c: ClaimFile;
      try {
        c = JSON.parse(readFileSync(path, 'utf8')) as ClaimFile;
      } catch {
        continue;
      }
      if (alive(c.pid)) live.push(c);
      else {
        try {
          unlinkSync(path);
        } catch {
          // Another worker cleaned it first.
        }
      }
    }
    return live;
  }

  private async locked<T>(signal: AbortSignal, fn: () => T): Promise<T> {
    for (;;) {
      let fd: number | undefined;
      try {
        fd = openSync(this.lock, 'wx');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      if (fd !== undefined) {
        try {
          writeFileSync(fd, String(process.pid));
          return fn();
        } finally {
          closeSync(fd);
          unlinkSync(this.lock);
        }
      }
      this.breakStaleLock();
      await sleep(LOCK_RETRY_MS, signal);
    }
  }

  private breakStaleLock(): void {
    try {
      const holder = Number(readFileSync(this.lock, 'utf8'));
      const age = Date.now() - statSync(this.lock).mtimeMs;
      if ((holder > 0 && !alive(holder)) || age > STALE_LOCK_MS) unlinkSync(this.lock);
    } catch {
      // Released meanwhile.
    }
  }
}
