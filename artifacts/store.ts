import { mkdir, open, readFile, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, resolve } from 'node:path';
import {
  ArtifactCorruptError,
  ArtifactNotFoundError,
  StorePathError,
} from '../activities/errors.ts';
import { asDiskFull, exists, fsyncPath, isErrno, listFiles, randomId, writeFileAtomic } from './fsutil.ts';
import { canonicalJson, hashJson, sha256File } from './hash.ts';
import { DIGEST_RE, Lineage, Manifest, type ManifestFile } from './manifest.ts';
import { Memo } from './memo.ts';

/** A place to write an artifact's files before it is published. Nothing here is visible to readers. */
export interface ArtifactWriter {
  /** Local directory the stage writes its files into. */
  readonly dir: string;
  /** Absolute path for a file of the artifact (parent directories created). */
  file(relPath: string): Promise<string>;
}

/** A published, verified artifact, readable from a local directory. */
export interface ArtifactReader {
  readonly digest: string;
  readonly manifest: Manifest;
  /** Local directory holding the artifact's files. */
  readonly dir: string;
  /** Absolute path of one of its files; throws if the manifest does not list it. */
  file(relPath: string): string;
}

export interface PublishOptions {
  kind: string;
  lineage?: Partial<Lineage>;
  rows?: Record<string, number>;
  meta?: Record<string, unknown>;
}

export interface VerifyResult {
  digest: string;
  ok: boolean;
  problems: string[];
}

/**
 * The content-addressed artifact store. Both backends (local/shared filesystem, S3) expose local
 * directories to stages: the S3 backend stages through a local cache.
 */
export interface ArtifactStore {
  /** Human-readable location, e.g. a path or s3://bucket/prefix. */
  readonly location: string;
  newWriter(): Promise<ArtifactWriter>;
  /** Hash, fsync and atomically publish the writer's files. Idempotent per content. */
  publish(writer: ArtifactWriter, opts: PublishOptions): Promise<Manifest>;
  discard(writer: ArtifactWriter): Promise<void>;
  /** Open a published artifact, verifying its files against the manifest once per process. */
  open(digest: string): Promise<ArtifactReader>;
  has(digest: string): Promise<boolean>;
  readManifest(digest: string): Promise<Manifest>;
  verify(digest: string): Promise<VerifyResult>;
  /**
   * Cheap check for cache hits: every file present with its manifest size and not modified since
   * publishing (else a full verify). Full hashing happens when an artifact is opened as an input.
   */
  quickVerify(digest: string): Promise<VerifyResult>;
  /** Move a corrupt artifact out of the way so it is rebuilt, not reused. */
  quarantine(digest: string): Promise<void>;
  /**
   * Whether `digest` was ever quarantined, with its newest quarantined manifest when that is readable:
   * a stage whose input has vanished can then say it was found corrupt rather than just missing.
   */
  quarantined(digest: string): Promise<{ manifest?: Manifest } | undefined>;
  listArtifacts(): Promise<string[]>;
  getCache(key: string): Promise<string | undefined>;
  putCache(key: string, digest: string, info?: Record<string, unknown>): Promise<void>;
  dropCache(key: string): Promise<void>;
  listCache(): Promise<Array<{ key: string; digest: string }>>;
  /** Per-item memo (append-only segments) for one namespace, e.g. `llm/<hash of prompt+model>`. */
  memo<V>(namespace: string): Promise<Memo<V>>;
  /** A persistent scratch directory for one cache key: checkpoints survive retries and resumes. */
  workDir(key: string): Promise<string>;
  removeWorkDir(key: string): Promise<void>;
  /**
   * Take the lease on computing one cache key, so concurrent runs that need the same stage compute it
   * once. Returns false while another live owner holds it. A lease not renewed within `ttlMs` is stale
   * and taken over; so is one held by an earlier attempt of the same `group` (a retried activity).
   */
  acquireLease(key: string, owner: { id: string; group: string }, ttlMs: number): Promise<boolean>;
  renewLease(key: string, ownerId: string): Promise<void>;
  releaseLease(key: string, ownerId: string): Promise<void>;
  /** Remove an artifact (gc). Returns the bytes freed. */
  deleteArtifact(digest: string): Promise<number>;
  /** Every memo namespace with its size. */
  listMemo(): Promise<Array<{ namespace: string; bytes: number }>>;
  deleteMemo(namespace: string): Promise<void>;
  /** Staging folders left behind by crashed writers, older than `olderThanMs`. */
  listStale(olderThanMs: number): Promise<string[]>;
  removeStale(olderThanMs: number): Promise<number>;
  /** Small JSON documents beside the artifacts (run records, schedules). */
  putDoc(name: string, value: unknown): Promise<void>;
  getDoc<T = unknown>(name: string): Promise<T | undefined>;
  listDocs(prefix: string): Promise<string[]>;
  deleteDoc(name: string): Promise<void>;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

/** Refuse names that could escape the store root (`..`, absolute paths, odd characters). */
export function safeName(name: string, what: string): string {
  if (!NAME_RE.test(name) || name.includes('..')) {
    throw new StorePathError(`invalid ${what} ${JSON.stringify(name)}`, {
      hint: `${what} names use letters, digits, '.', '_' and '-' only`,
    });
  }
  return name;
}

/** A namespace is a few safe names joined by '/'. */
export function safeNamespace(ns: string, what = 'namespace'): string {
  const parts = ns.split('/');
  if (parts.length === 0 || parts.length > 4) throw new StorePathError(`invalid ${what} ${JSON.stringify(ns)}`);
  parts.forEach((p) => safeName(p, what));
  return parts.join('/');
}

export function safeRelPath(rel: string): string {
  const n = normalize(rel).split('\\').join('/');
  if (rel === '' || isAbsolute(rel) || n.startsWith('../') || n === '..' || n.includes('/../') || rel.includes('\0')) {
    throw new StorePathError(`artifact file path ${JSON.stringify(rel)} escapes the artifact`, {
      hint: 'use a relative path inside the artifact',
    });
  }
  return n;
}

/** The newest of `names` (quarantine folders, `<digest>-<ms>-<id>`) holding `digest`. */
export function newestQuarantined(names: string[], digest: string): string | undefined {
  const prefix = `${checkDigest(digest)}-`;
  const ms = (name: string) => Number(name.slice(prefix.length).split('-')[0]);
  return names.filter((n) => n.startsWith(prefix)).sort((a, b) => ms(b) - ms(a))[0];
}

/** A quarantined copy's manifest if it parses (an unreadable manifest may be why it was quarantined). */
export function parseManifestOrUndefined(text: string): Manifest | undefined {
  try {
    return Manifest.parse(JSON.parse(text));
  } catch {
    return undefined;
  }
}

export function checkDigest(digest: string): string {
  if (!DIGEST_RE.test(digest)) {
    throw new StorePathError(`${JSON.stringify(digest)} is not an artifact digest`, {
      hint: 'digests are 64 hex characters, as printed by `embedflow status` or `embedflow artifacts`',
    });
  }
  return digest;
}

export function contentDigest(kind: string, files: ManifestFile[]): string {
  return hashJson({ kind, files: files.map((f) => [f.path, f.sha256]).sort() });
}

/** Local (or shared, e.g. NFS) filesystem backend. */
export class LocalStore implements ArtifactStore {
  readonly root: string;
  private readonly verified = new Set<string>();

  constructor(root: string) {
    this.root = resolve(root);
  }

  get location(): string {
    return this.root;
  }

  private artifactDir(digest: string): string {
    return join(this.root, 'artifacts', checkDigest(digest));
  }

  async newWriter(): Promise<ArtifactWriter> {
    const dir = join(this.root, 'tmp', `w-${Date.now()}-${randomId()}`);
    const dataDir = join(dir, 'data');
    await mkdir(dataDir, { recursive: true });
    return {
      dir: dataDir,
      async file(rel: string) {
        const p = join(dataDir, safeRelPath(rel));
        await mkdir(dirname(p), { recursive: true });
        return p;
      },
    };
  }

  async discard(writer: ArtifactWriter): Promise<void> {
    await rm(dirname(writer.dir), { recursive: true, force: true });
  }

  async publish(writer: ArtifactWriter, opts: PublishOptions): Promise<Manifest> {
    const staging = dirname(writer.dir);
    try {
      const files: ManifestFile[] = [];
      for (const rel of await listFiles(writer.dir)) {
        const abs = join(writer.dir, rel);
        const { sha256, bytes } = await sha256File(abs);
        await fsyncPath(abs);
        files.push({ path: rel, sha256, bytes });
      }
      const digest = contentDigest(opts.kind, files);
      const manifest = Manifest.parse({
        formatVersion: 1,
        kind: opts.kind,
        digest,
        files,
        rows: opts.rows ?? {},
        meta: opts.meta ?? {},
        lineage: { inputs: {}, ...opts.lineage },
        createdAt: new Date().toISOString(),
      });
      await writeFileAtomic(join(staging, 'manifest.json'), JSON.stringify(manifest, null, 2));
      for (const d of await dirsBelow(writer.dir)) await fsyncPath(d);
      await fsyncPath(staging);
      const target = this.artifactDir(digest);
      await mkdir(dirname(target), { recursive: true });
      for (let attempt = 0; ; attempt++) {
        try {
          await rename(staging, target);
          await fsyncPath(dirname(target));
          this.verified.add(digest);
          return manifest;
        } catch (err) {
          if (!isErrno(err, 'EEXIST', 'ENOTEMPTY', 'ENOTDIR') || attempt > 2) throw err;
          // Someone published the same content first. Keep theirs if it is intact.
          const existing = await this.verify(digest);
          if (existing.ok) {
            await rm(staging, { recursive: true, force: true });
            this.verified.add(digest);
            return this.readManifest(digest);
          }
          await this.quarantine(digest);
        }
      }
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      throw asDiskFull(err, `store ${this.root}`);
    }
  }

  async has(digest: string): Promise<boolean> {
    return exists(join(this.artifactDir(digest), 'manifest.json'));
  }

  async readManifest(digest: string): Promise<Manifest> {
    const path = join(this.artifactDir(digest), 'manifest.json');
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) {
        throw new ArtifactNotFoundError(`artifact ${digest} is not in the store`, { where: this.root });
      }
      throw err;
    }
    try {
      return Manifest.parse(JSON.parse(text));
    } catch (err) {
      throw new ArtifactCorruptError(`manifest of artifact ${digest} is unreadable`, { where: path, cause: err });
    }
  }

  async verify(digest: string): Promise<VerifyResult> {
    const problems: string[] = [];
    let manifest: Manifest;
    try {
      manifest = await this.readManifest(digest);
    } catch (err) {
      return { digest, ok: false, problems: [(err as Error).message] };
    }
    if (manifest.digest !== digest) problems.push(`manifest names digest ${manifest.digest}`);
    if (contentDigest(manifest.kind, manifest.files) !== digest) problems.push('file list does not hash to the digest');
    const dataDir = join(this.artifactDir(digest), 'data');
    for (const f of manifest.files) {
      try {
        const { sha256, bytes } = await sha256File(join(dataDir, safeRelPath(f.path)));
        if (bytes !== f.bytes) problems.push(`${f.path}: ${bytes} bytes, manifest says ${f.bytes}`);
        else if (sha256 !== f.sha256) problems.push(`${f.path}: sha256 mismatch`);
      } catch (err) {
        problems.push(`${f.path}: ${isErrno(err, 'ENOENT') ? 'missing' : (err as Error).message}`);
      }
    }
    const listed = new Set(manifest.files.map((f) => f.path));
    if (await exists(dataDir)) {
      for (const rel of await listFiles(dataDir)) if (!listed.has(rel)) problems.push(`${rel}: not in the manifest`);
    }
    return { digest, ok: problems.length === 0, problems };
  }

  async quickVerify(digest: string): Promise<VerifyResult> {
    let manifest: Manifest;
    let publishedMs: number;
    try {
      manifest = await this.readManifest(digest);
      publishedMs = (await stat(join(this.artifactDir(digest), 'manifest.json'))).mtimeMs;
    } catch (err) {
      return { digest, ok: false, problems: [(err as Error).message] };
    }
    const dataDir = join(this.artifactDir(digest), 'data');
    for (const f of manifest.files) {
      try {
        const st = await stat(join(dataDir, safeRelPath(f.path)));
        if (st.size !== f.bytes) return { digest, ok: false, problems: [`${f.path}: ${st.size} bytes, manifest says ${f.bytes}`] };
        // Equal counts as later: file times tick in coarse steps (a jiffy), so a write just after
        // publishing can carry the manifest's own time. Files written before it rarely share it.
        if (st.mtimeMs >= publishedMs) return this.verify(digest);
      } catch {
        return { digest, ok: false, problems: [`${f.path}: missing`] };
      }
    }
    return { digest, ok: true, problems: [] };
  }

  async open(digest: string): Promise<ArtifactReader> {
    const manifest = await this.readManifest(digest);
    if (!this.verified.has(digest)) {
      const result = await this.verify(digest);
      if (!result.ok) {
        throw new ArtifactCorruptError(`artifact ${digest} (${manifest.kind}) is corrupt: ${result.problems.join('; ')}`, {
          where: this.artifactDir(digest),
          hint: 'it will be rebuilt on the next run; `embedflow store verify` lists every corrupt artifact',
        });
      }
      this.verified.add(digest);
    }
    const dir = join(this.artifactDir(digest), 'data');
    const listed = new Set(manifest.files.map((f) => f.path));
    return {
      digest,
      manifest,
      dir,
      file(rel: string) {
        const p = safeRelPath(rel);
        if (!listed.has(p)) {
          throw new ArtifactNotFoundError(`artifact ${digest} (${manifest.kind}) has no file ${p}`, {
            hint: `it has: ${[...listed].slice(0, 10).join(', ')}`,
          });
        }
        return join(dir, p);
      },
    };
  }

  async quarantine(digest: string): Promise<void> {
    this.verified.delete(digest);
    const from = this.artifactDir(digest);
    const to = join(this.root, 'quarantine', `${digest}-${Date.now()}-${randomId(3)}`);
    await mkdir(dirname(to), { recursive: true });
    try {
      await rename(from, to);
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
  }

  async quarantined(digest: string): Promise<{ manifest?: Manifest } | undefined> {
    const dir = join(this.root, 'quarantine');
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
    const latest = newestQuarantined(names, digest);
    if (latest === undefined) return undefined;
    return { manifest: parseManifestOrUndefined(await readFile(join(dir, latest, 'manifest.json'), 'utf8').catch(() => '')) };
  }

  async listArtifacts(): Promise<string[]> {
    try {
      return (await readdir(join(this.root, 'artifacts'))).filter((d) => DIGEST_RE.test(d)).sort();
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return [];
      throw err;
    }
  }

  private cachePath(key: string): string {
    return join(this.root, 'cache', `${safeName(key, 'cache key')}.json`);
  }

  async getCache(key: string): Promise<string | undefined> {
    try {
      const entry = JSON.parse(await readFile(this.cachePath(key), 'utf8')) as { digest?: unknown };
      return typeof entry.digest === 'string' && DIGEST_RE.test(entry.digest) ? entry.digest : undefined;
    } catch (err) {
      if (isErrno(err, 'ENOENT') || err instanceof SyntaxError) return undefined;
      throw err;
    }
  }

  async putCache(key: string, digest: string, info: Record<string, unknown> = {}): Promise<void> {
    await writeFileAtomic(
      this.cachePath(key),
      canonicalJson({ ...info, key, digest: checkDigest(digest), at: new Date().toISOString() }),
    );
  }

  async dropCache(key: string): Promise<void> {
    await rm(this.cachePath(key), { force: true });
  }

  async listCache(): Promise<Array<{ key: string; digest: string }>> {
    let names: string[];
    try {
      names = await readdir(join(this.root, 'cache'));
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return [];
      throw err;
    }
    const out: Array<{ key: string; digest: string }> = [];
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      const key = name.slice(0, -5);
      const digest = await this.getCache(key);
      if (digest) out.push({ key, digest });
    }
    return out;
  }

  async memo<V>(namespace: string): Promise<Memo<V>> {
    return Memo.open<V>(join(this.root, 'memo', safeNamespace(namespace)));
  }

  async workDir(key: string): Promise<string> {
    const dir = join(this.root, 'work', safeName(key, 'work key'));
    await mkdir(dir, { recursive: true });
    return dir;
  }

  async removeWorkDir(key: string): Promise<void> {
    await rm(join(this.root, 'work', safeName(key, 'work key')), { recursive: true, force: true });
  }

  private leasePath(key: string): string {
    return join(this.root, 'locks', `${safeName(key, 'lease key')}.lock`);
  }

  async acquireLease(key: string, owner: { id: string; group: string }, ttlMs: number): Promise<boolean> {
    const path = this.leasePath(key);
    await mkdir(dirname(path), { recursive: true });
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fh = await open(path, 'wx');
        await fh.writeFile(JSON.stringify({ ...owner, pid: process.pid, at: new Date().toISOString() }));
        await fh.close();
        return true;
      } catch (err) {
        if (!isErrno(err, 'EEXIST')) throw err;
      }
      let held: { id?: string; group?: string } = {};
      let mtimeMs = 0;
      try {
        held = JSON.parse(await readFile(path, 'utf8')) as typeof held;
        mtimeMs = (await stat(path)).mtimeMs;
      } catch {
        continue; // released (or half-written) meanwhile: try again
      }
      const stale = Date.now() - mtimeMs > ttlMs || held.group === owner.group;
      if (!stale) return false;
      // Take over atomically: only one contender's rename succeeds.
      const aside = `${path}.stale-${randomId(3)}`;
      try {
        await rename(path, aside);
        await rm(aside, { force: true });
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
    }
    return false;
  }

  async renewLease(key: string, ownerId: string): Promise<void> {
    const path = this.leasePath(key);
    try {
      const held = JSON.parse(await readFile(path, 'utf8')) as { id?: string };
      if (held.id === ownerId) await utimes(path, new Date(), new Date());
    } catch {
      // Lost or released: the publish is atomic either way.
    }
  }

  async releaseLease(key: string, ownerId: string): Promise<void> {
    const path = this.leasePath(key);
    try {
      const held = JSON.parse(await readFile(path, 'utf8')) as { id?: string };
      if (held.id === ownerId) await rm(path, { force: true });
    } catch {
      // Already gone.
    }
  }

  async deleteArtifact(digest: string): Promise<number> {
    let bytes = 0;
    try {
      bytes = (await this.readManifest(digest)).files.reduce((n, f) => n + f.bytes, 0);
    } catch {
      // A broken artifact is deleted all the same.
    }
    this.verified.delete(digest);
    // Rename first so a reader never sees a half-deleted artifact.
    const doomed = join(this.root, 'tmp', `del-${digest}-${randomId(3)}`);
    await mkdir(dirname(doomed), { recursive: true });
    try {
      await rename(this.artifactDir(digest), doomed);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return 0;
      throw err;
    }
    await rm(doomed, { recursive: true, force: true });
    return bytes;
  }

  async listMemo(): Promise<Array<{ namespace: string; bytes: number }>> {
    const base = join(this.root, 'memo');
    const out: Array<{ namespace: string; bytes: number }> = [];
    const walk = async (dir: string, parts: string[]): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (isErrno(err, 'ENOENT')) return;
        throw err;
      }
      let bytes = 0;
      let segments = 0;
      for (const e of entries) {
        if (e.isDirectory()) await walk(join(dir, e.name), [...parts, e.name]);
        else if (e.name.endsWith('.jsonl')) {
          segments++;
          bytes += (await stat(join(dir, e.name))).size;
        }
      }
      if (segments) out.push({ namespace: parts.join('/'), bytes });
    };
    await walk(base, []);
    return out.sort((a, b) => a.namespace.localeCompare(b.namespace));
  }

  async deleteMemo(namespace: string): Promise<void> {
    const dir = join(this.root, 'memo', safeNamespace(namespace));
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (name.endsWith('.jsonl')) await rm(join(dir, name), { force: true });
    }
  }

  async listStale(olderThanMs: number): Promise<string[]> {
    return untouchedSince(join(this.root, 'tmp'), Date.now() - olderThanMs);
  }

  async removeStale(olderThanMs: number): Promise<number> {
    const stale = await this.listStale(olderThanMs);
    for (const p of stale) await rm(p, { recursive: true, force: true });
    return stale.length;
  }

  private docPath(name: string): string {
    return join(this.root, 'docs', `${safeNamespace(name, 'document name')}.json`);
  }

  async putDoc(name: string, value: unknown): Promise<void> {
    await writeFileAtomic(this.docPath(name), JSON.stringify(value, null, 2));
  }

  async getDoc<T = unknown>(name: string): Promise<T | undefined> {
    try {
      return JSON.parse(await readFile(this.docPath(name), 'utf8')) as T;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
  }

  async deleteDoc(name: string): Promise<void> {
    await rm(this.docPath(name), { force: true });
  }

  async listDocs(prefix: string): Promise<string[]> {
    const dir = join(this.root, 'docs', safeNamespace(prefix, 'document prefix'));
    try {
      return (await readdir(dir)).filter((n) => n.endsWith('.json')).map((n) => `${prefix}/${n.slice(0, -5)}`);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return [];
      throw err;
    }
  }
}

/**
 * The folders in `dir` with nothing in them modified since `cutoff`. A folder's own mtime is set when
 * its writer starts and changes only when entries are added to it directly, so a writer busy for
 * hours below it would look dead; the stage runner also touches a writer's folder while it runs,
 * for stages that write their output only at the end (training).
 */
export async function untouchedSince(dir: string, cutoff: number): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!(await touchedSince(join(dir, name), cutoff))) out.push(join(dir, name));
  }
  return out;
}

/** Whether `path` or anything below it was modified since `cutoff`; stops at the first that was. */
async function touchedSince(path: string, cutoff: number): Promise<boolean> {
  const st = await stat(path).catch(() => undefined);
  // Gone meanwhile (published or discarded): nothing left to remove.
  if (!st) return true;
  if (st.mtimeMs >= cutoff) return true;
  if (!st.isDirectory()) return false;
  for (const name of await readdir(path).catch(() => [] as string[])) {
    if (await touchedSince(join(path, name), cutoff)) return true;
  }
  return false;
}

async function dirsBelow(dir: string): Promise<string[]> {
  const out = [dir];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) out.push(...(await dirsBelow(join(dir, entry.name))));
  }
  return out;
}

/** Opens a store from a URL or path: `s3://bucket/prefix` or a filesystem path. */
export type StoreFactory = (url: string) => ArtifactStore;

export function openLocalStore(root: string): LocalStore {
  return new LocalStore(root);
}
