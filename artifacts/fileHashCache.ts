import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { randomId } from './fsutil.ts';
import { sha256File } from './hash.ts';

const Entries = z.record(z.string(), z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/), bytes: z.number().int().min(0) }));
type Hashed = { sha256: string; bytes: number };

/** Files changed more recently than this are hashed but not remembered. */
const RACY_MS = 2000;

/** Enough for every file of a few hundred models; the oldest entries go first. */
const MAX_ENTRIES = 100_000;

/**
 * sha256 of files remembered by path, size, mtime, ctime and inode, in one JSON file: as in git's
 * index, a file whose metadata did not change is not read again. A write to a file changes its ctime
 * (which nothing can set back), so rewritten content is always hashed afresh. The cache is advisory:
 * a missing or unreadable cache file only costs the hashing.
 */
export class FileHashCache {
  private dirty = false;

  private constructor(
    private readonly path: string,
    private readonly entries: Map<string, Hashed>,
  ) {}

  static async open(path: string): Promise<FileHashCache> {
    let entries = new Map<string, Hashed>();
    try {
      const parsed = Entries.safeParse(JSON.parse(await readFile(path, 'utf8')));
      if (parsed.success) entries = new Map(Object.entries(parsed.data));
    } catch {
      // No cache yet, or a torn one: start empty.
    }
    return new FileHashCache(path, entries);
  }

  async sha256(abs: string): Promise<Hashed> {
    const st = await stat(abs, { bigint: true });
    const key = `${abs}\0${st.size}\0${st.mtimeNs}\0${st.ctimeNs}\0${st.ino}`;
    const known = this.entries.get(key);
    if (known) return known;
    const hashed = await sha256File(abs);
    // A file changed moments ago may change again within the same clock tick, leaving its times as
    // they are (git's "racy" case): only remember files that have been still for a while.
    if (Date.now() - Number(st.ctimeNs / 1_000_000n) < RACY_MS) return hashed;
    this.entries.set(key, hashed);
    this.dirty = true;
    return hashed;
  }

  /** Write the cache back (atomically: a reader sees the old file or the new one). */
  async save(): Promise<void> {
    if (!this.dirty) return;
    const keep = [...this.entries].slice(-MAX_ENTRIES);
    await mkdir(dirname(this.path), { recursive: true });
    const tmp = `${this.path}.${randomId()}.tmp`;
    await writeFile(tmp, JSON.stringify(Object.fromEntries(keep)));
    await rename(tmp, this.path);
    this.dirty = false;
  }
}
