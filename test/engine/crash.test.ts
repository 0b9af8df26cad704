import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { collect, remote, spawnCliKilledAfterEach, testEnv, until } from '../support/cli.ts';

// A worker process killed with SIGKILL in the middle of a stage: after a new worker starts, the run
// completes and no finished stage ran twice.

const PIPELINE = 'test/fixtures/pipelines/words.ts';
const start = spawnCliKilledAfterEach();

function worker(env: Record<string, string>): ChildProcess {
  return start(['worker', '--queue', 'workflow', '--queue', 'cpu', '--queue', 'gpu', '--pipeline', PIPELINE], env);
}

describe('worker crash', () => {
  it('a SIGKILLed worker mid-stage: the run completes on a new worker, finished stages are not redone', async () => {
    const base = await testEnv();
    const env = remote({ ...base, EMBEDFLOW_TEST_LOG: join(base.EMBEDFLOW_STORE, 'stage.log') });
    const log = async () => (await readFile(env.EMBEDFLOW_TEST_LOG!, 'utf8').catch(() => '')).split('\n').filter(Boolean);

    const first = worker(env);
    const run = start(['run', PIPELINE, '--json', '--set', 'words.sleepMs=8000'], env);
    const result = collect(run);
    // "Finished" = published and cached, not merely done computing.
    const cached = async () => (await readdir(join(env.EMBEDFLOW_STORE, 'cache')).catch(() => [])).length;
    await until(async () => (await log()).includes('words start') && (await cached()) === 1, 90_000, 'chars to finish while words runs');
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));

    worker(env);
    const res = await result;
    expect(res.code, res.stderr).toBe(0);
    expect(res.json.status).toBe('completed');
    const lines = await log();
    const count = (l: string) => lines.filter((x) => x === l).length;
    expect(count('chars start')).toBe(1);
    expect(count('chars end')).toBe(1);
    expect(count('words start')).toBe(2);
    expect(count('words end')).toBe(1);
    expect(count('summary end')).toBe(1);
  });
});
