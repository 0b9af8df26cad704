import { hostname, availableParallelism, totalmem } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import type { ResourceNeeds } from '../dsl/stage.ts';
import { ConfigError } from '../core/errors.ts';
import { SharedBudget } from './sharedBudget.ts';

// A worker's CPU and memory budget. Temporal's activity slots count stages, not what they use: four
// trainings admitted at once on a 2-core, 24 GiB machine had the OOM killer shoot two of them. A
// stage that declares its needs (StageKind.resources) starts only when they fit beside the stages
// already running in this process; light stages never wait; a stage bigger than the whole budget
// runs alone instead of never.

export interface WorkerLimits {
  cpus: number;
  memoryBytes: number;
  /** How `status` names this worker. */
  name: string;
}

const Bytes = z
  .string()
  .trim()
  .regex(/^\d+(\.\d+)?\s*([KMGT]i?B?)?$/i, 'a size such as 16GiB, 512MiB or a number of bytes')
  .transform((s) => {
    const [, num, unit] = /^([\d.]+)\s*([KMGT])?/i.exec(s)!;
    return Math.floor(Number(num) * 1024 ** (unit ? 'KMGT'.indexOf(unit.toUpperCase()) + 1 : 0));
  })
  .refine((n) => n > 0, 'more than 0 bytes, e.g. 16GiB');

/** A memory size as EMBEDFLOW_WORKER_MEMORY and `--memory` take it (16GiB, 512MiB, bytes); undefined if it is not one. */
export function parseMemorySize(text: string): number | undefined {
  const r = Bytes.safeParse(text);
  return r.success ? r.data : undefined;
}
const LimitsEnv = z.object({
  EMBEDFLOW_WORKER_CPUS: z.coerce.number().int().min(1).optional().describe('cores this worker may keep busy (default: all of the machine)'),
  EMBEDFLOW_WORKER_MEMORY: Bytes.optional().describe('memory this worker may fill, e.g. 16GiB (default: all of the machine)'),
});

/** This worker's limits: the machine's, or EMBEDFLOW_WORKER_CPUS / EMBEDFLOW_WORKER_MEMORY. */
export function workerLimits(vars: Readonly<Record<string, string | undefined>>): WorkerLimits {
  const parsed = LimitsEnv.safeParse(vars);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(`environment variable ${issue.path.join('.')}: ${issue.message}`, { hint: 'fix or unset it' });
  }
  return {
    cpus: parsed.data.EMBEDFLOW_WORKER_CPUS ?? availableParallelism(),
    memoryBytes: parsed.data.EMBEDFLOW_WORKER_MEMORY ?? totalmem(),
    name: `${hostname()}:${process.pid}`,
  };
}

interface Claim {
  cores: number;
  memoryBytes: number;
  /** Bigger than the whole budget: admitted only into an empty worker, and nothing else beside it. */
  alone: boolean;
}

interface Waiter {
  claim: Claim;
  grant: () => void;
}

export interface AdmitHooks {
  signal: AbortSignal;
  /** The stage asking, as other workers' waiting messages name it. */
  stage: string;
  /** Called once when the stage has to wait. */
  onWait(message: string): void;
  /** Called when a stage bigger than the budget is let in alone. */
  onAlone(message: string): void;
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;

export class ResourceBudget {
  private cores = 0;
  private memory = 0;
  private running = 0;
  private aloneRunning = false;
  private readonly queue: Waiter[] = [];

  /** `shared`: the claims of every worker of this home (sharedBudget.ts), checked after this process's own. */
  constructor(
    readonly limits: WorkerLimits,
    private readonly shared?: SharedBudget,
  ) {}

  /** Wait until `needs` fit; the returned function gives them back. */
  async admit(needs: ResourceNeeds, hooks: AdmitHooks): Promise<() => void> {
    const heavy = needs.cpu === 'heavy';
    const memoryBytes = Math.max(0, needs.memoryBytes ?? 0);
    if (!heavy && memoryBytes === 0) return () => {};
    const cores = heavy ? Math.min(this.limits.cpus, Math.max(1, needs.cores ?? this.limits.cpus)) : 0;
    const claim: Claim = { cores, memoryBytes, alone: memoryBytes > this.limits.memoryBytes };
    if (!this.fits(claim) || this.queue.length > 0) {
      hooks.signal.throwIfAborted();
      const why = [heavy && `${cores} core(s)`, memoryBytes > 0 && `${gib(memoryBytes)}`].filter(Boolean).join(' and ');
      hooks.onWait(`waiting for CPU/memory on worker ${this.limits.name} (needs ${why})`);
      await new Promise<void>((resolve, reject) => {
        const waiter: Waiter = { claim, grant: resolve };
        this.queue.push(waiter);
        this.grantWaiting();
        hooks.signal.addEventListener(
          'abort',
          () => {
            const i = this.queue.indexOf(waiter);
            if (i >= 0) {
              this.queue.splice(i, 1);
              this.grantWaiting();
              reject(hooks.signal.reason);
            }
          },
          { once: true },
        );
      });
    } else {
      this.take(claim);
    }
    let releaseShared: () => void = () => {};
    if (this.shared) {
      try {
        releaseShared = await this.shared.admit(claim, hooks.stage, hooks.signal, (others) =>
          hooks.onWait(`waiting for CPU/memory on this machine: ${others}`),
        );
      } catch (err) {
        this.give(claim);
        throw err;
      }
    }
    if (claim.alone) {
      hooks.onAlone(
        `needs about ${gib(memoryBytes)}, more than the ${gib(this.limits.memoryBytes)} worker ${this.limits.name} may use: running it alone (--memory or EMBEDFLOW_WORKER_MEMORY sets the budget)`,
      );
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      releaseShared();
      this.give(claim);
    };
  }

  private give(claim: Claim): void {
    this.cores -= claim.cores;
    this.memory -= claim.memoryBytes;
    this.running--;
    if (claim.alone) this.aloneRunning = false;
    this.grantWaiting();
  }

  private fits(c: Claim): boolean {
    if (this.aloneRunning) return false;
    if (c.alone) return this.running === 0;
    return this.cores + c.cores <= this.limits.cpus && this.memory + c.memoryBytes <= this.limits.memoryBytes;
  }

  private take(c: Claim): void {
    this.cores += c.cores;
    this.memory += c.memoryBytes;
    this.running++;
    if (c.alone) this.aloneRunning = true;
  }

  /** First come, first served, except that a smaller stage may pass one that does not fit yet; none passes a stage waiting to run alone. */
  private grantWaiting(): void {
    for (let i = 0; i < this.queue.length; ) {
      const w = this.queue[i]!;
      if (this.fits(w.claim)) {
        this.queue.splice(i, 1);
        this.take(w.claim);
        w.grant();
        continue;
      }
      if (w.claim.alone) return;
      i++;
    }
  }
}

let processBudget: ResourceBudget | undefined;

/**
 * The budget of this worker process, shared by every stage it runs, and beside the other workers of
 * its home: their claims live in `<home>/budget` (EMBEDFLOW_BUDGET_DIR names another folder).
 */
export function workerBudget(vars: Readonly<Record<string, string | undefined>>, home: string): ResourceBudget {
  if (!processBudget) {
    const limits = workerLimits(vars);
    processBudget = new ResourceBudget(limits, new SharedBudget(vars.EMBEDFLOW_BUDGET_DIR || join(home, 'budget'), limits));
  }
  return processBudget;
}
