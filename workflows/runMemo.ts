import type { StageState, StageStatus } from '../dsl/plan.ts';

// What a run keeps in its Temporal memo for `status`: one small mark per stage that has left
// `pending`. The server warns when a workflow's memo passes 2 KiB ("Blob data size exceeds the
// warning limit … ModifyWorkflowProperties", one log line per update), which whole stage states
// passed at a dozen stages. What can be found elsewhere is left out: the stage list (kind, queue)
// is in the plan the run started with, a finished stage's stats in its artifact's manifest, and
// live progress in the stage activity's heartbeat details. The run's result (or its failure's
// details) still carries the whole states.

export const STAGE_MARKS_KEY = 'stageMarks';

export interface StageMark {
  s: StageStatus;
  /** Artifact digest. */
  a?: string;
  /** Seconds, rounded to 10 ms. */
  t?: number;
  /** Started at (running and failed stages: how long it has been tried). */
  at?: string;
  e?: StageState['error'];
}

function markOf(s: StageState): StageMark {
  const error = s.error && { ...s.error, ...(s.error.progress ? { progress: { ...s.error.progress, checkpoint: undefined } } : {}) };
  return {
    s: s.status,
    ...(s.artifact ? { a: s.artifact } : {}),
    ...(typeof s.seconds === 'number' ? { t: Math.round(s.seconds * 100) / 100 } : {}),
    ...(s.startedAt && (s.status === 'running' || s.status === 'failed') ? { at: s.startedAt } : {}),
    ...(error ? { e: error } : {}),
  };
}

/** The memo fields for the stages' current states. */
export function stageMarksMemo(states: Iterable<StageState>): Record<string, Record<string, StageMark>> {
  const marks: Record<string, StageMark> = {};
  for (const s of states) if (s.status !== 'pending') marks[s.id] = markOf(s);
  return { [STAGE_MARKS_KEY]: marks };
}

/** The stages' states from their marks and the planned stages (in plan order); stats are not in marks. */
export function statesFromMarks(marks: Record<string, StageMark>, planned: Array<Pick<StageState, 'id' | 'kind' | 'queue'>>): StageState[] {
  return planned.map(({ id, kind, queue }) => {
    const m = marks[id];
    if (!m) return { id, kind, queue, status: 'pending' };
    return {
      id,
      kind,
      queue,
      status: m.s,
      ...(m.a ? { artifact: m.a } : {}),
      ...(m.t !== undefined ? { seconds: m.t } : {}),
      ...(m.at ? { startedAt: m.at } : {}),
      ...(m.e ? { error: m.e } : {}),
    };
  });
}
