import { describe, expect, it } from 'vitest';
import type { StageState } from '../../dsl/plan.ts';
import { STAGE_MARKS_STARTED, marksInMemo, stageMarksMemo, statesFromMarks } from '../../workflows/runMemo.ts';

// The Temporal server logs "Blob data size exceeds the warning limit" for every memo update over
// 2 KiB (limit.memoSize.warn), which a recipe's run did once per stage near its end.
const MEMO_WARN_BYTES = 2 * 1024;

const digest = (i: number) => i.toString(16).padStart(64, 'a');

function bigRun(): StageState[] {
  return Array.from({ length: 40 }, (_, i): StageState => ({
    id: `a-rather-long-stage-name-${i}`,
    kind: 'builtin.generateQueries',
    queue: 'cpu',
    status: i === 39 ? 'failed' : 'ran',
    artifact: i === 39 ? undefined : digest(i),
    seconds: 1234.5678,
    startedAt: '2026-12-07T04:00:00.000Z',
    stats: { rows: 1000, note: 'x'.repeat(500) },
    error:
      i === 39
        ? { type: 'TrainingDivergedError', message: 'loss went to NaN '.repeat(400), attempt: 3, progress: { done: 5, total: 40, unit: 'steps', message: 'step 5' }, failedAt: '2026-12-07T05:00:00.000Z' }
        : undefined,
  }));
}

describe('run memo', () => {
  it('each update of a 40-stage run stays under the server warning size, and the merged memo gives the states back', () => {
    const states = bigRun();
    const memo: Record<string, unknown> = { pipeline: 'domain-embedding', ...STAGE_MARKS_STARTED };
    for (const s of states) {
      const update = stageMarksMemo([s]);
      for (const [field, value] of Object.entries(update)) expect(JSON.stringify(value).length + field.length, field).toBeLessThan(MEMO_WARN_BYTES);
      Object.assign(memo, update);
    }
    const back = statesFromMarks(marksInMemo(memo)!, states);
    expect(back.slice(0, 39)).toEqual(states.slice(0, 39).map(({ stats: _stats, startedAt: _startedAt, ...s }) => ({ ...s, seconds: 1234.57 })));
    expect(back[39]!.status).toBe('failed');
    expect(back[39]!.error!.message.length).toBeLessThan(1000);
    expect(back[39]!.error!.progress).toMatchObject({ done: 5, total: 40 });
  });

  it('a run with no stage started yet shows every stage pending; a run without marks has none', () => {
    const planned = bigRun().slice(0, 3);
    expect(statesFromMarks(marksInMemo({ ...STAGE_MARKS_STARTED })!, planned).map((s) => s.status)).toEqual(['pending', 'pending', 'pending']);
    expect(marksInMemo({ pipeline: 'p' })).toBeUndefined();
  });

  it('reads runs started before marks had a field each', () => {
    const marks = marksInMemo({ stageMarks: { one: { s: 'ran', a: digest(1), t: 2 } } });
    expect(marks).toEqual({ one: { s: 'ran', a: digest(1), t: 2 } });
  });
});
