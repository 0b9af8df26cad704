import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, testEnv } from '../support/cli.ts';

// Four runs of one pipeline on one store at once: the stage they share is computed once, the others
// wait for it and reuse it, and the store is consistent afterwards.

describe('concurrent runs on one store', () => {
  it('share work: one computes a shared stage, the others reuse it', async () => {
    const base = await testEnv();
    const env = { ...base, EMBEDFLOW_TEST_LOG: join(base.EMBEDFLOW_STORE, 'stage.log') };
    // Different summary params → four different runs; words and chars are the same stage in all four.
    const runs = await Promise.all(
      ['a', 'b', 'c', 'd'].map((salt) =>
        cli(['run', 'test/fixtures/pipelines/words.ts', '--json', '--set', 'words.sleepMs=3000', '--set', `summary.salt=${salt}`], env),
      ),
    );
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    expect(new Set(runs.map((r) => r.json.runId)).size).toBe(4);
    const log = (await readFile(env.EMBEDFLOW_TEST_LOG, 'utf8')).split('\n');
    expect(log.filter((l) => l === 'words end')).toHaveLength(1);
    expect(log.filter((l) => l === 'chars end')).toHaveLength(1);
    const wordsStatuses = runs.map((r) => r.json.stages.find((s: { id: string }) => s.id === 'words').status).sort();
    expect(wordsStatuses.filter((s: string) => s === 'ran')).toHaveLength(1);
    const verify = await cli(['store', 'verify', '--json'], env);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.json).toMatchObject({ corrupt: [], danglingCache: [] });
  });
});
