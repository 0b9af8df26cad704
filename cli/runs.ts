import { defaultPayloadConverter, WorkflowExecutionAlreadyStartedError, WorkflowFailedError } from '@temporalio/client';
import type { WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, CancelledFailure, TerminatedFailure } from '@temporalio/common';
import { snapshotInput } from '../engine/snapshotInput.ts';
import { hashJson } from '../artifacts/hash.ts';
import { RunNotFoundError } from '../core/errors.ts';
import { Plan, type RunResult, type StageState } from '../dsl/plan.ts';
import type { ArtifactStore } from '../artifacts/store.ts';
import type { Runtime } from '../workers/runtime.ts';
import { marksInMemo, statesFromMarks } from '../workflows/runMemo.ts';
import { taskQueues } from '../workers/config.ts';
import { Patience, RunStillOpenError, followPatienceMs, isNoAnswer } from './patience.ts';

// Starting, following and describing runs. A run id is the Temporal workflow id: derived from the
// pipeline and the content of its inputs, so starting the same run twice attaches to the first.

export const WORKFLOW_TYPE = 'runPipeline';

/** Snapshot every path input into the store, so the plan (and the run id) names content, not paths. */
export async function snapshotPlanInputs(rt: Runtime, plan: Plan): Promise<Plan> {
  const inputs = [];
  for (const input of plan.inputs) {
    if (input.digest || !input.path) {
      inputs.push(input);
      continue;
    }
    const snap = await snapshotInput(rt.store, { name: input.name, type: input.type, path: input.path });
    inputs.push({ name: input.name, type: input.type, digest: snap.digest });
  }
  return { ...plan, inputs };
}

export function runIdFor(plan: Plan): string {
  return `${plan.pipeline}-${hashJson(plan).slice(0, 12)}`;
}

export async function startRun(rt: Runtime, plan: Plan, runId = runIdFor(plan)): Promise<WorkflowHandle> {
  const queues = taskQueues(rt.cfg);
  try {
    return await rt.client.workflow.start(WORKFLOW_TYPE, {
      taskQueue: queues.workflow,
      workflowId: runId,
      args: [plan],
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      memo: { pipeline: plan.pipeline, file: plan.file, store: rt.store.location },
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return rt.client.workflow.getHandle(runId);
    throw err;
  }
}

export type RunStatus = 'running' | 'completed' | 'failed' | 'cancelled' | 'terminated' | 'timed_out' | 'continued' | 'unknown';

export interface PendingStage {
  stage: string;
  attempt: number;
  progress?: { done?: number; total?: number; unit?: string; message?: string; [k: string]: unknown };
  lastHeartbeat?: string;
  lastFailure?: string;
  /** The failure's error class (e.g. LlmUnavailableError): what the runbook is indexed by. */
  lastFailureType?: string;
  scheduledAt?: string;
  state: string;
}

export interface RunView {
  runId: string;
  temporalRunId: string;
  pipeline?: string;
  status: RunStatus;
  startTime?: string;
  closeTime?: string;
  stages: StageState[];
  pending: PendingStage[];
}

const STATUS: Record<string, RunStatus> = {
  RUNNING: 'running',
  COMPLETED: 'completed',
  FAILED: 'failed',
  CANCELLED: 'cancelled',
  TERMINATED: 'terminated',
  TIMED_OUT: 'timed_out',
  CONTINUED_AS_NEW: 'continued',
};

export async function describeRun(rt: Runtime, runId: string): Promise<RunView> {
  const handle = rt.client.workflow.getHandle(runId);
  let d;
  try {
    d = await handle.describe();
  } catch (err) {
    if ((err as Error).name === 'WorkflowNotFoundError') {
      throw new RunNotFoundError(`no run "${runId}"`, { hint: '`embedflow runs` lists the runs' });
    }
    throw err;
  }
  const memo = (d.memo ?? {}) as { pipeline?: string; stages?: StageState[] };
  const pending: PendingStage[] = (d.raw.pendingActivities ?? []).map((a) => ({
    stage: a.activityId ?? '?',
    attempt: a.attempt ?? 1,
    state: PENDING_STATE[Number(a.state ?? 0)] ?? 'UNKNOWN',
    progress: decodeFirst(a.heartbeatDetails?.payloads) as PendingStage['progress'],
    lastHeartbeat: tsToIso(a.lastHeartbeatTime),
    scheduledAt: tsToIso(a.scheduledTime),
    lastFailure: a.lastFailure?.message ?? undefined,
    lastFailureType: a.lastFailure?.applicationFailureInfo?.type ?? undefined,
  }));
  return {
    runId,
    temporalRunId: d.runId,
    pipeline: memo.pipeline,
    status: STATUS[d.status.name] ?? 'unknown',
    startTime: d.startTime?.toISOString(),
    closeTime: d.closeTime?.toISOString(),
    stages: await stagesOf(rt, runId, d.runId, memo),
    pending,
  };
}

/**
 * The stages' states of one execution: from its memo's marks, the stage list of its plan and, for
 * finished stages, the stats in their artifacts' manifests. Runs started before the marks kept
 * whole states in the memo (`stages`).
 */
async function stagesOf(rt: Runtime, runId: string, temporalRunId: string, memo: { stages?: StageState[] }): Promise<StageState[]> {
  const marks = marksInMemo(memo);
  if (!marks) return memo.stages ?? [];
  const plan = await planOfExecution(rt, runId, temporalRunId);
  const states = statesFromMarks(marks, plan.stages.map((s) => ({ id: s.id, kind: s.kind, queue: s.activity.queue })));
  for (const s of states) if (s.artifact && (s.status === 'ran' || s.status === 'cached')) s.stats = await statsOf(rt.store, s.artifact);
  return states;
}

// Both never change for a given key: read once per process (a follower describes its run every 400 ms).
const plans = new Map<string, Promise<Plan>>();
const stats = new Map<string, Promise<NonNullable<StageState['stats']>>>();

function statsOf(store: ArtifactStore, digest: string): Promise<NonNullable<StageState['stats']>> {
  let got = stats.get(digest);
  if (!got) {
    got = store.readManifest(digest).then(
      (m) => (m.meta.stats ?? {}) as NonNullable<StageState['stats']>,
      () => {
        // An artifact gone from this store (or a store not reachable now) only leaves its stats out; try again next time.
        stats.delete(digest);
        return {};
      },
    );
    stats.set(digest, got);
  }
  return got;
}

/** The plan an execution started with: its first history event, read alone. */
function planOfExecution(rt: Runtime, runId: string, temporalRunId?: string): Promise<Plan> {
  const cacheKey = temporalRunId && `${runId}/${temporalRunId}`;
  const cached = cacheKey ? plans.get(cacheKey) : undefined;
  if (cached) return cached;
  const read = (async () => {
    const page = await rt.client.workflowService.getWorkflowExecutionHistory({
      namespace: rt.namespace,
      execution: { workflowId: runId, runId: temporalRunId },
      maximumPageSize: 1,
    });
    const payload = page.history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    if (!payload) throw new RunNotFoundError(`run "${runId}" has no recorded plan`);
    return Plan.parse(defaultPayloadConverter.fromPayload(payload));
  })();
  if (cacheKey) {
    plans.set(cacheKey, read);
    read.catch(() => plans.delete(cacheKey));
  }
  return read;
}

type Payload = Parameters<typeof defaultPayloadConverter.fromPayload>[0];

/** temporal.api.enums.v1.PendingActivityState, by number. */
const PENDING_STATE = ['UNSPECIFIED', 'SCHEDULED', 'STARTED', 'CANCEL_REQUESTED', 'PAUSED', 'PAUSE_REQUESTED'];

function decodeFirst(payloads: Payload[] | null | undefined): unknown {
  const p = payloads?.[0];
  if (!p) return undefined;
  try {
    return defaultPayloadConverter.fromPayload(p);
  } catch {
    return undefined;
  }
}

function tsToIso(ts: { seconds?: unknown; nanos?: number | null } | null | undefined): string | undefined {
  if (!ts || ts.seconds === undefined || ts.seconds === null) return undefined;
  return new Date(Number(ts.seconds) * 1000 + Math.floor((ts.nanos ?? 0) / 1e6)).toISOString();
}

/** The plan a run was started with, read back from its history (for `resume`). */
export function planOfRun(rt: Runtime, runId: string): Promise<Plan> {
  return planOfExecution(rt, runId);
}

export interface RunOutcome {
  status: 'completed' | 'failed' | 'cancelled';
  stages: StageState[];
  error?: { type: string; message: string; stage?: string };
}

export interface FollowOptions {
  /** How often progress is read. */
  everyMs?: number;
  /** Stop following after Temporal has not answered for this long (default: EMBEDFLOW_FOLLOW_PATIENCE, else never). */
  patienceMs?: number;
  /** Where "Temporal is not answering" goes (stderr by default). */
  say?: (line: string) => void;
}

/**
 * Wait for a run to close, calling `onUpdate` with fresh views while it runs. A busy or restarting
 * Temporal only delays it: calls are retried until the server answers (or patience runs out, which
 * throws RunStillOpenError). A run that is still running never comes back as failed.
 */
export async function followRun(rt: Runtime, runId: string, onUpdate: (v: RunView) => void, opts: FollowOptions = {}): Promise<RunOutcome> {
  const handle = rt.client.workflow.getHandle(runId);
  const patience = new Patience({ runId, patienceMs: opts.patienceMs ?? followPatienceMs(), say: opts.say });
  const describe = () => patience.call(() => describeRun(rt, runId));
  let stop = false;
  const poll = (async () => {
    while (!stop) {
      try {
        onUpdate(await describeRun(rt, runId));
        patience.answered();
      } catch {
        // Progress just waits for the next answer; the result's wait below tells the person about an outage.
      }
      await new Promise((r) => setTimeout(r, opts.everyMs ?? 400));
    }
  })();
  try {
    for (;;) {
      try {
        // The result holds the whole stage states (the memo only marks them).
        const result = (await handle.result()) as RunResult;
        return { status: 'completed', stages: result.stages };
      } catch (err) {
        if (err instanceof WorkflowFailedError) return failedOutcome(err, stagesOfFailure(err) ?? (await describe()).stages);
        if (isNoAnswer(err)) {
          await patience.unanswered(err);
          continue;
        }
        // Anything else is not the run's outcome while it still runs: say it goes on, not that it failed.
        const view = await describe().catch(() => undefined);
        if (view?.status === 'running') {
          throw new RunStillOpenError(`stopped following run ${runId}, which goes on: ${(err as Error).message}`, {
            hint: `\`embedflow status ${runId}\` shows where it is; \`embedflow resume ${runId}\` follows it again`,
            cause: err,
          });
        }
        throw err;
      }
    }
  } finally {
    stop = true;
    await poll;
  }
}

/** The whole stage states a failed run put in its failure's details (workflows/pipeline.ts). */
function stagesOfFailure(err: WorkflowFailedError): StageState[] | undefined {
  const details = err.cause instanceof ApplicationFailure ? (err.cause.details?.[0] as { stages?: StageState[] } | undefined) : undefined;
  return Array.isArray(details?.stages) ? details.stages : undefined;
}

function failedOutcome(err: WorkflowFailedError, stages: StageState[]): RunOutcome {
  const cause = err.cause;
  if (cause instanceof CancelledFailure || cause instanceof TerminatedFailure) return { status: 'cancelled', stages };
  const failed = stages.find((s) => s.status === 'failed');
  return {
    status: 'failed',
    stages,
    error: {
      type: cause instanceof ApplicationFailure ? (cause.type ?? 'Error') : (cause?.name ?? 'Error'),
      message: failed?.error?.message ?? cause?.message ?? err.message,
      stage: failed?.id,
    },
  };
}

export interface RunListEntry {
  runId: string;
  status: RunStatus;
  startTime?: string;
  pipeline?: string;
  /** The store the run was started on (its location as the starting machine saw it); unset on older runs. */
  store?: string;
}

export async function listRuns(rt: Runtime, limit = 50): Promise<RunListEntry[]> {
  const out: RunListEntry[] = [];
  for await (const w of rt.client.workflow.list({ query: `WorkflowType = '${WORKFLOW_TYPE}'` })) {
    out.push({
      runId: w.workflowId,
      status: STATUS[w.status.name] ?? 'unknown',
      startTime: w.startTime?.toISOString(),
      pipeline: (w.memo as { pipeline?: string } | undefined)?.pipeline,
      store: (w.memo as { store?: string } | undefined)?.store,
    });
    if (out.length >= limit) break;
  }
  return out;
}
