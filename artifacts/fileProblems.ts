import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { isErrno, listFiles } from './fsutil.ts';
import { type Hashed, hashStream } from './hash.ts';
import type { Manifest, ManifestFile } from './manifest.ts';
import { safeRelPath } from './names.ts';
import { PARALLEL, forEachLimit } from './parallel.ts';

/**
 * The one rule for an artifact's files against its manifest, wherever they are (objects in a bucket,
 * a download in progress, a local copy): each present with its size and sha256, and nothing unlisted.
 * `hashOf` gives undefined for a missing file; `present` lists the paths there are, when known.
 */
export async function fileProblems(
  files: readonly ManifestFile[],
  hashOf: (f: ManifestFile) => Promise<Hashed | undefined>,
  present?: Iterable<string>,
): Promise<string[]> {
  const problems: string[] = [];
  await forEachLimit(files, PARALLEL, async (f) => {
    const got = await hashOf(f);
    if (!got) problems.push(`${f.path}: missing`);
    else if (got.bytes !== f.bytes) problems.push(`${f.path}: ${got.bytes} bytes, manifest says ${f.bytes}`);
    else if (got.sha256 !== f.sha256) problems.push(`${f.path}: sha256 mismatch`);
  });
  const listed = new Set(files.map((f) => f.path));
  for (const path of present ?? []) if (!listed.has(path)) problems.push(`${path}: not in the manifest`);
  return problems.sort();
}

/** Problems of a local folder of files against their manifest. */
export async function localProblems(dataDir: string, manifest: Manifest): Promise<string[]> {
  const present = await listFiles(dataDir).catch((err: unknown) => {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return [];
    throw err;
  });
  return fileProblems(manifest.files, (f) => hashFile(join(dataDir, safeRelPath(f.path))), present);
}

/** sha256 of a local file (copied to `dest` when given), or undefined when there is no such file. */
export async function hashFile(path: string, dest?: string): Promise<Hashed | undefined> {
  try {
    return await hashStream(createReadStream(path, { highWaterMark: 1 << 20 }), dest);
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR', 'EISDIR')) return undefined;
    throw err;
  }
}
