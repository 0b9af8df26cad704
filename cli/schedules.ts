import { ScheduleOverlapPolicy, type ScheduleDescription, type ScheduleSpec } from '@temporalio/client';
import { EmbedflowError, PipelineValidationError } from '../core/errors.ts';
import type { Plan } from '../dsl/plan.ts';
import { taskQueues } from '../workers/config.ts';
import type { Runtime } from '../workers/runtime.ts';
import { WORKFLOW_TYPE } from './runs.ts';

// Scheduled reruns on Temporal's Schedules API. A scheduled run keeps its inputs as *paths*: the
// workflow snapshots them at each run, so an unchanged corpus is all cache hits and a grown one pays
// only for what is new.

export const OVERLAP = {
  skip: ScheduleOverlapPolicy.SKIP,
  'buffer-one': ScheduleOverlapPolicy.BUFFER_ONE,
  'allow-all': ScheduleOverlapPolicy.ALLOW_ALL,
  'cancel-other': ScheduleOverlapPolicy.CANCEL_OTHER,
} as const;
export type OverlapName = keyof typeof OVERLAP;

export interface CreateScheduleOptions {
  name: string;
  plan: Plan;
  cron?: string;
  every?: string;
  overlap: OverlapName;
  catchupWindow: string;
  paused?: boolean;
}

export async function createSchedule(rt: Runtime, o: CreateScheduleOptions): Promise<void> {
  if (!!o.cron === !!o.every) throw new PipelineValidationError('a schedule needs exactly one of --cron EXPR or --every DURATION');
  if (o.plan.inputs.some((i) => !i.path)) throw new PipelineValidationError('scheduled inputs must be paths');
  const spec: ScheduleSpec = o.cron ? { cronExpressions: [o.cron] } : { intervals: [{ every: o.every! }] };
  await rt.client.schedule.create({
    scheduleId: o.name,
    spec,
    action: {
      type: 'startWorkflow',
      workflowType: WORKFLOW_TYPE,
      workflowId: o.name,
      taskQueue: taskQueues(rt.cfg).workflow,
      args: [o.plan],
      memo: { pipeline: o.plan.pipeline, file: o.plan.file, schedule: o.name, store: rt.store.location },
    },
    policies: { overlap: OVERLAP[o.overlap], catchupWindow: o.catchupWindow },
    state: { paused: o.paused ?? false, note: `embedflow: ${o.plan.pipeline}` },
  });
}

export interface ScheduleView {
  name: string;
  pipeline?: string;
  paused: boolean;
  spec: string;
  overlap: string;
  recentRuns: Array<{ runId: string; startedAt: string }>;
  nextRuns: string[];
  runningRuns: string[];
}

function view(name: string, d: ScheduleDescription): ScheduleView {
  const spec = [
    ...(d.spec.calendars ?? []).map((c) => `calendar ${JSON.stringify(c)}`),
    ...(d.spec.intervals ?? []).map((i) => `every ${i.every}`),
    ...((d.spec as { cronExpressions?: string[] }).cronExpressions ?? []).map((c) => `cron ${c}`),
  ].join(', ');
  const memo = (d.action.type === 'startWorkflow' ? d.action.memo : undefined) as { pipeline?: string } | undefined;
  return {
    name,
    pipeline: memo?.pipeline,
    paused: d.state.paused,
    spec,
    overlap: String(d.policies.overlap),
    recentRuns: d.info.recentActions.map((a) => ({ runId: a.action.workflow.workflowId, startedAt: a.takenAt.toISOString() })),
    nextRuns: d.info.nextActionTimes.slice(0, 3).map((t) => t.toISOString()),
    runningRuns: d.info.runningActions.map((a) => a.workflow.workflowId),
  };
}

export async function describeSchedule(rt: Runtime, name: string): Promise<ScheduleView> {
  try {
    return view(name, await rt.client.schedule.getHandle(name).describe());
  } catch (err) {
    if ((err as Error).name === 'ScheduleNotFoundError') throw new EmbedflowError(`no schedule "${name}"`, { hint: '`embedflow schedule list`' });
    throw err;
  }
}

export async function listSchedules(rt: Runtime): Promise<ScheduleView[]> {
  const out: ScheduleView[] = [];
  for await (const s of rt.client.schedule.list()) out.push(await describeSchedule(rt, s.scheduleId));
  return out;
}

export async function scheduleAction(rt: Runtime, name: string, action: 'pause' | 'unpause' | 'trigger' | 'delete'): Promise<void> {
  await describeSchedule(rt, name);
  const h = rt.client.schedule.getHandle(name);
  if (action === 'pause') await h.pause('paused with embedflow');
  else if (action === 'unpause') await h.unpause('unpaused with embedflow');
  else if (action === 'trigger') await h.trigger();
  else await h.delete();
}
