import type { StageState, StageStatus } from '../dsl/plan.ts';

// What a run keeps in its Temporal memo for `status`: one small mark per stage that has left
// `pending`, each under its own memo field. The server checks each memo update against 2 KiB and
// logs "Blob data size exceeds the warning limit … ModifyWorkflowProperties" for every bigger one;
// upserts merge by field, so an update that carries only the stage that changed stays small however
// many stages a run has (one field holding every mark passed 2 KiB near the end of the recipe). What
// can be found elsewhere is left out: the stage list (kind, queue) is in the plan the run started
// with, a finished stage's stats in its artifact's manifest, and live progress in the stage
// activity's heartbeat details. The run's result (or its failure's details) carries the whole states.

/** The memo field of one stage's mark: `stage:<id>`. */
export const STAGE_MARK_PREFIX = 'stage:';
/** Set by a run's first update: its stages have marks (none yet: all pending). */
export const STAGE_MARKS_STARTED = { stageMarkFields: 1 } as const;
/** Runs started before marks had a field each kept them all under this one. */
const LEGACY_MARKS_KEY = 'stageMarks';
/** Keeps a failed stage's mark (message and progress) well inside the server's 2 KiB per update. */
const MAX_ERROR_MESSAGE = 800;

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
  const message = s.error && s.error.message.length > MAX_ERROR_MESSAGE ? `${s.error.message.slice(0, MAX_ERROR_MESSAGE)}…` : s.error?.message;
  const error = s.error && { ...s.error, message: message!, ...(s.error.progress ? { progress: { ...s.error.progress, checkpoint: undefined } } : {}) };
  return {
    s: s.status,
    ...(s.artifact ? { a: s.artifact } : {}),
    ...(typeof s.seconds === 'number' ? { t: Math.round(s.seconds * 100) / 100 } : {}),
    ...(s.startedAt && (s.status === 'running' || s.status === 'failed') ? { at: s.startedAt } : {}),
    ...(error ? { e: error } : {}),
  };
}

/** The memo fields to upsert for the stages that changed (pending stages have none). */
export function stageMarksMemo(changed: Iterable<StageState>): Record<string, StageMark> {
  const fields: Record<string, StageMark> = {};
  for (const s of changed) if (s.status !== 'pending') fields[`${STAGE_MARK_PREFIX}${s.id}`] = markOf(s);
  return fields;
}

/** The marks in a run's memo, by stage id, whichever way the run wrote them. */
export function marksInMemo(memo: Record<string, unknown>): Record<string, StageMark> | undefined {
  const legacy = memo[LEGACY_MARKS_KEY] as Record<string, StageMark> | undefined;
  const fields = Object.entries(memo).filter(([k]) => k.startsWith(STAGE_MARK_PREFIX));
  if (!legacy && fields.length === 0 && !('stageMarkFields' in memo)) return undefined;
  return { ...legacy, ...Object.fromEntries(fields.map(([k, v]) => [k.slice(STAGE_MARK_PREFIX.length), v as StageMark])) };
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
