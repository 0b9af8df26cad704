import type { Dirent } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import { extname, join, relative, sep } from 'node:path';
import { isErrno } from '../../artifacts/fsutil.ts';
import { CorpusPathError } from '../../core/errors.ts';

export type DocFormat = 'pdf' | 'html' | 'md' | 'txt';

export const FORMAT_OF_EXTENSION: Readonly<Record<string, DocFormat>> = {
  '.pdf': 'pdf',
  '.html': 'html',
  '.htm': 'html',
  '.xhtml': 'html',
  '.md': 'md',
  '.markdown': 'md',
  '.txt': 'txt',
  '.text': 'txt',
};

export interface CorpusFile {
  /** Relative to the corpus root, '/'-separated. */
  path: string;
  abs: string;
  format: DocFormat;
}

export interface Skipped {
  path: string;
  reason: string;
}

/**
 * The files of a corpus directory that ingest can read, in path order, and everything else with the
 * reason it is left out: unsupported formats, hidden files, special files, and symbolic links that
 * leave the corpus root (refused, never followed). Links that stay inside the root are followed.
 */
export async function listCorpus(root: string): Promise<{ files: CorpusFile[]; skipped: Skipped[] }> {
  let realRoot: string;
  try {
    realRoot = await realpath(root);
    if (!(await stat(realRoot)).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
  } catch (err) {
    throw new CorpusPathError(`corpus folder ${root} ${isErrno(err, 'ENOENT') ? 'does not exist' : 'cannot be read as a folder'}`, {
      where: root,
      hint: 'point the corpus input at an existing folder of .pdf/.html/.md/.txt files',
      cause: err,
    });
  }
  const files: CorpusFile[] = [];
  const skipped: Skipped[] = [];
  const seenDirs = new Set<string>();

  const visit = async (dir: string): Promise<void> => {
    const realDir = await realpath(dir);
    if (seenDirs.has(realDir)) return;
    seenDirs.add(realDir);
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      skipped.push({ path: rel(dir) || '.', reason: readError(err) });
      return;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const abs = join(dir, e.name);
      const path = rel(abs);
      if (e.name.startsWith('.')) {
        skipped.push({ path, reason: e.isDirectory() ? 'hidden folder (not read)' : 'hidden file' });
        continue;
      }
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        let target: string;
        try {
          target = await realpath(abs);
        } catch {
          skipped.push({ path, reason: 'broken symbolic link' });
          continue;
        }
        if (target !== realRoot && !target.startsWith(realRoot + sep)) {
          skipped.push({ path, reason: 'symbolic link pointing outside the corpus folder (refused)' });
          continue;
        }
        const st = await stat(target);
        isDir = st.isDirectory();
        isFile = st.isFile();
      }
      if (isDir) await visit(abs);
      else if (!isFile) skipped.push({ path, reason: 'not a regular file' });
      else {
        const format = FORMAT_OF_EXTENSION[extname(e.name).toLowerCase()];
        if (format) files.push({ path, abs, format });
        else skipped.push({ path, reason: `unsupported format (${extname(e.name) || 'no extension'}); readable: ${Object.keys(FORMAT_OF_EXTENSION).join(' ')}` });
      }
    }
  };
  const rel = (abs: string): string => relative(root, abs).split(sep).join('/');
  await visit(root);
  files.sort(byPath);
  return { files, skipped };
}

/** Path order by code unit, the same on every machine and locale (localeCompare is neither). */
export function byPath(a: { path: string }, b: { path: string }): number {
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

/** The first few skipped files with their reasons, for an error message. */
export function skippedText(skipped: Skipped[], first = 5): string {
  const shown = skipped.slice(0, first).map((s) => `${s.path}: ${s.reason}`);
  return `${shown.join('; ')}${skipped.length > first ? '; ...' : ''}`;
}

/** A read failure as a reason a person can act on. */
export function readError(err: unknown): string {
  if (isErrno(err, 'EACCES', 'EPERM')) return 'permission denied (make the file readable by the worker)';
  if (isErrno(err, 'ENOENT')) return 'vanished while reading';
  if (isErrno(err, 'EISDIR')) return 'is a folder';
  return `unreadable (${(err as Error).message})`;
}
