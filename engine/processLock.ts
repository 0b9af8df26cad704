import { readFileSync } from 'node:fs';
import { link, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { z } from 'zod';
import { ConfigError } from '../core/errors.ts';
import { randomId } from '../artifacts/fsutil.ts';

// A lock file held by one process at a time: created with O_EXCL, holding the holder's pid and start
// time. A process that dies holding it leaves a stale lock, which the next process takes over; the
// start time tells a dead holder from a new process that was given the same pid.

const Holder = z.object({ pid: z.number().int(), started: z.string().optional() });
export type Holder = z.infer<typeof Holder>;

/**
 * When a process started, as the kernel counts it (clock ticks since boot, field 22 of
 * /proc/<pid>/stat); undefined where there is no /proc.
 */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Whether the process is still there (a zombie is not), and is the same one when its start time is known. */
export function processAlive(holder: Holder): boolean {
  try {
    process.kill(holder.pid, 0);
  } catch (err) {
    // EPERM: it exists, owned by another user.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  let stat: string;
  try {
    stat = readFileSync(`/proc/${holder.pid}/stat`, 'utf8');
  } catch {
    return true;
  }
  if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return false;
  return holder.started === undefined || processStartTime(holder.pid) === holder.started;
}

/** This process, as a lock holder. */
function me(): Holder {
  return { pid: process.pid, started: processStartTime(process.pid) };
}

const sameHolder = (a: Holder, b: Holder) => a.pid === b.pid && a.started === b.started;

/** A lock file just created and not yet written is given this long before it is taken for a crashed creator's. */
const UNWRITTEN_GRACE_MS = 5_000;

async function readHolder(path: string): Promise<Holder | 'unwritten' | 'gone'> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return 'gone';
  }
  const parsed = Holder.safeParse((() => {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return undefined;
    }
  })());
  return parsed.success ? parsed.data : 'unwritten';
}

async function tryCreate(path: string, holder: Holder): Promise<boolean> {
  let fh;
  try {
    fh = await open(path, 'wx');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new ConfigError(`cannot create the lock file: ${(err as Error).message}`, { where: path, hint: 'check that EMBEDFLOW_HOME is writable' });
  }
  try {
    await fh.writeFile(JSON.stringify(holder));
    await fh.sync();
  } finally {
    await fh.close();
  }
  return true;
}

/**
 * Move a stale lock aside. Two processes may judge the same lock stale at once: the one whose rename
 * lands second may have moved a lock the first has just created, which it then puts back.
 */
async function takeOver(path: string, stale: Holder | 'unwritten'): Promise<void> {
  const aside = `${path}.stale-${randomId(4)}`;
  try {
    await rename(path, aside);
  } catch {
    return;
  }
  const moved = await readHolder(aside);
  const wasStale = stale === 'unwritten' ? moved === 'unwritten' : moved !== 'unwritten' && moved !== 'gone' && sameHolder(moved, stale);
  if (!wasStale) await link(aside, path).catch(() => {});
  await rm(aside, { force: true });
}

export interface LockOptions {
  /** What the lock guards, for the error when waiting runs out. */
  what: string;
  timeoutMs?: number;
  pollMs?: number;
}

/** Run `fn` holding the lock file `path`, waiting while a live process holds it. */
export async function withProcessLock<T>(path: string, opts: LockOptions, fn: () => Promise<T>): Promise<T> {
  const holder = me();
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  for (;;) {
    if (await tryCreate(path, holder)) break;
    const current = await readHolder(path);
    if (current === 'gone') continue;
    if (current === 'unwritten') {
      const age = await stat(path).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > UNWRITTEN_GRACE_MS) await takeOver(path, current);
    } else if (!processAlive(current)) {
      await takeOver(path, current);
      continue;
    }
    if (Date.now() > deadline) {
      const who = current === 'unwritten' ? 'a process' : `process ${current.pid}`;
      throw new ConfigError(`${opts.what}: waited ${Math.round((opts.timeoutMs ?? 120_000) / 1000)} s for ${who}, which holds the lock`, {
        where: path,
        hint: 'if that process is stuck, stop it (a lock whose holder is gone is taken over by itself)',
      });
    }
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 100));
  }
  try {
    return await fn();
  } finally {
    const current = await readHolder(path);
    if (current !== 'gone' && current !== 'unwritten' && sameHolder(current, holder)) await rm(path, { force: true });
  }
}
