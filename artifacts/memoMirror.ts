import { copyFile, link, mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ArtifactNotFoundError } from '../core/errors.ts';
import { exists, isErrno, randomId } from './fsutil.ts';
import { Memo } from './memo.ts';
import { PARALLEL, forEachLimit } from './parallel.ts';
import type { StoreBackend } from './storeBackend.ts';

/** What the mirror needs of a store whose memo segments are objects, not local files. */
type SegmentObjects = Pick<StoreBackend, 'location' | 'localRoot' | 'list' | 'download' | 'put'>;

/**
 * A Memo over a private local folder mirroring the namespace's segment objects. Each flush() uploads
 * what it appended as a new, immutable segment object (object stores have no append): re-uploading the
 * writer's whole segment every few items would cost quadratic traffic over a long stage, and immutable
 * objects are downloaded once per machine. reload() fetches segments it has not seen.
 */
export async function openMirroredMemo<V>(objects: SegmentObjects, ns: string): Promise<Memo<V>> {
  const dir = join(objects.localRoot, 'memo-open', `${Date.now()}-${randomId()}`);
  await mkdir(dir, { recursive: true });
  const mirror = new MemoMirror(objects, `memo/${ns}/`, dir, segmentCache(objects.localRoot, ns));
  try {
    await mirror.pull();
    return mirror.attach(await Memo.open<V>(dir));
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** After the namespace's objects are deleted: this machine's downloaded copies go too. */
export async function dropMirroredSegments(localRoot: string, ns: string): Promise<void> {
  const cache = segmentCache(localRoot, ns);
  for (const name of await readdir(cache).catch(() => [] as string[])) {
    if (name.endsWith('.jsonl')) await rm(join(cache, name), { force: true });
  }
}

/** Downloaded segments, shared by every Memo of the namespace on this machine. */
function segmentCache(localRoot: string, ns: string): string {
  return join(localRoot, 'memo', ns);
}

/**
 * Keeps a Memo's local folder in step with the namespace's objects. The folder is private to one
 * Memo: it holds links to the downloaded segments (a per-machine cache of immutable objects) and
 * the Memo's own append-only file, whose new bytes each flush uploads as the next numbered object.
 */
class MemoMirror {
  private readonly linked = new Set<string>();
  private own: string | undefined;
  private uploaded = 0;
  private seq = 0;
  private pushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly objects: SegmentObjects,
    private readonly prefix: string,
    private readonly dir: string,
    private readonly shared: string,
  ) {}

  /** Link every segment object not seen yet into the folder, downloading it once per machine. */
  async pull(): Promise<void> {
    const ownPrefix = this.own?.slice(0, -'.jsonl'.length);
    const names = (await this.objects.list(this.prefix, { shallow: true }))
      .map((o) => o.key.slice(this.prefix.length))
      .filter((n) => n.endsWith('.jsonl'));
    const fresh = names.filter((n) => !this.linked.has(n) && !(ownPrefix && n.startsWith(`${ownPrefix}-`)));
    await mkdir(this.shared, { recursive: true });
    await forEachLimit(fresh, PARALLEL, async (name) => {
      // Marked first: push() takes the one unmarked file in the folder for the Memo's own.
      this.linked.add(name);
      const cached = join(this.shared, name);
      if (!(await exists(cached))) {
        const tmp = `${cached}.tmp-${randomId()}`;
        try {
          if (!(await this.objects.download(this.prefix + name, tmp))) {
            throw new ArtifactNotFoundError(`memo segment ${name} vanished while being read`, {
              where: `${this.objects.location}/${this.prefix}`,
            });
          }
          await rename(tmp, cached);
        } finally {
          await rm(tmp, { force: true });
        }
      }
      await linkOrCopy(cached, join(this.dir, name));
    });
  }

  /** Upload what the Memo appended to its own file since the last push, as a new object. */
  push(): Promise<void> {
    this.pushing = this.pushing.then(async () => {
      this.own ??= (await readdir(this.dir)).find((n) => n.endsWith('.jsonl') && !this.linked.has(n));
      if (!this.own) return;
      const data = await readFrom(join(this.dir, this.own), this.uploaded);
      if (data.length === 0) return;
      // Every attempt takes a new number, so an object once written never changes.
      const name = `${this.own.slice(0, -'.jsonl'.length)}-${String(this.seq++).padStart(6, '0')}.jsonl`;
      await this.objects.put(this.prefix + name, data);
      this.uploaded += data.length;
    });
    return this.pushing;
  }

  /**
   * Memo's own methods do the local work; the mirror runs around them. (memo.ts has no hook for a
   * remote segment sink, so the instance's methods are wrapped here.)
   */
  attach<V>(memo: Memo<V>): Memo<V> {
    const flushLocal = memo.flush.bind(memo);
    const reloadLocal = memo.reload.bind(memo);
    const closeLocal = memo.close.bind(memo);
    memo.flush = async () => {
      await flushLocal();
      await this.push();
    };
    memo.reload = async () => {
      await this.pull();
      await reloadLocal();
    };
    memo.close = async () => {
      await closeLocal();
      // Everything is uploaded: the folder goes. A Memo used after close starts a new own file.
      await rm(this.dir, { recursive: true, force: true });
      this.linked.clear();
      this.own = undefined;
      this.uploaded = 0;
    };
    return memo;
  }
}

/** The bytes of a file from `offset` to its end. */
async function readFrom(path: string, offset: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const buf = Buffer.alloc(Math.max(0, size - offset));
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return;
    if (!isErrno(err, 'EXDEV', 'EPERM', 'ENOTSUP')) throw err;
    await copyFile(from, to);
  }
}
