import { copyFile, lstat, readdir, realpath, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { ArtifactStore } from '../artifacts/store.ts';
import { CorpusEmptyError, CorpusPathError } from './errors.ts';
import { isErrno } from '../artifacts/fsutil.ts';

export interface SnapshotRequest {
  name: string;
  type: 'directory' | 'file';
  path: string;
}

export interface SnapshotResult {
  digest: string;
  files: number;
  bytes: number;
}

const IGNORED = new Set(['.git', '.svn', '.hg', 'node_modules', '.DS_Store', 'Thumbs.db', '.embedflow']);

/**
 * Copy a pipeline input (a corpus directory or a single file) into the store as a `files` artifact.
 * Its digest is a function of the content only, so an unchanged corpus gives the same digest and every
 * stage downstream is a cache hit; and workers on other hosts read it from the store, not the path.
 * Symbolic links are followed only when they stay inside the root; loops and escapes are refused.
 */
export async function snapshotInput(store: ArtifactStore, req: SnapshotRequest): Promise<SnapshotResult> {
  const root = await rootOf(req);
  const entries = req.type === 'file' ? [{ abs: root, rel: baseName(root) }] : await walk(root, req.name);
  const writer = await store.newWriter();
  let bytes = 0;
  try {
    for (const e of entries) {
      await copyFile(e.abs, await writer.file(e.rel));
      bytes += (await stat(e.abs)).size;
    }
  } catch (err) {
    await store.discard(writer);
    throw err;
  }
  const manifest = await store.publish(writer, {
    kind: 'files',
    meta: { input: req.name, type: req.type, source: req.path, files: entries.length },
  });
  return { digest: manifest.digest, files: entries.length, bytes };
}

async function rootOf(req: SnapshotRequest): Promise<string> {
  let st;
  try {
    st = await stat(req.path);
  } catch (err) {
    throw new CorpusPathError(`input "${req.name}": ${req.path} ${isErrno(err, 'ENOENT') ? 'does not exist' : 'cannot be read'}`, {
      where: req.path,
      hint: req.type === 'directory' ? `pass --input ${req.name}=DIR with an existing folder` : `pass an existing file`,
      cause: err,
    });
  }
  if (req.type === 'directory' && !st.isDirectory()) {
    throw new CorpusPathError(`input "${req.name}": ${req.path} is not a directory`, { where: req.path });
  }
  if (req.type === 'file' && !st.isFile()) {
    throw new CorpusPathError(`input "${req.name}": ${req.path} is not a file`, { where: req.path });
  }
  return realpath(req.path);
}

function baseName(p: string): string {
  return p.split(sep).pop() ?? p;
}

async function walk(root: string, name: string): Promise<Array<{ abs: string; rel: string }>> {
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
      throw new CorpusPathError(`input "${name}": cannot list ${relDir || '.'} (${(err as NodeJS.ErrnoException).code})`, {
        where: dir,
        hint: 'check the folder permissions',
      });
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
      else if (st.isFile()) out.push({ abs: target, rel });
    }
  };
  await visit(root, '');
  if (out.length === 0) {
    throw new CorpusEmptyError(`input "${name}": ${root} holds no files`, { where: root, hint: 'put the documents (.md .txt .html .pdf) in it' });
  }
  return out;
}
