import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FileHashCache } from '../../artifacts/fileHashCache.ts';
import { hashJson, sha256File } from '../../artifacts/hash.ts';

/**
 * A content fingerprint of a model directory: every file's relative path and sha256. Symbolic links
 * are followed (a Hugging Face cache snapshot is made of links into its blob store); VCS folders are
 * skipped. Two directories with the same files have the same fingerprint wherever they live. With a
 * `cache`, files unchanged since they were last hashed are not read again.
 */
export async function fingerprintDir(dir: string, cache?: FileHashCache): Promise<{ fingerprint: string; files: number; bytes: number }> {
  const entries: Array<[string, string]> = [];
  let bytes = 0;
  async function walk(abs: string, rel: string): Promise<void> {
    for (const name of (await readdir(abs)).sort()) {
      if (name === '.git' || name === '.cache') continue;
      const path = join(abs, name);
      const relPath = rel ? `${rel}/${name}` : name;
      const st = await stat(path);
      if (st.isDirectory()) await walk(path, relPath);
      else if (st.isFile()) {
        const h = cache ? await cache.sha256(path) : await sha256File(path);
        entries.push([relPath, h.sha256]);
        bytes += h.bytes;
      }
    }
  }
  await walk(dir, '');
  await cache?.save();
  return { fingerprint: hashJson(entries), files: entries.length, bytes };
}
