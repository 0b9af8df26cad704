import { mkdir, open, readFile, readdir } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { asDiskFull, isErrno, randomId } from './fsutil.ts';

/**
 * Per-item memo: results of expensive per-item work (one LLM call per chunk, one embedding per text),
 * keyed by a hash of everything that determines the result. Persisted as append-only JSONL segments,
 * one per writer, fsynced on flush, so a crash loses only unflushed items and concurrent writers on a
 * shared filesystem never touch each other's files. A torn last line (crash mid-write) is ignored.
 */
export class Memo<V> {
  private readonly entries = new Map<string, V>();
  private segment: FileHandle | undefined;
  private pending: string[] = [];
  private readonly dir: string;
  /** Items found in the memo (served without recomputing) since open. */
  hits = 0;
  /** Items added since open. */
  added = 0;

  private constructor(dir: string) {
    this.dir = dir;
  }

  static async open<V>(dir: string): Promise<Memo<V>> {
    const memo = new Memo<V>(dir);
    await memo.reload();
    return memo;
  }

  /** Re-read every segment (another process may have added items). */
  async reload(): Promise<void> {
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((n) => n.endsWith('.jsonl')).sort();
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      throw err;
    }
    for (const name of names) {
      const text = await readFile(join(this.dir, name), 'utf8');
      for (const line of text.split('\n')) {
        if (!line) continue;
        try {
          const { k, v } = JSON.parse(line) as { k: string; v: V };
          if (typeof k === 'string') this.entries.set(k, v);
        } catch {
          // A line torn by a crash: that item is simply recomputed.
        }
      }
    }
  }

  get size(): number {
    return this.entries.size;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** The memoised value, counting a hit. */
  get(key: string): V | undefined {
    const v = this.entries.get(key);
    if (v !== undefined) this.hits++;
    return v;
  }

  /** Record a result; it is durable after the next flush(). */
  put(key: string, value: V): void {
    this.entries.set(key, value);
    this.pending.push(`${JSON.stringify({ k: key, v: value })}\n`);
    this.added++;
  }

  /** Append pending items to this writer's segment and fsync. */
  async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const data = this.pending.join('');
    this.pending = [];
    try {
      if (!this.segment) {
        await mkdir(this.dir, { recursive: true });
        this.segment = await open(join(this.dir, `${Date.now()}-${process.pid}-${randomId(4)}.jsonl`), 'a');
      }
      await this.segment.appendFile(data);
      await this.segment.sync();
    } catch (err) {
      throw asDiskFull(err, this.dir);
    }
  }

  async close(): Promise<void> {
    await this.flush();
    await this.segment?.close();
    this.segment = undefined;
  }
}
