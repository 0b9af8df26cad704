import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CorpusEmptyError } from '../../core/errors.ts';
import { ingest } from '../../activities/ingest.ts';
import { DOCUMENTS_FILE } from '../../activities/artifactKinds/documentsArtifact.ts';
import { ingestCorpus } from '../../activities/ingest/ingestCorpus.ts';
import { readParquet } from '../../artifacts/parquet.ts';
import { LocalStore } from '../../artifacts/store.ts';
import { filesArtifact, runStage, tempStore } from '../support/runStage.ts';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures');
const PDF = join(FIXTURES, 'corpus-ja', 'report.pdf');

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ef-ingest-bad-'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A corpus folder with one good document beside the given bad files. */
async function corpus(name: string, files: Record<string, Uint8Array | string>): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'good.md'), '# 良い文書\n\nこれは読める文書です。\n');
  for (const [rel, data] of Object.entries(files)) await writeFile(join(dir, rel), data);
  return dir;
}

/** Run a script of this folder in a child process, as an unprivileged user when the tests run as root (root reads chmod 000 files anyway). */
function asUnprivileged(script: string, args: string[]) {
  const asRoot = process.getuid?.() === 0;
  return spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, script), ...args], {
    encoding: 'utf8',
    cwd: join(import.meta.dirname, '..', '..'),
    ...(asRoot ? { uid: 65534, gid: 65534, env: { ...process.env, HOME: tmpdir() } } : {}),
  });
}

function reasons(skipped: Array<{ path: string; reason: string }>): Record<string, string> {
  return Object.fromEntries(skipped.map((s) => [s.path, s.reason]));
}

describe('ingest: files it cannot read are skipped with the reason, nothing half-written', () => {
  it('binary file, truncated PDF, scanned PDF, empty file, whitespace-only file, unsupported format', async () => {
    const pdf = await readFile(PDF);
    const binary = randomBytes(4096);
    binary[10] = 0;
    const dir = await corpus('mixed', {
      'data.txt': binary,
      'truncated.pdf': pdf.subarray(0, Math.floor(pdf.length * 0.6)),
      'empty.txt': '',
      'blank.md': '  \n\n\t\n',
      'slides.pptx': 'PK not really',
    });
    await copyFile(join(FIXTURES, 'corpus-scanned', 'scan.pdf'), join(dir, 'scan.pdf'));
    const out = join(work, 'mixed.parquet');
    const summary = await ingestCorpus(dir, out, { normalize: 'NFKC' });
    expect(summary.documents).toBe(1);
    const r = reasons(summary.skipped);
    expect(Object.keys(r).sort()).toEqual(['blank.md', 'data.txt', 'empty.txt', 'scan.pdf', 'slides.pptx', 'truncated.pdf']);
    expect(r['data.txt']).toMatch(/binary file/);
    expect(r['truncated.pdf']).toMatch(/unreadable PDF/);
    expect(r['scan.pdf']).toMatch(/no text layer in 2 page\(s\)/);
    expect(r['empty.txt']).toBe('empty file');
    expect(r['blank.md']).toMatch(/whitespace only/);
    expect(r['slides.pptx']).toMatch(/unsupported format \(\.pptx\)/);
    expect((await readParquet(out)).numRows).toBe(1);
  });

  it('refuses a symbolic link that leaves the corpus folder, follows one that stays inside', async () => {
    const outside = join(work, 'secret.txt');
    await writeFile(outside, '社外秘の文書です。');
    const dir = await corpus('links', {});
    await symlink(outside, join(dir, 'escape.txt'));
    await symlink(join(dir, 'good.md'), join(dir, 'alias.md'));
    const summary = await ingestCorpus(dir, join(work, 'links.parquet'), { normalize: 'NFKC' });
    expect(reasons(summary.skipped)).toEqual({ 'escape.txt': 'symbolic link pointing outside the corpus folder (refused)' });
    const rows = (await readParquet(join(work, 'links.parquet'))).toArray();
    expect(rows.map((r) => r.path)).toEqual(['alias.md', 'good.md']);
    expect(rows.some((r) => (r.text as string).includes('社外秘'))).toBe(false);
  });

  it('reports a file the worker may not read (checked as an unprivileged user: root reads chmod 000 files)', async () => {
    const dir = await corpus('perm', { 'locked.txt': '読めないはずの文書です。' });
    await chmod(join(dir, 'locked.txt'), 0o000);
    await chmod(work, 0o755);
    const outDir = join(work, 'perm-out');
    await mkdir(outDir);
    await chmod(outDir, 0o777);
    const child = asUnprivileged('ingestAsChild.ts', [dir, join(outDir, DOCUMENTS_FILE)]);
    expect(child.status, child.stderr).toBe(0);
    const result = JSON.parse(child.stdout) as { ok: boolean; documents: number; skipped: Array<{ path: string; reason: string }> };
    expect(result, child.stdout).toMatchObject({ ok: true, documents: 1 });
    expect(reasons(result.skipped)).toEqual({ 'locked.txt': 'permission denied (make the file readable by the worker)' });
  });

  it('a file or folder the corpus snapshot may not read is listed by ingest as skipped, not a failed run', async () => {
    const dir = await corpus('perm-snapshot', { 'locked.txt': '読めないはずの文書です。' });
    await mkdir(join(dir, 'private'));
    await writeFile(join(dir, 'private', 'inside.md'), '# 非公開\n\n読めない。\n');
    await chmod(join(dir, 'locked.txt'), 0o000);
    await chmod(join(dir, 'private'), 0o000);
    await chmod(work, 0o755);
    const storeRoot = join(work, 'perm-store');
    await mkdir(storeRoot);
    await chmod(storeRoot, 0o777);
    const child = asUnprivileged('snapshotAsChild.ts', [storeRoot, dir]);
    await chmod(join(dir, 'private'), 0o755);
    expect(child.status, child.stderr).toBe(0);
    const snap = JSON.parse(child.stdout) as { ok: boolean; digest: string; files: number; skipped: Array<{ path: string; reason: string }> };
    expect(snap, child.stdout).toMatchObject({ ok: true, files: 1 });
    const { manifest, stats } = await runStage(ingest, { store: new LocalStore(storeRoot), inputs: { corpus: snap.digest } });
    expect(stats).toMatchObject({ documents: 1, skipped: 2 });
    expect(reasons(manifest.meta.skipped as Array<{ path: string; reason: string }>)).toEqual({
      'locked.txt': 'permission denied (make the file readable by the worker)',
      private: 'permission denied on the folder (make it readable by the worker)',
    });
  });

  it('an empty folder is a CorpusEmptyError and leaves no output file', async () => {
    const dir = join(work, 'empty');
    await mkdir(dir);
    const out = join(work, 'out-empty', DOCUMENTS_FILE);
    await expect(ingestCorpus(dir, out, { normalize: 'NFKC' })).rejects.toThrow(CorpusEmptyError);
    await expect(ingestCorpus(dir, out, { normalize: 'NFKC' })).rejects.toThrow(/corpus folder .* is empty/);
    expect(await readdir(join(work, 'out-empty'))).toEqual([]);
  });

  it('a folder of only unreadable files is a CorpusEmptyError that names them', async () => {
    const dir = join(work, 'only-bad');
    await mkdir(dir);
    await writeFile(join(dir, 'empty.txt'), '');
    await writeFile(join(dir, 'x.bin.txt'), Buffer.from([0, 1, 2, 3, 0, 255]));
    const err = await ingestCorpus(dir, join(work, 'only-bad.parquet'), { normalize: 'NFKC' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorpusEmptyError);
    expect((err as Error).message).toMatch(/2 file\(s\) skipped: empty.txt: empty file; x.bin.txt: binary file/);
    expect(await readdir(work)).not.toContain('only-bad.parquet');
  });
});

describe('ingest stage', () => {
  let store: LocalStore;
  beforeAll(async () => {
    store = await tempStore();
  });
  afterAll(async () => {
    await rm(store.root, { recursive: true, force: true });
  });

  it('lists skipped files in the manifest and counts documents', async () => {
    const dir = await corpus('stage', { 'empty.txt': '' });
    await copyFile(join(FIXTURES, 'corpus-scanned', 'scan.pdf'), join(dir, 'scan.pdf'));
    const { manifest, stats } = await runStage(ingest, { store, inputs: { corpus: await filesArtifact(store, dir) } });
    expect(manifest.kind).toBe('documents');
    expect(manifest.rows).toEqual({ [DOCUMENTS_FILE]: 1 });
    expect(stats).toMatchObject({ documents: 1, skipped: 2 });
    expect(manifest.meta.skipped).toEqual([
      { path: 'empty.txt', reason: 'empty file' },
      { path: 'scan.pdf', reason: 'no text layer in 2 page(s) (a scanned PDF? run OCR first)' },
    ]);
  });

  it('publishes nothing when the corpus has no readable document', async () => {
    const dir = join(work, 'stage-bad');
    await mkdir(dir);
    await writeFile(join(dir, 'empty.txt'), '');
    const input = await filesArtifact(store, dir);
    const before = await store.listArtifacts();
    await expect(runStage(ingest, { store, inputs: { corpus: input } })).rejects.toThrow(CorpusEmptyError);
    expect(await store.listArtifacts()).toEqual(before);
  });

  it('validates its parameters', () => {
    expect(ingest.params.safeParse({ normalize: 'NFD' }).success).toBe(false);
    expect(ingest.params.parse({})).toEqual({ normalize: 'NFKC', maxDocumentMB: 64 });
    expect(ingest.params.safeParse({ maxDocumentMB: 0 }).success).toBe(false);
  });
});
