import { mkdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openLocalStore } from '../../artifacts/store.ts';
import { cli, testEnv } from '../support/cli.ts';

// `gc` never deletes what a kept run still needs: the memo of a failed run (paid per-item answers no
// manifest names yet), a staging folder a live writer is filling, and not the runs of other stores.

const PIPELINE = 'test/fixtures/pipelines/memoItems.ts';

describe('gc', () => {
  it("keeps a failed run's memo, so a resume after gc --apply pays for nothing again; other stores' runs do not count", async () => {
    const base = await testEnv();
    const env = { ...base, EMBEDFLOW_TEST_LOG: join(base.EMBEDFLOW_STORE, 'paid.log'), EMBEDFLOW_TEST_FAULTS: join(base.EMBEDFLOW_STORE, 'faults') };
    const paid = async () => (await readFile(env.EMBEDFLOW_TEST_LOG, 'utf8').catch(() => '')).split('\n').filter(Boolean);
    const namespaces = async () => (await openLocalStore(env.EMBEDFLOW_STORE).listMemo()).map((m) => m.namespace);

    const older = await cli(['run', PIPELINE, '--json', '--set', 'answers.salt=old'], env);
    expect(older.code, older.stderr).toBe(0);
    await writeFile(env.EMBEDFLOW_TEST_FAULTS, 'answers\n');
    const failed = await cli(['run', PIPELINE, '--json', '--set', 'answers.salt=new'], env);
    expect(failed.json.status, failed.stderr).toBe('failed');
    const lines = (await paid()).length / 2;
    expect(lines).toBeGreaterThan(1);
    expect(await namespaces()).toEqual(['test-answers/new', 'test-answers/old']);

    // The newest run of this pipeline on the server is on another store: it is not this store's last run.
    const other = await testEnv();
    const elsewhere = await cli(['run', PIPELINE, '--json', '--set', 'answers.salt=other'], other);
    expect(elsewhere.code, elsewhere.stderr).toBe(0);

    const gc = await cli(['gc', '--keep', '1', '--apply', '--json'], env);
    expect(gc.code, gc.stderr).toBe(0);
    expect(gc.json.keptRuns).toEqual([failed.json.runId]);
    // The completed older run is let go, memo and all; the failed run's memo stays.
    expect(await namespaces()).toEqual(['test-answers/new']);

    await writeFile(env.EMBEDFLOW_TEST_FAULTS, '');
    const before = (await paid()).length;
    const resumed = await cli(['resume', failed.json.runId, '--json'], env);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(await paid()).toHaveLength(before);
    const answers = resumed.json.stages.find((s: { id: string }) => s.id === 'answers');
    expect(answers.status).toBe('ran');
    expect(answers.stats).toMatchObject({ lines, paid: 0, memoHits: lines });
  });

  it('removes a staging folder nothing has touched for an hour, not one whose writer is still writing', async () => {
    const env = await testEnv();
    const tmp = join(env.EMBEDFLOW_STORE, 'tmp');
    const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    // Both folders were started two hours ago; the live one's writer has just written a new part.
    for (const name of ['w-live', 'w-dead']) {
      await mkdir(join(tmp, name, 'data', 'parts'), { recursive: true });
      await writeFile(join(tmp, name, 'data', 'parts', 'part-0.bin'), 'old part');
      for (const p of ['data/parts/part-0.bin', 'data/parts', 'data', '.']) await utimes(join(tmp, name, p), twoHoursAgo, twoHoursAgo);
    }
    await writeFile(join(tmp, 'w-live', 'data', 'parts', 'part-1.bin'), 'fresh part');
    await utimes(join(tmp, 'w-live', 'data', 'parts'), twoHoursAgo, twoHoursAgo);

    const dry = await cli(['gc', '--json'], env);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.json.staleStaging).toBe(1);
    const applied = await cli(['gc', '--apply', '--json'], env);
    expect(applied.code, applied.stderr).toBe(0);
    expect(await readFile(join(tmp, 'w-live', 'data', 'parts', 'part-1.bin'), 'utf8')).toBe('fresh part');
    await expect(stat(join(tmp, 'w-dead'))).rejects.toThrow(/ENOENT/);
  });
});
