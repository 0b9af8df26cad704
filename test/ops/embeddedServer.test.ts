import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readDevServer, stopDevServer } from '../../workers/devServer.ts';
import { cli } from '../support/cli.ts';

// Many commands on one machine share one embedded Temporal dev server per EMBEDFLOW_HOME: several
// started at once on a fresh home (a cron job at boot) all run against the one server the first started.

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
});
