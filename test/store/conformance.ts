import { execFile } from 'node:child_process';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ArtifactCorruptError, ArtifactNotFoundError, StorePathError } from '../../core/errors.ts';
import { exists } from '../../artifacts/fsutil.ts';
import type { ArtifactStore } from '../../artifacts/store.ts';
import { PROJECT_ROOT } from '../../workers/config.ts';
import type { StoreUnderTest } from './backends.ts';

const run = promisify(execFile);

/** Store timestamps may be whole seconds (S3's Last-Modified): wait past the next one. */
const NEXT_SECOND_MS = 1100;

async function publishText(store: ArtifactStore, files: Record<string, string>, kind = 'text', stageId = 's') {
  const w = await store.newWriter();
  for (const [p, text] of Object.entries(files)) await writeFile(await w.file(p), text);
  return store.publish(w, { kind, rows: { 'a.txt': 1 }, meta: { note: 'n' }, lineage: { stageId, inputs: {} } });
}

async function readAll(store: ArtifactStore, digest: string): Promise<Record<string, string>> {
  const reader = await store.open(digest);
  const out: Record<string, string> = {};
  for (const f of reader.manifest.files) out[f.path] = await readFile(reader.file(f.path), 'utf8');
  return out;
}

const FILES = { 'a.txt': 'some content here', 'd/b.txt': 'world', 'empty.txt': '', '日本語/文書.md': '# 見出し\n本文。' };

/**
 * The behaviour every ArtifactStore backend must share, run against each one. `make` returns a fresh,
 * empty store with raw access to its bytes (to corrupt them as a failing disk or a stray tool would).
 */
export function storeConformance(name: string, make: () => Promise<StoreUnderTest>): void {
  describe(`store conformance: ${name}`, () => {
    it('publishes content-addressed artifacts: same content, same digest; another handle reads them', async () => {
      const { store, reopen } = await make();
      const m1 = await publishText(store, FILES);
      const m2 = await publishText(store, Object.fromEntries(Object.entries(FILES).reverse()), 'text', 'later');
      expect(m2.digest).toBe(m1.digest);
      // The first publisher's manifest (lineage) is the one kept.
      expect(m2.lineage.stageId).toBe('s');
      expect(m1.files.map((f) => f.path)).toEqual(['a.txt', 'd/b.txt', 'empty.txt', '日本語/文書.md']);
      expect(m1).toMatchObject({ kind: 'text', rows: { 'a.txt': 1 }, meta: { note: 'n' } });
      expect((await publishText(store, FILES, 'other')).digest).not.toBe(m1.digest);
      expect((await publishText(store, { ...FILES, 'a.txt': 'changed' })).digest).not.toBe(m1.digest);

      expect(await store.has(m1.digest)).toBe(true);
      expect((await store.readManifest(m1.digest)).files).toEqual(m1.files);
      expect(await store.listArtifacts()).toHaveLength(3);
      expect(await store.listArtifacts()).toContain(m1.digest);
      expect(await readAll(store, m1.digest)).toEqual(FILES);
      const other = await reopen();
      expect(await readAll(other, m1.digest)).toEqual(FILES);
      expect((await other.verify(m1.digest)).ok).toBe(true);
      expect((await other.quickVerify(m1.digest)).ok).toBe(true);
      const reader = await other.open(m1.digest);
      expect(() => reader.file('c.txt')).toThrow(ArtifactNotFoundError);
      expect(() => reader.file('../a.txt')).toThrow(StorePathError);
      // Nothing is left in staging.
      expect(await store.listStale(0)).toEqual([]);
    });

    it('reports an unknown artifact as not found, not as corrupt', async () => {
      const { store } = await make();
      const digest = 'a'.repeat(64);
      expect(await store.has(digest)).toBe(false);
      await expect(store.open(digest)).rejects.toThrow(ArtifactNotFoundError);
      await expect(store.readManifest(digest)).rejects.toThrow(ArtifactNotFoundError);
      expect(await store.verify(digest)).toMatchObject({ ok: false, problems: [expect.stringMatching(/not in the store/)] });
      expect((await store.quickVerify(digest)).ok).toBe(false);
    });

    it('detects a truncated object at the cheap check, the full check and on open', async () => {
      const { store, reopen, raw } = await make();
      const { digest } = await publishText(store, FILES);
      await raw.write(`artifacts/${digest}/data/a.txt`, 'some');
      expect(await store.quickVerify(digest)).toMatchObject({ ok: false, problems: [expect.stringMatching(/a\.txt: 4 bytes/)] });
      expect((await store.verify(digest)).problems).toEqual(['a.txt: 4 bytes, manifest says 17']);
      await expect((await reopen()).open(digest)).rejects.toThrow(ArtifactCorruptError);
    });

    it('detects a same-size rewrite after publishing: full check, open, and the cheap check by its time', async () => {
      const { store, reopen, raw } = await make();
      const { digest } = await publishText(store, FILES);
      await sleep(NEXT_SECOND_MS);
      await raw.write(`artifacts/${digest}/data/d/b.txt`, 'WORLD');
      expect((await store.verify(digest)).problems).toEqual(['d/b.txt: sha256 mismatch']);
      await expect((await reopen()).open(digest)).rejects.toThrow(/d\/b\.txt: sha256 mismatch/);
      expect((await (await reopen()).quickVerify(digest)).ok).toBe(false);
    });

    it('detects a missing object and an object the manifest does not list', async () => {
      const { store, reopen, raw } = await make();
      const { digest } = await publishText(store, FILES);
      await raw.remove(`artifacts/${digest}/data/d/b.txt`);
      await raw.write(`artifacts/${digest}/data/extra.txt`, 'sneaky');
      // quickVerify stops at the first problem, unless a file's time ties with the manifest's (a fast
      // filesystem, same tick): then it re-hashes everything, and the extra file is listed too.
      expect(await store.quickVerify(digest)).toMatchObject({ ok: false, problems: expect.arrayContaining(['d/b.txt: missing']) });
      expect((await store.verify(digest)).problems).toEqual(['d/b.txt: missing', 'extra.txt: not in the manifest']);
      await expect((await reopen()).open(digest)).rejects.toThrow(ArtifactCorruptError);
    });

    it('quarantine hides a corrupt artifact, keeps its bytes aside, and the same content publishes intact again', async () => {
      const { store, reopen, raw } = await make();
      const { digest } = await publishText(store, FILES);
      await raw.write(`artifacts/${digest}/data/a.txt`, 'garbage');
      expect(await store.quarantined(digest)).toBeUndefined();
      await store.quarantine(digest);
      expect(await store.has(digest)).toBe(false);
      // Any handle can tell a quarantined artifact from one never published, and who made it.
      expect(await (await reopen()).quarantined(digest)).toMatchObject({ manifest: { digest, lineage: { stageId: 's' } } });
      expect(await store.listArtifacts()).toEqual([]);
      await expect((await reopen()).open(digest)).rejects.toThrow(ArtifactNotFoundError);
      const aside = await raw.list('quarantine/');
      expect(aside.some((k) => k.startsWith(`quarantine/${digest}-`) && k.endsWith('/data/a.txt'))).toBe(true);

      expect((await publishText(store, FILES)).digest).toBe(digest);
      expect((await store.verify(digest)).ok).toBe(true);
      expect(await readAll(await reopen(), digest)).toEqual(FILES);
    });

    it('publishing content whose existing artifact is corrupt replaces it with an intact one', async () => {
      const { store, reopen, raw } = await make();
      const { digest } = await publishText(store, FILES);
      await raw.write(`artifacts/${digest}/data/a.txt`, 'short');
      const again = await reopen();
      expect((await publishText(again, FILES)).digest).toBe(digest);
      expect((await store.verify(digest)).ok).toBe(true);
      expect(await readAll(await reopen(), digest)).toEqual(FILES);
      expect((await raw.list('quarantine/')).length).toBeGreaterThan(0);
    });

    it('two handles publishing the same content at once agree on one intact artifact', async () => {
      const { store, reopen } = await make();
      const other = await reopen();
      const [a, b] = await Promise.all([publishText(store, FILES, 'text', 'one'), publishText(other, FILES, 'text', 'two')]);
      expect(a.digest).toBe(b.digest);
      // One manifest wins and both are handed that one.
      expect(a.lineage.stageId).toBe(b.lineage.stageId);
      expect((await store.readManifest(a.digest)).lineage.stageId).toBe(a.lineage.stageId);
      expect((await store.verify(a.digest)).ok).toBe(true);
      expect(await store.listArtifacts()).toEqual([a.digest]);
    });

    it('leaves one intact artifact when two processes publish the same content at once', async () => {
      const { store, child } = await make();
      const script = join(PROJECT_ROOT, 'test', 'store', 'publishChild.ts');
      const spawnChild = () =>
        run(process.execPath, ['--no-warnings', '--import', 'tsx', script, ...child.args, '8'], {
          cwd: PROJECT_ROOT,
          env: { ...process.env, ...child.env },
        });
      const [a, b] = await Promise.all([spawnChild(), spawnChild()]);
      const digests = new Set([...JSON.parse(a.stdout), ...JSON.parse(b.stdout)]);
      expect(digests.size).toBe(1);
      const [digest] = [...digests] as string[];
      expect((await store.verify(digest!)).ok).toBe(true);
      expect(await store.listArtifacts()).toEqual([digest]);
      expect(await store.listStale(0)).toEqual([]);
    });

    it('stage cache: get, put, drop, list', async () => {
      const { store, reopen, raw } = await make();
      const { digest } = await publishText(store, FILES);
      expect(await store.getCache('k1')).toBeUndefined();
      await store.putCache('k1', digest, { stage: 's' });
      await store.putCache('k2', digest);
      const other = await reopen();
      expect(await other.getCache('k1')).toBe(digest);
      expect(await other.listCache()).toEqual(
        expect.arrayContaining([
          { key: 'k1', digest },
          { key: 'k2', digest },
        ]),
      );
      await other.dropCache('k1');
      expect(await store.getCache('k1')).toBeUndefined();
      expect(await store.listCache()).toEqual([{ key: 'k2', digest }]);
      await other.dropCache('never-there');
      // A damaged entry is a miss, not a crash.
      await raw.write('cache/k3.json', '{"digest": "not-a-dig');
      expect(await store.getCache('k3')).toBeUndefined();
      await expect(store.putCache('k4', 'nope')).rejects.toThrow(StorePathError);
    });

    it('memo: two writers both visible after reload; only flushed items persist; a torn last line is ignored', async () => {
      const { store, reopen, raw } = await make();
      const a = await store.memo<{ q: string[] }>('llm/abc');
      a.put('k1', { q: ['a'] });
      a.put('k2', { q: ['b'] });
      await a.flush();
      const b = await (await reopen()).memo<{ q: string[] }>('llm/abc');
      expect(b.get('k1')).toEqual({ q: ['a'] });
      b.put('k3', { q: ['c'] });
      await b.flush();
      const c = await store.memo<{ q: string[] }>('llm/abc');
      c.put('k4', { q: ['d'] });
      await c.close();
      a.put('k5', { q: ['e'] });
      await a.flush();
      // Put but never flushed (a crash before the flush): lost, as documented.
      const crashed = await store.memo<{ q: string[] }>('llm/abc');
      crashed.put('unflushed', { q: [] });
      expect(a.has('k3')).toBe(false);
      await a.reload();
      expect(a.get('k3')).toEqual({ q: ['c'] });
      expect(a.get('k4')).toEqual({ q: ['d'] });
      await b.reload();
      expect(b.get('k5')).toEqual({ q: ['e'] });
      await b.close();
      await a.close();

      const fresh = await (await reopen()).memo<{ q: string[] }>('llm/abc');
      expect(['k1', 'k2', 'k3', 'k4', 'k5'].filter((k) => !fresh.has(k))).toEqual([]);
      expect(fresh.size).toBe(5);
      expect(fresh.has('unflushed')).toBe(false);
      // Other namespaces are separate, including one nested below.
      expect((await store.memo('llm')).size).toBe(0);
      expect((await store.memo('llm/abc/sub')).size).toBe(0);

      const [segment] = await raw.list('memo/llm/abc/');
      await raw.write(segment!, `${(await raw.read(segment!))!.toString()}{"k":"k6","v":{"q":["tor`);
      const afterCrash = await (await reopen()).memo<{ q: string[] }>('llm/abc');
      expect(afterCrash.size).toBe(5);
      expect(afterCrash.get('k2')).toEqual({ q: ['b'] });
      expect(afterCrash.get('k6')).toBeUndefined();
      expect(afterCrash.hits).toBe(1);
    });

    it('documents: put, get, overwrite, list one level, delete', async () => {
      const { store, reopen } = await make();
      await store.putDoc('runs/r2', { n: 2 });
      await store.putDoc('runs/r1', { n: 1, text: '日本語' });
      await store.putDoc('runs/sub/x', { nested: true });
      await store.putDoc('schedules/nightly', { cron: '0 3 * * *' });
      const other = await reopen();
      expect(await other.getDoc('runs/r1')).toEqual({ n: 1, text: '日本語' });
      expect(await other.getDoc('runs/none')).toBeUndefined();
      expect((await other.listDocs('runs')).sort()).toEqual(['runs/r1', 'runs/r2']);
      expect(await other.listDocs('nothing')).toEqual([]);
      await other.putDoc('runs/r1', { n: 11 });
      expect(await store.getDoc('runs/r1')).toEqual({ n: 11 });
      await other.deleteDoc('runs/r2');
      await other.deleteDoc('runs/none');
      expect(await store.listDocs('runs')).toEqual(['runs/r1']);
      expect(await store.getDoc('runs/r2')).toBeUndefined();
    });

    it('refuses names that would escape the store', async () => {
      const { store } = await make();
      const digest = 'b'.repeat(64);
      await expect(store.open('../../etc/passwd')).rejects.toThrow(StorePathError);
      await expect(store.has('../x')).rejects.toThrow(StorePathError);
      await expect(store.memo('../x')).rejects.toThrow(StorePathError);
      await expect(store.memo('llm/../../x')).rejects.toThrow(StorePathError);
      await expect(store.getCache('a/../../b')).rejects.toThrow(StorePathError);
      await expect(store.putCache('../x', digest)).rejects.toThrow(StorePathError);
      await expect(store.putDoc('runs/../../x', {})).rejects.toThrow(StorePathError);
      await expect(store.getDoc('/etc/passwd')).rejects.toThrow(StorePathError);
      await expect(store.listDocs('..')).rejects.toThrow(StorePathError);
      await expect(store.workDir('../x')).rejects.toThrow(StorePathError);
      await expect(store.acquireLease('../x', { id: 'a', group: 'g' }, 1000)).rejects.toThrow(StorePathError);
      const w = await store.newWriter();
      await expect(w.file('../outside.txt')).rejects.toThrow(StorePathError);
      await expect(w.file('/etc/passwd')).rejects.toThrow(StorePathError);
      await store.discard(w);
    });

    it('work dirs persist per key until removed', async () => {
      const { store } = await make();
      const dir = await store.workDir('key1');
      await writeFile(join(dir, 'checkpoint.json'), '{"done":3}');
      expect(await store.workDir('key1')).toBe(dir);
      expect(await readdir(dir)).toEqual(['checkpoint.json']);
      await store.removeWorkDir('key1');
      expect(await exists(dir)).toBe(false);
    });

    it('gc operations: delete an artifact, list and delete memo, find and remove staging debris', async () => {
      const { store, reopen } = await make();
      const a = await publishText(store, FILES);
      const b = await publishText(store, { 'x.txt': 'keep me' });
      expect(await store.deleteArtifact(a.digest)).toBe(a.files.reduce((n, f) => n + f.bytes, 0));
      expect(await store.has(a.digest)).toBe(false);
      expect(await store.listArtifacts()).toEqual([b.digest]);
      await expect((await reopen()).open(a.digest)).rejects.toThrow(ArtifactNotFoundError);
      expect(await store.deleteArtifact(a.digest)).toBe(0);

      const memo = await store.memo<number>('embed/m1');
      memo.put('k', 1);
      await memo.close();
      // A memo used again after close keeps working.
      memo.put('k2', 2);
      await memo.close();
      expect((await (await reopen()).memo('embed/m1')).size).toBe(2);
      const listed = await store.listMemo();
      expect(listed).toEqual([{ namespace: 'embed/m1', bytes: expect.any(Number) }]);
      expect(listed[0]!.bytes).toBeGreaterThan(0);
      await store.deleteMemo('embed/m1');
      expect(await store.listMemo()).toEqual([]);
      expect((await (await reopen()).memo('embed/m1')).size).toBe(0);

      const abandoned = await store.newWriter();
      await writeFile(await abandoned.file('half.txt'), 'half');
      await sleep(20);
      expect(await store.listStale(60 * 60 * 1000)).toEqual([]);
      expect(await store.listStale(0)).toHaveLength(1);
      expect(await store.removeStale(0)).toBe(1);
      expect(await store.listStale(0)).toEqual([]);
      expect((await store.verify(b.digest)).ok).toBe(true);
    });

    it('leases: one live owner per key; a stale or same-group lease is taken over; only the owner releases', async () => {
      const { store, reopen } = await make();
      const other = await reopen();
      const A = { id: 'host-a:1:run1:s:1', group: 'run1:s' };
      const B = { id: 'host-b:2:run2:s:1', group: 'run2:s' };
      const A2 = { id: 'host-c:3:run1:s:2', group: 'run1:s' };
      expect(await store.acquireLease('key', A, 60_000)).toBe(true);
      expect(await other.acquireLease('key', B, 60_000)).toBe(false);
      await store.renewLease('key', A.id);
      expect(await other.acquireLease('key', B, 60_000)).toBe(false);
      // A retried attempt of the same run and stage takes over its dead predecessor's lease.
      expect(await other.acquireLease('key', A2, 60_000)).toBe(true);
      await store.releaseLease('key', A.id); // no longer A's: a no-op
      expect(await store.acquireLease('key', B, 60_000)).toBe(false);
      await sleep(5);
      expect(await store.acquireLease('key', B, 1)).toBe(true); // stale after 1 ms
      await other.releaseLease('key', B.id);
      expect(await other.acquireLease('key', A, 60_000)).toBe(true);
      expect(await store.acquireLease('other-key', B, 60_000)).toBe(true);
    });
  });
}
