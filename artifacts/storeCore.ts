import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { ArtifactCorruptError, ArtifactNotFoundError, StoreUnavailableError } from '../core/errors.ts';
import { fileProblems } from './fileProblems.ts';
import { asDiskFull, listFiles, randomId, untouchedSince } from './fsutil.ts';
import { canonicalJson, sha256File } from './hash.ts';
import { DIGEST_RE, Digest, Manifest, type ManifestFile, contentDigest, parseManifestOrUndefined } from './manifest.ts';
import { Memo } from './memo.ts';
import { dropMirroredSegments, openMirroredMemo } from './memoMirror.ts';
import { checkDigest, safeName, safeNamespace, safeRelPath } from './names.ts';
import { PARALLEL, forEachLimit } from './parallel.ts';
import type { ArtifactReader, ArtifactStore, ArtifactWriter, PublishOptions, VerifyResult } from './store.ts';
import { type ListedObject, type PutCondition, PreconditionFailed, type StoreBackend } from './storeBackend.ts';

const CacheEntry = z.object({ digest: Digest });
const LeaseBody = z.object({ id: z.string().optional(), group: z.string().optional() });

/** How often publish() meets another publisher's manifest for the same digest before it gives up. */
const PUBLISH_ATTEMPTS = 3;

/**
 * The content-addressed store's logic, once for every backend: the publish protocol, manifests,
 * verification, quarantine, leases, the stage cache, documents, gc support and the memo. What differs
 * between a filesystem and an object store is behind StoreBackend (storeBackend.ts).
 */
export class StoreCore implements ArtifactStore {
  /** Artifacts whose local files this process has hashed (or written and hashed): open() trusts them. */
  private readonly verified = new Set<string>();
  /** One materialise per artifact at a time: concurrent opens share it. */
  private readonly opening = new Map<string, Promise<string>>();

  constructor(protected readonly backend: StoreBackend) {}

  get location(): string {
    return this.backend.location;
  }

  // ---- publishing ------------------------------------------------------------------------------

  async newWriter(): Promise<ArtifactWriter> {
    const dataDir = join(this.backend.localRoot, 'tmp', `w-${Date.now()}-${randomId()}`, 'data');
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
      for (const rel of await listFiles(writer.dir)) files.push({ path: rel, ...(await sha256File(join(writer.dir, rel))) });
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
      for (let attempt = 1; ; attempt++) {
        // The first publisher's manifest (its lineage) is kept; a corrupt one is quarantined and replaced.
        const existing = await this.intactExisting(digest);
        if (existing) {
          if (await this.backend.adopt(staging, existing)) this.verified.add(digest);
          return existing;
        }
        const committed = await this.backend.commit(staging, manifest);
        if (committed !== 'taken') {
          if (committed === 'kept') this.verified.add(digest);
          return manifest;
        }
        if (attempt === PUBLISH_ATTEMPTS) {
          throw new StoreUnavailableError(`publishing artifact ${digest} kept meeting another publisher's copy`, {
            where: this.location,
            hint: 'the stage is retried',
          });
        }
      }
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      throw asDiskFull(err, this.backend.localLabel);
    }
  }

  /**
   * The manifest of an already published artifact if it is intact; a corrupt one is quarantined. The
   * cheap check: a publish that only repeats existing content costs a listing, not a re-hash.
   */
  private async intactExisting(digest: string): Promise<Manifest | undefined> {
    if (!(await this.has(digest))) return undefined;
    if ((await this.quickVerify(digest)).ok) return this.readManifest(digest);
    await this.quarantine(digest);
    return undefined;
  }

  // ---- reading and checking --------------------------------------------------------------------

  async has(digest: string): Promise<boolean> {
    return (await this.backend.get(manifestKey(digest))) !== undefined;
  }

  async readManifest(digest: string): Promise<Manifest> {
    return (await this.readManifestWithTime(digest)).manifest;
  }

  private async readManifestWithTime(digest: string): Promise<{ manifest: Manifest; modifiedMs: number }> {
    const key = manifestKey(digest);
    const got = await this.backend.get(key);
    if (!got) throw new ArtifactNotFoundError(`artifact ${digest} is not in the store`, { where: this.location });
    try {
      return { manifest: Manifest.parse(JSON.parse(got.body.toString('utf8'))), modifiedMs: got.modifiedMs };
    } catch (err) {
      throw new ArtifactCorruptError(`manifest of artifact ${digest} is unreadable`, { where: `${this.location}/${key}`, cause: err });
    }
  }

  /** Every file re-hashed. A store that cannot be read throws, rather than reading as corruption. */
  async verify(digest: string): Promise<VerifyResult> {
    let manifest: Manifest;
    try {
      manifest = await this.readManifest(digest);
    } catch (err) {
      return notReadable(digest, err);
    }
    const data = dataPrefix(digest);
    const present = new Set((await this.backend.list(data)).map((o) => o.key.slice(data.length)));
    const problems = [
      ...manifestProblems(digest, manifest),
      ...(await fileProblems(
        manifest.files,
        async (f) => (present.has(f.path) ? this.backend.download(data + f.path) : undefined),
        present,
      )),
    ];
    return { digest, ok: problems.length === 0, problems };
  }

  /**
   * One listing of the artifact's objects: each present with its manifest size, and none written after
   * the manifest (a later rewrite means a full re-hash). Full hashing happens when an artifact is opened.
   */
  async quickVerify(digest: string): Promise<VerifyResult> {
    let manifest: Manifest;
    let publishedMs: number;
    try {
      ({ manifest, modifiedMs: publishedMs } = await this.readManifestWithTime(digest));
    } catch (err) {
      return notReadable(digest, err);
    }
    const data = dataPrefix(digest);
    const objects = new Map((await this.backend.list(data)).map((o) => [o.key.slice(data.length), o]));
    const later = this.backend.sameTimeIsLater ? (ms: number) => ms >= publishedMs : (ms: number) => ms > publishedMs;
    for (const f of manifest.files) {
      const o = objects.get(f.path);
      if (!o) return { digest, ok: false, problems: [`${f.path}: missing`] };
      if (o.size !== f.bytes) return { digest, ok: false, problems: [`${f.path}: ${o.size} bytes, manifest says ${f.bytes}`] };
      if (later(o.modifiedMs)) return this.verify(digest);
    }
    return { digest, ok: true, problems: [] };
  }

  async open(digest: string): Promise<ArtifactReader> {
    const manifest = await this.readManifest(digest);
    let pending = this.opening.get(digest);
    if (!pending) {
      pending = this.materialise(digest, manifest).finally(() => this.opening.delete(digest));
      this.opening.set(digest, pending);
    }
    const dir = await pending;
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

  /** A local directory of the artifact's files, checked by hash once per process. */
  private async materialise(digest: string, manifest: Manifest): Promise<string> {
    const problems = manifestProblems(digest, manifest);
    if (problems.length === 0) {
      const local = await this.backend.materialise(digest, manifest, this.verified.has(digest));
      problems.push(...local.problems);
      if (problems.length === 0) {
        this.verified.add(digest);
        return local.dir;
      }
    }
    throw new ArtifactCorruptError(`artifact ${digest} (${manifest.kind}) is corrupt: ${problems.join('; ')}`, {
      where: `${this.location}/artifacts/${digest}`,
      hint: 'it will be rebuilt on the next run; `embedflow store verify` lists every corrupt artifact',
    });
  }

  async listArtifacts(): Promise<string[]> {
    const out: string[] = [];
    for (const [digest, a] of await this.scanArtifacts()) if (a.manifest) out.push(digest);
    return out.sort();
  }

  /** Every digest folder in the store: whether it has a manifest, its objects and the newest's time. */
  private async scanArtifacts(): Promise<Map<string, { manifest: boolean; newestMs: number; objects: ListedObject[] }>> {
    const out = new Map<string, { manifest: boolean; newestMs: number; objects: ListedObject[] }>();
    for (const o of await this.backend.list('artifacts/')) {
      const [, digest, rest] = /^artifacts\/([^/]+)\/(.*)$/.exec(o.key) ?? [];
      if (!digest || !DIGEST_RE.test(digest)) continue;
      const a = out.get(digest) ?? { manifest: false, newestMs: 0, objects: [] };
      a.manifest ||= rest === 'manifest.json';
      a.newestMs = Math.max(a.newestMs, o.modifiedMs);
      a.objects.push(o);
      out.set(digest, a);
    }
    return out;
  }

  // ---- quarantine and removal ------------------------------------------------------------------

  async quarantine(digest: string): Promise<void> {
    this.verified.delete(digest);
    await this.backend.withdraw(checkDigest(digest), `quarantine/${digest}-${Date.now()}-${randomId(3)}/`);
  }

  async quarantined(digest: string): Promise<{ manifest?: Manifest } | undefined> {
    const prefix = `${checkDigest(digest)}-`;
    const folders = new Set((await this.backend.list(`quarantine/${prefix}`)).map((o) => o.key.split('/')[1] ?? ''));
    const ms = (name: string) => Number(name.slice(prefix.length).split('-')[0]);
    const latest = [...folders].sort((a, b) => ms(b) - ms(a))[0];
    if (latest === undefined) return undefined;
    const text = (await this.backend.get(`quarantine/${latest}/manifest.json`))?.body.toString('utf8') ?? '';
    return { manifest: parseManifestOrUndefined(text) };
  }

  async deleteArtifact(digest: string): Promise<number> {
    let bytes = 0;
    try {
      bytes = (await this.readManifest(digest)).files.reduce((n, f) => n + f.bytes, 0);
    } catch (err) {
      // A broken artifact is deleted all the same.
      if (!(err instanceof ArtifactNotFoundError || err instanceof ArtifactCorruptError)) throw err;
    }
    this.verified.delete(digest);
    await this.backend.withdraw(digest);
    return bytes;
  }

  /**
   * Local staging folders left by crashed writers, and artifact folders that never got a manifest (a
   * publish that died mid-upload), both untouched for `olderThanMs`.
   */
  async listStale(olderThanMs: number): Promise<string[]> {
    const { local, remote } = await this.stale(olderThanMs);
    return [...local, ...remote.map(([digest]) => `${this.location}/artifacts/${digest}/`)];
  }

  async removeStale(olderThanMs: number): Promise<number> {
    const { local, remote } = await this.stale(olderThanMs);
    for (const p of local) await rm(p, { recursive: true, force: true });
    for (const [, objects] of remote) await this.backend.delete(objects.map((o) => o.key));
    return local.length + remote.length;
  }

  private async stale(olderThanMs: number) {
    const cutoff = Date.now() - olderThanMs;
    const local = await untouchedSince(join(this.backend.localRoot, 'tmp'), cutoff);
    const remote = [...(await this.scanArtifacts())]
      .filter(([, a]) => !a.manifest && a.newestMs < cutoff)
      .map(([digest, a]) => [digest, a.objects] as const);
    return { local, remote };
  }

  // ---- stage cache -----------------------------------------------------------------------------

  async getCache(key: string): Promise<string | undefined> {
    const got = await this.backend.get(cacheKey(key));
    if (!got) return undefined;
    try {
      const entry = CacheEntry.safeParse(JSON.parse(got.body.toString('utf8')));
      return entry.success ? entry.data.digest : undefined;
    } catch {
      // A damaged entry is a miss, not a crash.
      return undefined;
    }
  }

  async putCache(key: string, digest: string, info: Record<string, unknown> = {}): Promise<void> {
    const entryKey = cacheKey(key);
    await this.backend.put(entryKey, canonicalJson({ ...info, key, digest: checkDigest(digest), at: new Date().toISOString() }));
  }

  async dropCache(key: string): Promise<void> {
    await this.backend.delete([cacheKey(key)]);
  }

  async listCache(): Promise<Array<{ key: string; digest: string }>> {
    const keys = (await this.backend.list('cache/', { shallow: true }))
      .map((o) => o.key.slice('cache/'.length))
      .filter((n) => n.endsWith('.json'))
      .map((n) => n.slice(0, -'.json'.length));
    const out: Array<{ key: string; digest: string }> = [];
    await forEachLimit(keys, PARALLEL, async (key) => {
      const digest = await this.getCache(key);
      if (digest) out.push({ key, digest });
    });
    return out.sort((a, b) => a.key.localeCompare(b.key));
  }

  // ---- leases ----------------------------------------------------------------------------------

  /**
   * A lock object created only if absent, and taken over only while it still has the etag read, so of
   * two contenders exactly one wins. Staleness compares the lock's time (the storage's clock) with this
   * machine's: clocks skewed by more than `ttlMs` make leases look stale, which costs a duplicate
   * computation, never a wrong artifact (publishing is atomic).
   */
  async acquireLease(key: string, owner: { id: string; group: string }, ttlMs: number): Promise<boolean> {
    const lock = leaseKey(key);
    const body = leaseBody(owner);
    for (let attempt = 0; attempt < 3; attempt++) {
      if (await this.tryPut(lock, body, { ifNoneMatch: true })) return true;
      const held = await this.readLease(lock);
      if (!held) continue; // released meanwhile
      const stale = Date.now() - held.modifiedMs > ttlMs || held.group === owner.group;
      if (!stale) return false;
      // Lost to another contender, or released: look again.
      if (await this.tryPut(lock, body, { ifMatch: held.etag })) return true;
    }
    return false;
  }

  async renewLease(key: string, ownerId: string): Promise<void> {
    try {
      const lock = leaseKey(key);
      const held = await this.readLease(lock);
      if (held?.id === ownerId) await this.backend.put(lock, leaseBody({ id: ownerId, group: held.group }), { ifMatch: held.etag });
    } catch {
      // Lost, released or the store is unreachable: the publish is atomic either way.
    }
  }

  async releaseLease(key: string, ownerId: string): Promise<void> {
    try {
      const lock = leaseKey(key);
      const held = await this.readLease(lock);
      if (held?.id === ownerId) await this.backend.deleteIfMatch(lock, held.etag);
    } catch {
      // Already gone or taken over; a stale lease expires by itself.
    }
  }

  private async readLease(lock: string): Promise<{ id?: string; group?: string; etag: string; modifiedMs: number } | undefined> {
    const got = await this.backend.get(lock);
    if (!got) return undefined;
    let held: z.infer<typeof LeaseBody> = {};
    try {
      held = LeaseBody.parse(JSON.parse(got.body.toString('utf8')));
    } catch {
      // Unreadable: treated as held by nobody we know, so only its age frees it.
    }
    return { ...held, etag: got.etag, modifiedMs: got.modifiedMs };
  }

  /** A conditional put: false when its condition did not hold. */
  private async tryPut(key: string, body: string, condition: PutCondition): Promise<boolean> {
    try {
      await this.backend.put(key, body, condition);
      return true;
    } catch (err) {
      if (err instanceof PreconditionFailed) return false;
      throw err;
    }
  }

  // ---- memo ------------------------------------------------------------------------------------

  /**
   * Where the store is local files, the Memo appends to its segment in place. Elsewhere it works in a
   * private local folder mirroring the namespace's segment objects (memoMirror.ts).
   */
  async memo<V>(namespace: string): Promise<Memo<V>> {
    const ns = safeNamespace(namespace);
    const inPlace = this.backend.localPath?.(`memo/${ns}`);
    return inPlace ? Memo.open<V>(inPlace) : openMirroredMemo<V>(this.backend, ns);
  }

  async listMemo(): Promise<Array<{ namespace: string; bytes: number }>> {
    const sizes = new Map<string, number>();
    for (const o of await this.backend.list('memo/')) {
      if (!o.key.endsWith('.jsonl')) continue;
      const ns = o.key.slice('memo/'.length, o.key.lastIndexOf('/'));
      sizes.set(ns, (sizes.get(ns) ?? 0) + o.size);
    }
    return [...sizes].map(([namespace, bytes]) => ({ namespace, bytes })).sort((a, b) => a.namespace.localeCompare(b.namespace));
  }

  async deleteMemo(namespace: string): Promise<void> {
    const ns = safeNamespace(namespace);
    const segments = await this.backend.list(`memo/${ns}/`, { shallow: true });
    await this.backend.delete(segments.map((o) => o.key).filter((k) => k.endsWith('.jsonl')));
    if (!this.backend.localPath) await dropMirroredSegments(this.backend.localRoot, ns);
  }

  // ---- local scratch ---------------------------------------------------------------------------

  /** Checkpoints stay on this machine's disk: a retry elsewhere starts its checkpoints afresh. */
  async workDir(key: string): Promise<string> {
    const dir = join(this.backend.localRoot, 'work', safeName(key, 'work key'));
    await mkdir(dir, { recursive: true });
    return dir;
  }

  async removeWorkDir(key: string): Promise<void> {
    await rm(join(this.backend.localRoot, 'work', safeName(key, 'work key')), { recursive: true, force: true });
  }

  // ---- documents -------------------------------------------------------------------------------

  async putDoc(name: string, value: unknown): Promise<void> {
    await this.backend.put(docKey(name), JSON.stringify(value, null, 2));
  }

  async getDoc<T = unknown>(name: string): Promise<T | undefined> {
    const got = await this.backend.get(docKey(name));
    return got ? (JSON.parse(got.body.toString('utf8')) as T) : undefined;
  }

  async deleteDoc(name: string): Promise<void> {
    await this.backend.delete([docKey(name)]);
  }

  async listDocs(prefix: string): Promise<string[]> {
    const folder = `docs/${safeNamespace(prefix, 'document prefix')}/`;
    return (await this.backend.list(folder, { shallow: true }))
      .map((o) => o.key.slice(folder.length))
      .filter((n) => n.endsWith('.json'))
      .map((n) => `${prefix}/${n.slice(0, -'.json'.length)}`);
  }
}

// ---- the key layout (storeBackend.ts) ----------------------------------------------------------

export function manifestKey(digest: string): string {
  return `artifacts/${checkDigest(digest)}/manifest.json`;
}

/** The prefix of an artifact's data objects; a file's key is this plus its (safe) relative path. */
export function dataPrefix(digest: string): string {
  return `artifacts/${checkDigest(digest)}/data/`;
}

function cacheKey(key: string): string {
  return `cache/${safeName(key, 'cache key')}.json`;
}

function leaseKey(key: string): string {
  return `locks/${safeName(key, 'lease key')}.lock`;
}

function docKey(name: string): string {
  return `docs/${safeNamespace(name, 'document name')}.json`;
}

function leaseBody(owner: { id: string; group?: string }): string {
  return JSON.stringify({ ...owner, pid: process.pid, at: new Date().toISOString() });
}

function manifestProblems(digest: string, manifest: Manifest): string[] {
  const problems: string[] = [];
  if (manifest.digest !== digest) problems.push(`manifest names digest ${manifest.digest}`);
  if (contentDigest(manifest.kind, manifest.files) !== digest) problems.push('file list does not hash to the digest');
  return problems;
}

/** A missing or unreadable manifest is a failed check; a store that cannot be reached is an error. */
function notReadable(digest: string, err: unknown): VerifyResult {
  if (err instanceof ArtifactNotFoundError || err instanceof ArtifactCorruptError) {
    return { digest, ok: false, problems: [err.message] };
  }
  throw err;
}
