import {
  ActivityFailure,
  ApplicationFailure,
  isCancellation,
  proxyActivities,
  proxyLocalActivities,
  TimeoutFailure,
  upsertMemo,
  workflowInfo,
} from '@temporalio/workflow';
import type { EngineActivities, StageFailureDetails } from '../engine/engine.ts';
import { NON_RETRYABLE } from '../core/errors.ts';
import type { Plan, PlannedStage, RunResult, StageState } from '../dsl/plan.ts';
import type { Progress } from '../dsl/stage.ts';
import { STAGE_MARKS_STARTED, stageMarksMemo } from './runMemo.ts';

// Deterministic orchestration only: no I/O, no clocks but the workflow's, no data — digests and counts.

const { resolveStage } = proxyLocalActivities<EngineActivities>({
  startToCloseTimeout: '2m',
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: [...NON_RETRYABLE] },
});

/** Run a validated pipeline plan: stages start as soon as their inputs exist, independent ones in parallel. */
export async function runPipeline(plan: Plan): Promise<RunResult> {
  const states = new Map<string, StageState>(
    plan.stages.map((s) => [s.id, { id: s.id, kind: s.kind, queue: s.activity.queue, status: 'pending' }]),
  );
  // `status` reads the memo; each update carries the marks of the stages that changed (see runMemo.ts).
  const publish = (...changed: StageState[]) => upsertMemo(changed.length ? stageMarksMemo(changed) : { ...STAGE_MARKS_STARTED });
  const digests = new Map<string, string>();

  for (const input of plan.inputs) {
    if (input.digest) {
      digests.set(input.name, input.digest);
    } else if (input.path) {
      const { snapshotInput } = proxyActivities<EngineActivities>({
        taskQueue: plan.taskQueues.cpu,
        startToCloseTimeout: '1h',
        heartbeatTimeout: '5m',
        retry: { maximumAttempts: 3, nonRetryableErrorTypes: [...NON_RETRYABLE] },
      });
      digests.set(input.name, (await snapshotInput({ name: input.name, type: input.type, path: input.path })).digest);
    }
  }

  const waiting = new Map(plan.stages.map((s) => [s.id, s]));
  const running = new Map<string, Promise<void>>();
  let failure: unknown;

  const runStage = async (stage: PlannedStage): Promise<void> => {
    const state = states.get(stage.id)!;
    const inputs: Record<string, string> = {};
    for (const [name, source] of Object.entries(stage.inputs)) inputs[name] = digests.get(source)!;
    const resolved = await resolveStage({ stage, inputs });
    if (resolved.digest) {
      Object.assign(state, { status: 'cached', artifact: resolved.digest, seconds: 0, stats: resolved.stats ?? {} });
      digests.set(stage.id, resolved.digest);
      publish(state);
      return;
    }
    Object.assign(state, { status: 'running', startedAt: new Date(Date.now()).toISOString() });
    publish(state);
    const { executeStage } = proxyActivities<EngineActivities>({
      taskQueue: stage.activity.queue === 'gpu' ? plan.taskQueues.gpu : plan.taskQueues.cpu,
      activityId: stage.id,
      startToCloseTimeout: stage.activity.startToCloseTimeout,
      heartbeatTimeout: stage.activity.heartbeatTimeout,
      retry: { ...stage.activity.retry, nonRetryableErrorTypes: [...NON_RETRYABLE] },
    });
    try {
      const out = await executeStage({ runId: workflowInfo().workflowId, stage, inputs, key: resolved.key });
      Object.assign(state, { status: out.reused ? 'cached' : 'ran', artifact: out.digest, seconds: out.seconds, stats: out.stats });
      digests.set(stage.id, out.digest);
    } catch (err) {
      const cause = err instanceof ActivityFailure ? err.cause : err;
      if (isCancellation(err)) {
        state.status = 'cancelled';
      } else {
        state.status = 'failed';
        state.error = {
          type: cause instanceof ApplicationFailure ? (cause.type ?? 'Error') : ((cause as Error)?.name ?? 'Error'),
          message: (cause as Error)?.message ?? String(cause),
          ...lastAttempt(err, stage),
          failedAt: new Date(Date.now()).toISOString(),
        };
      }
      throw err;
    } finally {
      publish(state);
    }
  };

  publish();
  try {
    while (waiting.size > 0 || running.size > 0) {
      if (failure === undefined) {
        for (const [id, stage] of waiting) {
          if (Object.values(stage.inputs).every((src) => digests.has(src))) {
            waiting.delete(id);
            running.set(
              id,
              runStage(stage).then(
                () => void running.delete(id),
                (err) => {
                  running.delete(id);
                  failure ??= err;
                },
              ),
            );
          }
        }
      }
      if (running.size === 0) break;
      // Let independent branches already running finish (their work is kept for a resume), start nothing new.
      await Promise.race(running.values());
    }
  } catch (err) {
    failure ??= err;
  }

  if (failure !== undefined) {
    const skipped = [...states.values()].filter((s) => s.status === 'pending');
    for (const s of skipped) s.status = 'skipped';
    // Unconditional: a recorded failed run has this update, and replay must find it (replay.test.ts).
    publish(...skipped);
    if (isCancellation(failure)) throw failure;
    const failed = [...states.values()].find((s) => s.status === 'failed');
    throw ApplicationFailure.create({
      type: failed?.error?.type ?? 'StageFailed',
      message: failed ? `stage "${failed.id}" (${failed.kind}) failed: ${failed.error?.message}` : String(failure),
      nonRetryable: true,
      details: [{ stage: failed?.id, stages: [...states.values()] }],
    });
  }
  return { status: 'completed', stages: [...states.values()] };
}

/**
 * The attempt a stage failed on and its last progress, for on-call: from the details the activity put
 * on its failure, or, when the attempt timed out (its worker was lost), from the heartbeat Temporal kept
 * and the retry state. Both come from history, so replay sees the same.
 */
function lastAttempt(err: unknown, stage: PlannedStage): Partial<StageFailureDetails> {
  if (!(err instanceof ActivityFailure)) return {};
  const { cause } = err;
  if (cause instanceof ApplicationFailure) {
    const d = cause.details?.[cause.details.length - 1] as Partial<StageFailureDetails> | undefined;
    if (typeof d?.attempt === 'number') return { attempt: d.attempt, ...(isProgress(d.progress) ? { progress: d.progress } : {}) };
  }
  return {
    ...(err.retryState === 'MAXIMUM_ATTEMPTS_REACHED' ? { attempt: stage.activity.retry.maximumAttempts } : {}),
    ...(cause instanceof TimeoutFailure && isProgress(cause.lastHeartbeatDetails) ? { progress: cause.lastHeartbeatDetails } : {}),
  };
}

function isProgress(v: unknown): v is Progress {
  return typeof v === 'object' && v !== null && typeof (v as Progress).done === 'number';
}
