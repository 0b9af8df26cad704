import type { BigIntStats } from 'node:fs';
import { link, mkdir, open, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { hashFile, localProblems } from './fileProblems.ts';
import { fsyncPath, isErrno, randomId, writeFileAtomic } from './fsutil.ts';
import type { Hashed } from './hash.ts';
import { type Manifest, manifestText } from './manifest.ts';
import { checkDigest } from './names.ts';
import { type Committed, type ListedObject, type PutCondition, PreconditionFailed, type StoreBackend, type StoredObject } from './storeBackend.ts';
import { StoreCore } from './storeCore.ts';

/**
 * The filesystem backend (a local disk or a shared one, e.g. NFS): every key is a file under the root,
 * and the root is also where writers stage, so publishing is a rename. What the filesystem lacks
 * (compare-and-swap on a file) is built from rename, which only one contender wins.
 */
class FsBackend implements StoreBackend {
  readonly localLabel: string;
  readonly sameTimeIsLater = true;

  constructor(readonly localRoot: string) {
    this.localLabel = `store ${localRoot}`;
  }

  get location(): string {
    return this.localRoot;
  }

  localPath(key: string): string {
    return join(this.localRoot, key);
  }

  private artifactDir(digest: string): string {
    return join(this.localRoot, 'artifacts', checkDigest(digest));
  }

  async get(key: string): Promise<StoredObject | undefined> {
    let fh;
    try {
      fh = await open(this.localPath(key), 'r');
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined;
      throw err;
    }
    try {
      // One handle for the bytes and their times: the same file even if it is replaced meanwhile.
      const [body, st] = await Promise.all([fh.readFile(), fh.stat({ bigint: true })]);
      return { body, modifiedMs: Number(st.mtimeNs / 1_000_000n), etag: etagOf(st) };
    } finally {
      await fh.close();
    }
  }

  async put(key: string, body: string | Buffer, condition?: PutCondition): Promise<void> {
    const path = this.localPath(key);
    if (!condition) return writeFileAtomic(path, body);
    // Written in full beside it first: the object is never seen half-written, and the moment an
    // If-Match put leaves it absent (between taking the old one aside and linking) is short.
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${randomId()}`;
    try {
      await writeFile(tmp, body, { flag: 'wx' });
      if ('ifMatch' in condition) await this.takeAside(key, condition.ifMatch);
      // link(), unlike rename(), fails when the name exists: the create-if-absent step. Where a
      // filesystem has no hard links, an exclusive create does it (a reader may then see it half-written).
      await link(tmp, path).catch(async (err: unknown) => {
        if (!isErrno(err, 'EPERM', 'ENOTSUP', 'EOPNOTSUPP')) throw err;
        await writeFile(path, body, { flag: 'wx' });
      });
    } catch (err) {
      if (isErrno(err, 'EEXIST')) throw new PreconditionFailed(key);
      throw err;
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) await rm(this.localPath(key), { force: true });
  }

  async deleteIfMatch(key: string, etag: string): Promise<void> {
    await this.takeAside(key, etag);
  }

  /**
   * Remove the file at `key` if it still has `etag`, else throw PreconditionFailed and leave it. The
   * rename makes the check and the removal one step: of two contenders only one gets the file aside.
   */
  private async takeAside(key: string, etag: string): Promise<void> {
    const path = this.localPath(key);
    const aside = `${path}.aside-${randomId(3)}`;
    try {
      await rename(path, aside);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) throw new PreconditionFailed(key);
      throw err;
    }
    const st = await stat(aside, { bigint: true });
    if (etagOf(st) !== etag) {
      // Rewritten since it was read: put it back unless someone has created a new one meanwhile.
      await link(aside, path).catch((err: unknown) => {
        if (!isErrno(err, 'EEXIST')) throw err;
      });
      await rm(aside, { force: true });
      throw new PreconditionFailed(key);
    }
    await rm(aside, { force: true });
  }

  async list(prefix: string, opts: { shallow?: boolean } = {}): Promise<ListedObject[]> {
    const folder = prefix.slice(0, prefix.lastIndexOf('/') + 1);
    const start = prefix.slice(folder.length);
    const out: ListedObject[] = [];
    const walk = async (rel: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(join(this.localRoot, rel), { withFileTypes: true });
      } catch (err) {
        // Gone meanwhile (published, quarantined, deleted): nothing to list there.
        if (isErrno(err, 'ENOENT', 'ENOTDIR')) return;
        throw err;
      }
      for (const e of entries) {
        if (rel === folder && !e.name.startsWith(start)) continue;
        const key = rel + e.name;
        if (e.isDirectory()) {
          if (!opts.shallow) await walk(`${key}/`);
        } else if (e.isFile()) {
          const st = await stat(join(this.localRoot, key)).catch(() => undefined);
          if (st) out.push({ key, size: st.size, modifiedMs: st.mtimeMs });
        }
      }
    };
    await walk(folder);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  download(key: string, dest?: string): Promise<Hashed | undefined> {
    return hashFile(this.localPath(key), dest);
  }

  /** fsync everything, then one rename: after a crash the artifact is either whole or absent. */
  async commit(staging: string, manifest: Manifest): Promise<Committed> {
    const dataDir = join(staging, 'data');
    for (const f of manifest.files) await fsyncPath(join(dataDir, f.path));
    await writeFileAtomic(join(staging, 'manifest.json'), manifestText(manifest));
    for (const d of await dirsBelow(dataDir)) await fsyncPath(d);
    await fsyncPath(staging);
    const target = this.artifactDir(manifest.digest);
    await mkdir(dirname(target), { recursive: true });
    try {
      await rename(staging, target);
    } catch (err) {
      if (isErrno(err, 'EEXIST', 'ENOTEMPTY', 'ENOTDIR')) return 'taken';
      throw err;
    }
    await fsyncPath(dirname(target));
    return 'kept';
  }

  /** The published files are the only copy: the staged twin goes. */
  async adopt(staging: string): Promise<boolean> {
    await rm(staging, { recursive: true, force: true });
    return false;
  }

  /** The store's own files, checked in place. */
  async materialise(digest: string, manifest: Manifest, trusted: boolean): Promise<{ dir: string; problems: string[] }> {
    const dir = join(this.artifactDir(digest), 'data');
    return { dir, problems: trusted ? [] : await localProblems(dir, manifest) };
  }

  /** Renamed away first, so a reader never sees a half-deleted artifact. */
  async withdraw(digest: string, keepAs?: string): Promise<void> {
    const to = keepAs ? this.localPath(keepAs) : join(this.localRoot, 'tmp', `del-${digest}-${randomId(3)}`);
    await mkdir(dirname(to), { recursive: true });
    try {
      await rename(this.artifactDir(digest), to);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      throw err;
    }
    if (!keepAs) await rm(to, { recursive: true, force: true });
  }
}

/** Local (or shared, e.g. NFS) filesystem store. */
export class LocalStore extends StoreCore {
  readonly root: string;

  constructor(root: string) {
    const backend = new FsBackend(resolve(root));
    super(backend);
    this.root = backend.localRoot;
  }
}

export function openLocalStore(root: string): LocalStore {
  return new LocalStore(root);
}

/** Changes with any rewrite: a new file (inode), new bytes (time) or a new length. */
function etagOf(st: BigIntStats): string {
  return `${st.ino}-${st.mtimeNs}-${st.size}`;
}

async function dirsBelow(dir: string): Promise<string[]> {
  const out = [dir];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) out.push(...(await dirsBelow(join(dir, entry.name))));
  }
  return out;
}
