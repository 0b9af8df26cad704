import { hostname } from 'node:os';
import { pathToFileURL } from 'node:url';
import { Context } from '@temporalio/activity';
import { stageCacheKey } from '../artifacts/cacheKey.ts';
import type { ArtifactStore } from '../artifacts/store.ts';
import { codeFingerprint } from '../dsl/fingerprint.ts';
import type { PlannedStage } from '../dsl/plan.ts';
import { type Progress, type StageEnv, type StageKind, getStageKind } from '../dsl/stage.ts';
import { ApplicationFailure, ensureApplicationFailure } from '@temporalio/common';
import { EmbedflowError, UnknownStageKindError, WorkerCodeMismatchError } from '../core/errors.ts';
import { type SnapshotRequest, type SnapshotResult, snapshotInput } from './snapshotInput.ts';
import { runStageKind } from './stageRunner.ts';
import { sleepUnlessCancelled } from './sleep.ts';

// The engine's activities. Workflows import only their types. Every argument and result is a small
// reference (ids, digests, counts): data stays in the store.

export interface EngineDeps {
  store: ArtifactStore;
  env: StageEnv;
}

export interface ResolveStageInput {
  stage: PlannedStage;
  /** Input name → digest. */
  inputs: Record<string, string>;
}

export interface ResolveStageResult {
  key: string;
  /** Set on a cache hit. */
  digest?: string;
  stats?: Record<string, number | string | boolean>;
}

export interface ExecuteStageInput extends ResolveStageInput {
  runId: string;
  key: string;
}

export interface ExecuteStageResult {
  digest: string;
  stats: Record<string, number | string | boolean>;
  seconds: number;
  /**
   * The output is an artifact made before: another run published the same cache key while this one
   * waited in the queue, or a volatile stage handed back an earlier artifact (StageResult.reuse).
   */
  reused: boolean;
}

/** Carried in a failed attempt's ApplicationFailure details, for `status`. */
export interface StageFailureDetails {
  attempt: number;
  progress?: Progress;
}

export function createActivities({ store, env }: EngineDeps) {
  async function cachedOutcome(key: string): Promise<{ digest: string; stats: ResolveStageResult['stats'] } | undefined> {
    const digest = await store.getCache(key);
    if (!digest) return undefined;
    const check = await store.quickVerify(digest);
    if (!check.ok) {
      // A corrupt or half-deleted artifact is rebuilt, never used.
      await store.quarantine(digest);
      await store.dropCache(key);
      return undefined;
    }
    const manifest = await store.readManifest(digest);
    return { digest, stats: (manifest.meta.stats ?? {}) as ResolveStageResult['stats'] };
  }

  return {
    /** Local activity: compute the stage's cache key and look it up. Nothing is dispatched to a stage queue. */
    async resolveStage({ stage, inputs }: ResolveStageInput): Promise<ResolveStageResult> {
      const key = stageCacheKey({ kind: stage.kind, fingerprint: stage.fingerprint, params: stage.params, inputs });
      if (stage.volatile) return { key };
      const hit = await cachedOutcome(key);
      return hit ? { key, ...hit } : { key };
    },

    /** Run a stage on its queue's worker and publish its artifact. */
    async executeStage({ runId, stage, inputs, key }: ExecuteStageInput): Promise<ExecuteStageResult> {
      const ctx = Context.current();
      let last: Progress | undefined = ctx.info.heartbeatDetails as Progress | undefined;
      try {
        const kind = await findKind(stage);
        const fingerprint = await codeFingerprint({ module: kind.module, codeFiles: kind.codeFiles, version: kind.version });
        if (fingerprint !== stage.fingerprint) {
          throw new WorkerCodeMismatchError(`this worker's code for stage kind "${stage.kind}" differs from the code that planned the run`, {
            where: `stage "${stage.id}" on ${ctx.info.taskQueue}`,
            hint: 'deploy the same embedflow version to the workers and the machine that starts runs',
          });
        }
        const resume = last;
        // Heartbeat on a timer as well, so a live worker is never taken for dead between progress reports,
        // a dead one is noticed within the heartbeat timeout, and cancellation is delivered.
        const everyMs = Math.max(1000, Math.min(LEASE_RENEW_MS, (ctx.info.heartbeatTimeoutMs ?? 30_000) / 3));
        // One run id never has two live executions, so an older lease of the same run and stage is a dead attempt.
        const group = `${ctx.info.workflowExecution?.workflowId ?? runId}:${stage.id}`;
        const owner = { id: `${hostname()}:${process.pid}:${group}:${ctx.info.attempt}`, group };
        // Concurrent runs needing this same stage: one computes it, the others wait and reuse it. A
        // volatile stage has no cache entry to reuse: a waiter runs it after the holder, and it finds
        // what the holder recorded (prepareModel's export of the same model was made twice, side by side).
        for (;;) {
          const hit = stage.volatile ? undefined : await cachedOutcome(key);
          if (hit) return { digest: hit.digest, stats: hit.stats ?? {}, seconds: 0, reused: true };
          if (await store.acquireLease(key, owner, LEASE_TTL_MS)) {
            // The previous holder may have published just before releasing: check again under the lease.
            const late = stage.volatile ? undefined : await cachedOutcome(key);
            if (!late) break;
            await store.releaseLease(key, owner.id);
            return { digest: late.digest, stats: late.stats ?? {}, seconds: 0, reused: true };
          }
          ctx.heartbeat({ ...last, done: last?.done ?? 0, message: 'waiting: another run is computing this stage' });
          await sleepUnlessCancelled(1000, ctx.cancellationSignal);
        }
        const timer = setInterval(() => {
          ctx.heartbeat(last);
          void store.renewLease(key, owner.id);
        }, everyMs);
        const crash = killFailpoint(stage.id, env.vars.EMBEDFLOW_FAILPOINT_KILL);
        crash(undefined);
        try {
          const outcome = await runStageKind(
            { runId, stageId: stage.id, kind, params: stage.params, inputs, cacheKey: key, fingerprint },
            {
              store,
              env,
              signal: ctx.cancellationSignal,
              resume,
              heartbeat: (p) => {
                last = p;
                crash(p);
                ctx.heartbeat(p);
              },
              log: ctx.log,
            },
          );
          return { digest: outcome.digest, stats: outcome.stats, seconds: outcome.seconds, reused: outcome.reused };
        } finally {
          clearInterval(timer);
          await store.releaseLease(key, owner.id);
        }
      } catch (err) {
        // A cancelled attempt must reach the SDK as thrown, or it is reported failed instead of cancelled.
        if (ctx.cancellationSignal.aborted) throw err;
        throw asStageFailure(err, { attempt: ctx.info.attempt, ...(last === undefined ? {} : { progress: last }) });
      }
    },

    /** Snapshot a pipeline input into the store (for runs started without the CLI, e.g. schedules). */
    async snapshotInput(req: SnapshotRequest): Promise<SnapshotResult> {
      return snapshotInput(store, req);
    },
  };
}

export type EngineActivities = ReturnType<typeof createActivities>;

/**
 * Test failpoint (test/reliability/recipeCrash.test.ts): EMBEDFLOW_FAILPOINT_KILL=<stageId>[:<done>] makes the
 * worker SIGKILL itself inside that stage, as it starts or at its first progress report with done >= <done>,
 * so a crash can land inside stages too quick to catch from outside. Inert unless the variable is set.
 */
function killFailpoint(stageId: string, spec: string | undefined): (p: Progress | undefined) => void {
  const [id, at] = spec?.split(':') ?? [];
  if (id !== stageId) return () => {};
  return (p) => {
    if (at === undefined || (p !== undefined && p.done >= Number(at))) process.kill(process.pid, 'SIGKILL');
  };
}

/** A lease not renewed for this long belongs to a dead worker. */
const LEASE_TTL_MS = 60_000;
const LEASE_RENEW_MS = 10_000;


/**
 * A failure crossing Temporal keeps only its type, message and details; `status` and the run summary
 * show just those. Fold the error's location and fix into the message so the person paged sees them,
 * and carry the attempt and last progress in the details (the workflow records them on the stage).
 * The type is kept, so the retry policy's non-retryable types still apply.
 */
function asStageFailure(err: unknown, details: StageFailureDetails): ApplicationFailure {
  const f = ensureApplicationFailure(err);
  const message =
    err instanceof EmbedflowError ? [err.message, err.where && `(at ${err.where})`, err.hint && `(fix: ${err.hint})`].filter(Boolean).join(' ') : f.message;
  const out = new ApplicationFailure(message, f.type, f.nonRetryable, [...(f.details ?? []), details], f.cause, f.nextRetryDelay, f.category);
  out.stack = f.stack;
  return out;
}

/** The kind from the registry, or from the module that defined it (a pipeline's own stage kinds). */
async function findKind(stage: PlannedStage): Promise<StageKind> {
  let kind = getStageKind(stage.kind);
  if (!kind) {
    try {
      await import(pathToFileURL(stage.module).href);
    } catch {
      // Reported below with what the worker would need.
    }
    kind = getStageKind(stage.kind);
  }
  if (!kind) {
    throw new UnknownStageKindError(`this worker does not know stage kind "${stage.kind}"`, {
      where: `stage "${stage.id}"`,
      hint: `start the worker where ${stage.module} exists, or with --pipeline pointing at the file that defines it`,
    });
  }
  return kind;
}
