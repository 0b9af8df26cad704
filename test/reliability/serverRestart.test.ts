import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../workers/config.ts';
import { ensureDevServer, readDevServer, stopDevServer } from '../../workers/devServer.ts';
import { collect, spawnCli, until } from '../support/cli.ts';

// The Temporal server goes away in the middle of a stage and comes back: the run carries on once the
// client and worker reconnect. This test has its own dev server so the others' is left alone.

let home: string | undefined;
afterEach(async () => {
  if (home) await stopDevServer(home);
});

describe('Temporal server restart', () => {
  it('a run continues after the dev server restarts mid-stage', async () => {
    home = await mkdtemp(join(tmpdir(), 'ef-restart-home-'));
    const port = 20000 + Math.floor(Math.random() * 20000);
    const env = {
      EMBEDFLOW_HOME: home,
      EMBEDFLOW_DEV_PORT: String(port),
      EMBEDFLOW_QUEUE_PREFIX: 'restart',
      EMBEDFLOW_TEST_LOG: join(home, 'stage.log'),
    };
    const log = async () => (await readFile(env.EMBEDFLOW_TEST_LOG, 'utf8').catch(() => '')).split('\n').filter(Boolean);
    const run = spawnCli(['run', 'test/fixtures/pipelines/words.ts', '--json', '--set', 'words.sleepMs=12000'], env);
    const result = collect(run, 240_000);
    await until(async () => (await log()).includes('words start'), 120_000, 'words to start');
    const before = await readDevServer(home);
    expect(before).toBeDefined();
    await stopDevServer(home);
    await new Promise((r) => setTimeout(r, 2000));
    const after = await ensureDevServer(loadConfig(env));
    expect(after.port).toBe(port);
    expect(after.pid).not.toBe(before!.pid);
    const res = await result;
    expect(res.code, res.stderr).toBe(0);
    expect(res.json.status).toBe('completed');
    expect((await log()).filter((l) => l === 'summary end')).toHaveLength(1);
  });
});
