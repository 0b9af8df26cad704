import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunView } from '../../cli/runs.ts';
import { loadConfig } from '../../workers/config.ts';
import { ensureDevServer, readDevServer, stopDevServer } from '../../workers/devServer.ts';
import { cli, collect, spawnCliKilledAfterEach, until } from '../support/cli.ts';

// Many commands on one machine share one embedded Temporal dev server per EMBEDFLOW_HOME: several
// started at once on a fresh home (a cron job at boot) all run against the one server the first started;
// a CLI following a run rides out that server stopping and coming back.

/** Thirteen stages; `slow` runs while the test stops the server. */
const WIDE = 'test/fixtures/pipelines/wide.ts';
const start = spawnCliKilledAfterEach();

const homes: string[] = [];
afterEach(async () => {
  for (const home of homes.splice(0)) await stopDevServer(home);
});

async function freshHome(): Promise<{ home: string; env: Record<string, string> }> {
  const home = await mkdtemp(join(tmpdir(), 'ef-home-'));
  homes.push(home);
  // Ports of its own, away from the test run's dev server: a fresh home must start a server.
  return { home, env: { EMBEDFLOW_HOME: home, EMBEDFLOW_STORE: join(home, 'store'), EMBEDFLOW_DEV_PORT: String(21000 + (process.pid % 1000) * 3) } };
}

/** Pids of the dev servers serving this home's database. */
async function devServersOf(home: string): Promise<number[]> {
  const db = join(home, 'temporal.db');
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const cmd = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmd.split('\0').includes(db)) pids.push(Number(name));
  }
  return pids;
}

describe('embedded dev server', () => {
  it('four commands started at once on a fresh home all connect to one dev server; a dead holder’s lock is taken over', async () => {
    const { home, env } = await freshHome();
    // A lock left by a process that died while starting the server.
    const dead = spawnSync('true');
    expect(dead.pid).toBeGreaterThan(0);
    await writeFile(join(home, 'devserver.lock'), JSON.stringify({ pid: dead.pid }));

    const results = await Promise.all([1, 2, 3, 4].map(() => cli(['runs', '--json'], env, 120_000)));
    for (const r of results) expect(r.code, r.stderr).toBe(0);

    const state = await readDevServer(home);
    expect(state).toBeDefined();
    expect(await devServersOf(home)).toEqual([state!.pid]);
    const log = await readFile(join(home, 'logs', 'devserver.log'), 'utf8');
    expect(log).not.toMatch(/version mismatch/);
    // The lock is released once the server is up.
    expect(await readdir(home)).not.toContain('devserver.lock');
  });

  it('a CLI following a run rides out the dev server stopped for 30 s and restarted, and exits 0; the server log has no size warnings', async () => {
    const { home, env } = await freshHome();
    const log = join(home, 'stages.log');
    const cfg = loadConfig(env);
    await ensureDevServer(cfg);
    const child = start(['run', WIDE, '--json', '--set', 'slow.sleepMs=10000'], { ...env, EMBEDFLOW_TEST_LOG: log });
    const result = collect(child, 240_000);
    await until(async () => (await readFile(log, 'utf8').catch(() => '')).includes('slow start'), 90_000, 'stage slow to start');
    // `status` shows the running stage's progress (its heartbeat) in the plan's stage order.
    const running = await until(async () => {
      const v = (await cli(['status', '--json'], env)).json as RunView | undefined;
      return v?.pending.some((p) => p.stage === 'slow' && (p.progress?.done ?? 0) > 0) ? v : undefined;
    }, 60_000, 'progress of stage slow in status');
    expect(running.stages.map((s) => s.id)).toEqual(['slow', ...Array.from({ length: 12 }, (_, i) => `count${String(i + 1).padStart(2, '0')}`)]);
    expect(running.stages[0]!.status).toBe('running');

    expect(await stopDevServer(home)).toBe(true);
    // Longer than the Temporal client's own retries (about 20 s): the CLI's patience is what carries it.
    await new Promise((r) => setTimeout(r, 30_000));
    expect(child.exitCode).toBeNull();
    await ensureDevServer(cfg);

    const r = await result;
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.status).toBe('completed');
    expect(r.json.stages).toHaveLength(13);
    expect(r.stderr.match(/Temporal is not answering, retrying/g), r.stderr).toHaveLength(1);
    // `status` of the finished run: every stage's state, stats included, as the run's own summary has them.
    const done = (await cli(['status', r.json.runId, '--json'], env)).json as RunView;
    expect(done.status).toBe('completed');
    for (const s of r.json.stages as Array<{ id: string; status: string; artifact: string; stats: unknown }>) {
      expect(done.stages.find((d) => d.id === s.id), s.id).toMatchObject({ status: s.status, artifact: s.artifact, stats: s.stats });
    }
    // One warning per memo update was the rule while the memo held every stage.
    const serverLog = await readFile(join(home, 'logs', 'devserver.log'), 'utf8');
    expect(serverLog.split('\n').filter((l) => /exceeds the warning limit/.test(l))).toEqual([]);
  });
});
