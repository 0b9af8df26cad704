import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CorpusEmptyError, CorpusPathError } from '../../core/errors.ts';
import { globMatcher, splitGlob } from '../../activities/ingest/glob.ts';
import { snapshotInput } from '../../engine/snapshotInput.ts';
import type { LocalStore } from '../../artifacts/store.ts';
import { tempStore } from '../support/runStage.ts';

describe('glob patterns', () => {
  it('match within a segment, across segments with **, classes and alternatives', () => {
    const m = (pattern: string, path: string) => globMatcher(pattern)(path);
    expect(m('*.md', 'a.md')).toBe(true);
    expect(m('*.md', 'sub/a.md')).toBe(false);
    expect(m('**/*.md', 'a.md')).toBe(true);
    expect(m('**/*.md', 'x/y/a.md')).toBe(true);
    expect(m('reports/**/2024-??.pdf', 'reports/2024-03.pdf')).toBe(true);
    expect(m('reports/**/2024-??.pdf', 'reports/q1/2024-03.pdf')).toBe(true);
    expect(m('reports/**/2024-??.pdf', 'reports/q1/2024-123.pdf')).toBe(false);
    expect(m('*.{md,txt}', 'a.txt')).toBe(true);
    expect(m('*.{md,txt}', 'a.pdf')).toBe(false);
    expect(m('[ab]*.md', 'b1.md')).toBe(true);
    expect(m('[!ab]*.md', 'b1.md')).toBe(false);
    expect(m('a+b (1).md', 'a+b (1).md')).toBe(true);
    expect(m('a.md', 'aXmd')).toBe(false);
  });

  it('split into the folder to walk and the pattern under it', () => {
    expect(splitGlob('/data/white-paper/**/*.pdf')).toEqual({ base: '/data/white-paper', pattern: '**/*.pdf' });
    expect(splitGlob('docs/*.md')).toEqual({ base: 'docs', pattern: '*.md' });
    expect(splitGlob('*.md')).toEqual({ base: '.', pattern: '*.md' });
  });
});

describe('a glob as the corpus', () => {
  let work: string;
  let store: LocalStore;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'ef-glob-'));
    store = await tempStore();
    await mkdir(join(work, 'corpus', '2024', 'drafts'), { recursive: true });
    await writeFile(join(work, 'corpus', 'index.md'), '# 索引\n');
    await writeFile(join(work, 'corpus', '2024', 'report.md'), '# 報告\n');
    await writeFile(join(work, 'corpus', '2024', 'notes.txt'), 'メモ\n');
    await writeFile(join(work, 'corpus', '2024', 'drafts', 'draft.md'), '# 草稿\n');
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
    await rm(store.root, { recursive: true, force: true });
  });

  const filesOf = async (digest: string) => (await store.readManifest(digest)).files.map((f) => f.path).sort();

  it('snapshots only the files the pattern selects, paths relative to the folder before the first wildcard', async () => {
    const all = await snapshotInput(store, { name: 'corpus', type: 'directory', path: join(work, 'corpus', '**', '*.md') });
    expect(await filesOf(all.digest)).toEqual(['2024/drafts/draft.md', '2024/report.md', 'index.md']);
    expect((await store.readManifest(all.digest)).meta.glob).toBe('**/*.md');
    const top = await snapshotInput(store, { name: 'corpus', type: 'directory', path: join(work, 'corpus', '2024', '*.{md,txt}') });
    expect(await filesOf(top.digest)).toEqual(['notes.txt', 'report.md']);
  });

  it('a pattern that selects nothing, or under a missing folder, is a clear error', async () => {
    const none = snapshotInput(store, { name: 'corpus', type: 'directory', path: join(work, 'corpus', '**', '*.pdf') });
    await expect(none).rejects.toThrow(CorpusEmptyError);
    await expect(none).rejects.toThrow(/no file under .*corpus matches \*\*\/\*\.pdf/);
    await expect(snapshotInput(store, { name: 'corpus', type: 'directory', path: join(work, 'missing', '*.md') })).rejects.toThrow(CorpusPathError);
  });
});
