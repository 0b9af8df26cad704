import { copyFile, lstat, readdir, realpath, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { ArtifactStore } from '../artifacts/store.ts';
import { CorpusEmptyError, CorpusPathError } from '../core/errors.ts';
import { isErrno } from '../artifacts/fsutil.ts';
import { byPath, readError, type Skipped, skippedText } from '../activities/ingest/corpus.ts';
import { globMatcher, isGlob, splitGlob } from '../activities/ingest/glob.ts';

export interface SnapshotRequest {
  name: string;
  type: 'directory' | 'file';
  path: string;
}

export interface SnapshotResult {
  digest: string;
  files: number;
  bytes: number;
  /** Files and folders that could not be read (permissions...), with the reason; ingest lists them too. */
  skipped: Skipped[];
}

const IGNORED = new Set(['.git', '.svn', '.hg', 'node_modules', '.DS_Store', 'Thumbs.db', '.embedflow']);

/**
 * Copy a pipeline input (a corpus directory, a glob such as `docs/*.md`, or a single file) into the
 * store as a `files` artifact. Its digest is a function of the content only, so an unchanged corpus
 * gives the same digest and every stage downstream is a cache hit; and workers on other hosts read it
 * from the store, not the path. Symbolic links are followed only when they stay inside the root; loops
 * and escapes are refused. A file or folder the process may not read is left out and listed in
 * `meta.skipped` (the ingest stage reports it with the files it cannot parse), not a failed run.
 */
export async function snapshotInput(store: ArtifactStore, req: SnapshotRequest): Promise<SnapshotResult> {
  const { root, pattern } = await rootOf(req);
  const skipped: Skipped[] = [];
  const entries =
    req.type === 'file' ? [{ abs: root, rel: baseName(root) }] : await walk(root, req.name, skipped, pattern ? globMatcher(pattern) : undefined);
  const writer = await store.newWriter();
  let bytes = 0;
  let copied = 0;
  try {
    for (const e of entries) {
      try {
        await copyFile(e.abs, await writer.file(e.rel));
      } catch (err) {
        if (req.type === 'file' || !isErrno(err, 'EACCES', 'EPERM')) throw err;
        skipped.push({ path: e.rel, reason: readError(err) });
        continue;
      }
      copied++;
      bytes += (await stat(e.abs)).size;
    }
    if (copied === 0 && req.type === 'directory') throw emptyCorpus(req, root, pattern, skipped);
  } catch (err) {
    await store.discard(writer);
    if (req.type === 'file' && isErrno(err, 'EACCES', 'EPERM')) {
      throw new CorpusPathError(`input "${req.name}": ${req.path}: ${readError(err)}`, { where: req.path, cause: err });
    }
    throw err;
  }
  skipped.sort(byPath);
  const manifest = await store.publish(writer, {
    kind: 'files',
    meta: { input: req.name, type: req.type, source: req.path, files: copied, ...(pattern ? { glob: pattern } : {}), skipped },
  });
  return { digest: manifest.digest, files: copied, bytes, skipped };
}

function emptyCorpus(req: SnapshotRequest, root: string, pattern: string | undefined, skipped: Skipped[]): CorpusEmptyError {
  if (skipped.length > 0) {
    return new CorpusEmptyError(
      `input "${req.name}": no file in ${root} could be read (${skippedText(skipped)})`,
      { where: root, hint: 'make the documents readable by the user the worker runs as' },
    );
  }
  return pattern
    ? new CorpusEmptyError(`input "${req.name}": no file under ${root} matches ${pattern}`, {
        where: req.path,
        hint: 'check the pattern (quote it so the shell does not expand it): * and ? stay within a folder, ** spans folders',
      })
    : new CorpusEmptyError(`input "${req.name}": ${root} holds no files`, { where: root, hint: 'put the documents (.md .txt .html .pdf) in it' });
}

async function rootOf(req: SnapshotRequest): Promise<{ root: string; pattern?: string }> {
  let st;
  try {
    st = await stat(req.path);
  } catch (err) {
    // A path that exists is taken literally, even with brackets in its name; one that does not may be a glob.
    if (req.type === 'directory' && isErrno(err, 'ENOENT') && isGlob(req.path)) {
      const { base, pattern } = splitGlob(req.path);
      const root = await rootOf({ ...req, path: base });
      return { root: root.root, pattern };
    }
    throw new CorpusPathError(`input "${req.name}": ${req.path} ${isErrno(err, 'ENOENT') ? 'does not exist' : 'cannot be read'}`, {
      where: req.path,
      hint: req.type === 'directory' ? `pass --input ${req.name}=DIR with an existing folder (or a glob such as 'DIR/**/*.md')` : `pass an existing file`,
      cause: err,
    });
  }
  if (req.type === 'directory' && !st.isDirectory()) {
    throw new CorpusPathError(`input "${req.name}": ${req.path} is not a directory`, { where: req.path });
  }
  if (req.type === 'file' && !st.isFile()) {
    throw new CorpusPathError(`input "${req.name}": ${req.path} is not a file`, { where: req.path });
  }
  return { root: await realpath(req.path) };
}

function baseName(p: string): string {
  return p.split(sep).pop() ?? p;
}

async function walk(
  root: string,
  name: string,
  skipped: Skipped[],
  selected?: (rel: string) => boolean,
): Promise<Array<{ abs: string; rel: string }>> {
  const out: Array<{ abs: string; rel: string }> = [];
  const visitedDirs = new Set<string>();
  const visit = async (dir: string, relDir: string): Promise<void> => {
    const real = await realpath(dir);
    if (visitedDirs.has(real)) {
      throw new CorpusPathError(`input "${name}": symbolic link loop at ${relDir || '.'}`, {
        where: dir,
        hint: 'remove the link that points back into its own parent',
      });
    }
    visitedDirs.add(real);
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch (err) {
      if (!isErrno(err, 'EACCES', 'EPERM')) throw err;
      skipped.push({ path: relDir || '.', reason: 'permission denied on the folder (make it readable by the worker)' });
      return;
    }
    for (const entry of names) {
      if (IGNORED.has(entry)) continue;
      const abs = join(dir, entry);
      const rel = relDir ? `${relDir}/${entry}` : entry;
      const l = await lstat(abs);
      let target = abs;
      if (l.isSymbolicLink()) {
        let resolved: string;
        try {
          resolved = await realpath(abs);
        } catch (err) {
          const loop = isErrno(err, 'ELOOP');
          throw new CorpusPathError(`input "${name}": ${loop ? 'symbolic link loop' : 'broken symbolic link'} at ${rel}`, {
            where: abs,
            hint: 'remove or fix the link',
          });
        }
        const inside = relative(root, resolved);
        if (inside.startsWith('..') || inside === '' || inside.startsWith(sep)) {
          throw new CorpusPathError(`input "${name}": ${rel} is a symbolic link that leaves the corpus (→ ${resolved})`, {
            where: abs,
            hint: 'copy the file into the corpus folder instead of linking to it',
          });
        }
        target = resolved;
      }
      const st = await stat(target);
      if (st.isDirectory()) await visit(target, rel);
      else if (st.isFile() && (!selected || selected(rel))) out.push({ abs: target, rel });
    }
  };
  await visit(root, '');
  return out;
}
