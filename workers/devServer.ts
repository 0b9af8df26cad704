import { spawn } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { join } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../core/errors.ts';
import { writeFileAtomic } from '../artifacts/fsutil.ts';
import type { Config } from './config.ts';
import { processAlive, withProcessLock } from '../engine/processLock.ts';

// The embedded Temporal: the `temporal` CLI's dev server, persisting to SQLite in EMBEDFLOW_HOME,
// started on first use and reused by every later command until `embedflow dev stop`.

const DevServerState = z.object({ pid: z.number(), port: z.number(), uiPort: z.number(), db: z.string() });
export type DevServerState = z.infer<typeof DevServerState>;

const stateFile = (home: string) => join(home, 'devserver.json');

export async function readDevServer(home: string): Promise<DevServerState | undefined> {
  try {
    return DevServerState.parse(JSON.parse(await readFile(stateFile(home), 'utf8')));
  } catch {
    return undefined;
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

async function freePort(preferred?: number): Promise<number> {
  const tryPort = (port: number) =>
    new Promise<number | undefined>((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(undefined));
      srv.listen(port, '127.0.0.1', () => {
        const addr = srv.address();
        srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : undefined));
      });
    });
  if (preferred !== undefined) {
    const p = await tryPort(preferred);
    if (p !== undefined) return p;
  }
  const p = await tryPort(0);
  if (p === undefined) throw new ConfigError('no free TCP port for the Temporal dev server');
  return p;
}

export type RunningDevServer = DevServerState & { address: string; uiUrl: string };

const running = (s: DevServerState): RunningDevServer => ({ ...s, address: `127.0.0.1:${s.port}`, uiUrl: `http://127.0.0.1:${s.uiPort}` });

/**
 * Whether the recorded server still runs: its pid alive and, where /proc says, still the `temporal`
 * process serving this home's database (a pid reused after a reboot is not).
 */
function serverAlive(state: DevServerState): boolean {
  if (!processAlive({ pid: state.pid })) return false;
  try {
    return readFileSync(`/proc/${state.pid}/cmdline`, 'utf8').split('\0').includes(state.db);
  } catch {
    return true;
  }
}

/** How long a live but silent dev server (busy, or still opening its database) is waited for. */
const ANSWER_WAIT_MS = 60_000;

/**
 * The running dev server of this EMBEDFLOW_HOME, started if needed. Processes started together on one
 * home take turns through a lock in it: the first starts the server, the others find it running and
 * connect. Two servers on one SQLite file would fail each other.
 */
export async function ensureDevServer(cfg: Config): Promise<RunningDevServer> {
  const existing = await readDevServer(cfg.home);
  if (existing && serverAlive(existing) && (await portOpen(existing.port))) return running(existing);
  await mkdir(join(cfg.home, 'logs'), { recursive: true });
  return withProcessLock(join(cfg.home, 'devserver.lock'), { what: 'starting the Temporal dev server' }, async () => {
    const current = await readDevServer(cfg.home);
    if (current && serverAlive(current)) {
      const deadline = Date.now() + ANSWER_WAIT_MS;
      while (!(await portOpen(current.port))) {
        if (!serverAlive(current)) return startDevServer(cfg, current);
        if (Date.now() > deadline) {
          throw new ConfigError(`the Temporal dev server of this home (pid ${current.pid}) does not answer on port ${current.port}`, {
            where: join(cfg.home, 'logs', 'devserver.log'),
            hint: 'read that log; `embedflow dev stop` stops it, the next command starts a new one',
          });
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      return running(current);
    }
    return startDevServer(cfg, current);
  });
}

/**
 * Start the server; only under the home's lock. A restart takes the ports of the server before it when
 * they are free, so clients and workers still connected to that address carry on.
 */
async function startDevServer(cfg: Config, previous: DevServerState | undefined): Promise<RunningDevServer> {
  const port = await freePort(cfg.devPort ?? previous?.port ?? 7233);
  const uiPort = await freePort(cfg.devPort ? cfg.devPort + 1000 : (previous?.uiPort ?? 8233));
  const db = join(cfg.home, 'temporal.db');
  const log = openSync(join(cfg.home, 'logs', 'devserver.log'), 'a');
  const args = [
    'server', 'start-dev',
    '--db-filename', db,
    '--ip', '127.0.0.1',
    '--port', String(port),
    '--ui-port', String(uiPort),
    '--log-level', 'warn',
    '--ui-disable-news-fetch',
  ];
  let child;
  try {
    child = spawn(cfg.temporalBin, args, { detached: true, stdio: ['ignore', log, log] });
  } catch (err) {
    throw new ConfigError(`cannot start the Temporal dev server (${cfg.temporalBin})`, { hint: 'run `npm run setup` to install it', cause: err });
  }
  const spawnError = new Promise<never>((_, reject) =>
    child.once('error', (err) =>
      reject(new ConfigError(`cannot start the Temporal dev server: ${err.message}`, { where: cfg.temporalBin, hint: 'run `npm run setup`' })),
    ),
  );
  child.unref();
  const state = { pid: child.pid!, port, uiPort, db };
  const deadline = Date.now() + 60_000;
  while (!(await Promise.race([portOpen(port), spawnError]))) {
    if (!processAlive({ pid: state.pid }) || Date.now() > deadline) {
      throw new ConfigError('the Temporal dev server did not start', { where: join(cfg.home, 'logs', 'devserver.log'), hint: 'read that log' });
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await writeFileAtomic(stateFile(cfg.home), JSON.stringify(state));
  return running(state);
}

/** Stop the dev server this EMBEDFLOW_HOME started. Returns false when none was running. */
export async function stopDevServer(home: string): Promise<boolean> {
  const state = await readDevServer(home);
  if (!state) return false;
  const wasAlive = serverAlive(state);
  if (wasAlive) {
    try {
      process.kill(-state.pid, 'SIGTERM');
    } catch {
      process.kill(state.pid, 'SIGTERM');
    }
    const deadline = Date.now() + 10_000;
    while (processAlive({ pid: state.pid }) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (processAlive({ pid: state.pid })) process.kill(state.pid, 'SIGKILL');
  }
  await rm(stateFile(home), { force: true });
  return wasAlive;
}
