import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { DiskFullError } from '../core/errors.ts';

export function randomId(bytes = 6): string {
  return randomBytes(bytes).toString('hex');
}

/** fsync a file or directory so a rename that follows cannot expose unwritten data after a crash. */
export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Write a whole file durably: temp file, fsync, rename. Readers see the old file or the new one. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${randomId()}`;
  try {
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    await fsyncPath(dirname(path));
  } catch (err) {
    await rm(tmp, { force: true });
    throw asDiskFull(err, path);
  }
}

/** Every regular file below `dir`, as paths relative to it with forward slashes, sorted. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(d: string): Promise<void> {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      const full = join(d, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile()) out.push(relative(dir, full).split(sep).join('/'));
    }
  }
  await walk(dir);
  return out.sort();
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

export function isErrno(err: unknown, ...codes: string[]): boolean {
  return typeof err === 'object' && err !== null && codes.includes((err as NodeJS.ErrnoException).code ?? '');
}

/** ENOSPC/EDQUOT become a DiskFullError that says where; anything else passes through. */
export function asDiskFull(err: unknown, where: string): unknown {
  if (isErrno(err, 'ENOSPC', 'EDQUOT')) {
    return new DiskFullError('no space left on the device while writing', {
      where,
      hint: 'free disk space (e.g. `embedflow gc --apply`), then `embedflow resume <runId>`',
      cause: err,
    });
  }
  return err;
}

/**
 * The folders in `dir` with nothing in them modified since `cutoff`. A folder's own mtime is set when
 * its writer starts and changes only when entries are added to it directly, so a writer busy for
 * hours below it would look dead; the stage runner also touches a writer's folder while it runs,
 * for stages that write their output only at the end (training).
 */
export async function untouchedSince(dir: string, cutoff: number): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!(await touchedSince(join(dir, name), cutoff))) out.push(join(dir, name));
  }
  return out;
}

/** Whether `path` or anything below it was modified since `cutoff`; stops at the first that was. */
async function touchedSince(path: string, cutoff: number): Promise<boolean> {
  const st = await stat(path).catch(() => undefined);
  // Gone meanwhile (published or discarded): nothing left to remove.
  if (!st) return true;
  if (st.mtimeMs >= cutoff) return true;
  if (!st.isDirectory()) return false;
  for (const name of await readdir(path).catch(() => [] as string[])) {
    if (await touchedSince(join(path, name), cutoff)) return true;
  }
  return false;
}
