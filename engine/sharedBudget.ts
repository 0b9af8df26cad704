import { mkdirSync, readFileSync, readdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Holder, processAlive, processStartTime, withProcessLock } from './processLock.ts';
import { sleepUnlessCancelled } from './sleep.ts';

// The workers of one home share its machine: a scheduler starting four `embedflow run`s at once
// starts four embedded workers, each sure the whole machine is its own, and four trainings at 7 GB
// each met the OOM killer. Each admitted heavy stage leaves a claim file in the home's budget folder;
// a worker admits a stage only when it fits beside the live claims of every worker, its own
// included, and when no stage that asked before it is still waiting (first come, first served: a
// polling waiter would otherwise lose every race to the worker that just released). Deciding is
// serialised by the home's process lock (processLock.ts), held for milliseconds; a claim or wait
// whose process is gone does not count (a killed worker cannot leak its share or block the queue).

export interface Claim {
  cores: number;
  memoryBytes: number;
  /** Bigger than the budget: admitted only when no other claim is live, and nothing beside it. */
  alone: boolean;
}

interface ClaimFile extends Claim, Holder {
  stage: string;
}

const POLL_MS = 500;

function rmQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone (or another worker cleaned it first).
  }
}

export class SharedBudget {
  private seq = 0;
  private readonly claims: string;
  private readonly waits: string;
  private readonly lock: string;

  constructor(
    readonly dir: string,
    private readonly limits: { cpus: number; memoryBytes: number },
  ) {
    this.claims = join(dir, 'claims');
    this.waits = join(dir, 'waits');
    this.lock = join(dir, 'lock');
  }

  /** Wait until `claim` fits beside every live claim; returns the function that gives it back. */
  async admit(claim: Claim, stage: string, signal: AbortSignal, onWait: (others: string) => void): Promise<() => void> {
    mkdirSync(this.claims, { recursive: true });
    mkdirSync(this.waits, { recursive: true });
    const id = `${process.pid}-${++this.seq}`;
    const file = join(this.claims, `${id}.json`);
    // Named by when it first asked, so the oldest sorts first.
    const wait = join(this.waits, `${String(Date.now()).padStart(15, '0')}-${id}.json`);
    const mine = (): ClaimFile => ({ ...claim, pid: process.pid, started: processStartTime(process.pid), stage });
    let told = false;
    try {
      for (;;) {
        signal.throwIfAborted();
        const others = await withProcessLock(this.lock, { what: 'the shared CPU/memory budget', pollMs: 15 }, async () => {
          const live = this.live(this.claims);
          const earlier = this.live(this.waits, wait).filter((w) => w.file < wait);
          if (earlier.length > 0 || !this.fits(claim, live)) {
            if (!told) writeFileSync(wait, JSON.stringify(mine()));
            return [...live, ...earlier.map((w) => ({ ...w, stage: `${w.stage} (waiting)` }))];
          }
          const tmp = `${file}.tmp`;
          writeFileSync(tmp, JSON.stringify(mine()));
          renameSync(tmp, file);
          return undefined;
        });
        if (!others) break;
        if (!told) {
          told = true;
          const holding = others.filter((c) => !c.stage.endsWith('(waiting)'));
          const queued = others.length - holding.length;
          const cores = holding.reduce((n, c) => n + c.cores, 0);
          const gib = holding.reduce((n, c) => n + c.memoryBytes, 0) / 2 ** 30;
          onWait(
            `${holding.length} stage(s) of workers on this machine hold ${cores} core(s) and ${gib.toFixed(1)} GiB` +
              `${queued ? `, ${queued} asked before this one` : ''} (${others.map((c) => c.stage).join(', ')})`,
          );
        }
        await sleepUnlessCancelled(POLL_MS, signal);
      }
    } finally {
      rmQuietly(wait);
    }
    return () => rmQuietly(file);
  }

  private fits(c: Claim, live: ClaimFile[]): boolean {
    if (live.some((l) => l.alone)) return false;
    if (c.alone) return live.length === 0;
    const cores = live.reduce((n, l) => n + l.cores, 0);
    const memory = live.reduce((n, l) => n + l.memoryBytes, 0);
    return cores + c.cores <= this.limits.cpus && memory + c.memoryBytes <= this.limits.memoryBytes;
  }

  /** The claims (or waits) in `folder` whose process lives, by file path; a dead process's are removed. */
  private live(folder: string, except?: string): Array<ClaimFile & { file: string }> {
    const live: Array<ClaimFile & { file: string }> = [];
    for (const name of readdirSync(folder)) {
      const path = join(folder, name);
      if (!name.endsWith('.json') || path === except) continue;
      let c: ClaimFile;
      try {
        c = JSON.parse(readFileSync(path, 'utf8')) as ClaimFile;
      } catch {
        continue;
      }
      if (processAlive(c)) live.push({ ...c, file: path });
      else rmQuietly(path);
    }
    return live;
  }
}
