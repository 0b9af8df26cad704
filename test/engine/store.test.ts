import { appendFile, readFile, readdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ArtifactCorruptError, StorePathError } from '../../core/errors.ts';
import { tempStore } from '../support/runStage.ts';
import type { LocalStore } from '../../artifacts/store.ts';

async function publishText(store: LocalStore, files: Record<string, string>, kind = 'text') {
  const w = await store.newWriter();
  for (const [p, text] of Object.entries(files)) await writeFile(await w.file(p), text);
  return store.publish(w, { kind, rows: { 'a.txt': 1 }, meta: { note: 'n' }, lineage: { stageId: 's', inputs: {} } });
}

describe('artifact store', () => {
  it('publishes content-addressed, immutable artifacts with a manifest', async () => {
    const store = await tempStore();
    const m1 = await publishText(store, { 'a.txt': 'hello', 'd/b.txt': 'world' });
    const m2 = await publishText(store, { 'd/b.txt': 'world', 'a.txt': 'hello' });
    expect(m2.digest).toBe(m1.digest);
    expect(m1.files.map((f) => f.path)).toEqual(['a.txt', 'd/b.txt']);
    expect(m1).toMatchObject({ kind: 'text', rows: { 'a.txt': 1 }, lineage: { stageId: 's' } });
    const other = await publishText(store, { 'a.txt': 'hello' }, 'other');
    expect(other.digest).not.toBe(m1.digest);
    const reader = await store.open(m1.digest);
    expect(await readFile(reader.file('d/b.txt'), 'utf8')).toBe('world');
    expect(() => reader.file('c.txt')).toThrow(/has no file c.txt/);
    // Nothing is left in the staging area.
    expect(await readdir(join(store.root, 'tmp'))).toEqual([]);
  });

  it('detects a truncated file at the cheap check and a flipped byte at the full check', async () => {
    const store = await tempStore();
    const { digest } = await publishText(store, { 'a.txt': 'some content here' });
    const file = join(store.root, 'artifacts', digest, 'data', 'a.txt');
    await truncate(file, 4);
    expect((await store.quickVerify(digest)).ok).toBe(false);
    expect((await store.verify(digest)).problems.join()).toMatch(/4 bytes/);

    const fresh = await tempStore();
    const m = await publishText(fresh, { 'a.txt': 'some content here' });
    const f2 = join(fresh.root, 'artifacts', m.digest, 'data', 'a.txt');
    await writeFile(f2, 'SOME content here');
    const again = new (fresh.constructor as typeof LocalStore)(fresh.root);
    await expect(again.open(m.digest)).rejects.toThrow(ArtifactCorruptError);
    // Modified after publishing: the cheap check falls back to hashing and catches it too.
    expect((await again.quickVerify(m.digest)).ok).toBe(false);
  });

  it('flags files added to an artifact after publishing', async () => {
    const store = await tempStore();
    const { digest } = await publishText(store, { 'a.txt': 'x' });
    await appendFile(join(store.root, 'artifacts', digest, 'data', 'extra.txt'), 'sneaky');
    expect((await store.verify(digest)).problems).toContain('extra.txt: not in the manifest');
  });

  it('refuses names that would escape the store root', async () => {
    const store = await tempStore();
    await expect(store.open('../../etc/passwd')).rejects.toThrow(StorePathError);
    await expect(store.memo('../x')).rejects.toThrow(StorePathError);
    await expect(store.getCache('a/../../b')).rejects.toThrow(StorePathError);
    await expect(store.putDoc('runs/../../x', {})).rejects.toThrow(StorePathError);
    const w = await store.newWriter();
    await expect(w.file('../outside.txt')).rejects.toThrow(StorePathError);
    await expect(w.file('/etc/passwd')).rejects.toThrow(StorePathError);
  });

  it('memo: persists items across processes, ignores a torn last line', async () => {
    const store = await tempStore();
    const memo = await store.memo<{ q: string[] }>('llm/abc');
    memo.put('k1', { q: ['a'] });
    memo.put('k2', { q: ['b'] });
    await memo.close();
    const dir = join(store.root, 'memo', 'llm', 'abc');
    const [seg] = await readdir(dir);
    await appendFile(join(dir, seg!), '{"k":"k3","v":{"q":["tor');
    const again = await store.memo<{ q: string[] }>('llm/abc');
    expect(again.size).toBe(2);
    expect(again.get('k2')).toEqual({ q: ['b'] });
    expect(again.get('k3')).toBeUndefined();
    expect(again.hits).toBe(1);
  });
});
