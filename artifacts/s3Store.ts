import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { copyFile, link, mkdir, open, readFile, readdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { z } from 'zod';
import {
  ArtifactCorruptError,
  ArtifactNotFoundError,
  ConfigError,
  EmbedflowError,
  InvalidInputError,
  StoreAccessError,
  StoreUnavailableError,
} from '../activities/errors.ts';
import { asDiskFull, exists, isErrno, listFiles, randomId } from './fsutil.ts';
import { canonicalJson, sha256File } from './hash.ts';
import { DIGEST_RE, Digest, Manifest, type ManifestFile } from './manifest.ts';
import { Memo } from './memo.ts';
import {
  type ArtifactReader,
  type ArtifactStore,
  type ArtifactWriter,
  type PublishOptions,
  type VerifyResult,
  checkDigest,
  contentDigest,
  newestQuarantined,
  parseManifestOrUndefined,
  safeName,
  safeNamespace,
  safeRelPath,
  untouchedSince,
} from './store.ts';

/**
 * S3 (or S3-compatible) backend. The object layout under the prefix mirrors LocalStore's folders:
 *   artifacts/<digest>/manifest.json, artifacts/<digest>/data/<path>, cache/<key>.json,
 *   memo/<ns>/<segment>.jsonl, docs/<name>.json, quarantine/<digest>-<time>-<id>/...
 * Stages need local directories, so everything a stage touches lives under a local cache root:
 * writers stage there, opened artifacts are downloaded (and verified) there once, and work dirs
 * (checkpoints) stay there, on the worker's own disk: a retry on another machine starts its
 * checkpoints afresh.
 *
 * Atomicity: data objects are uploaded first and the manifest last with a conditional put
 * (If-None-Match: *), so an artifact is visible exactly when its manifest exists and a half-uploaded
 * one never is; of two publishers of the same content one wins the manifest and the other keeps it.
 */

/** Files up to this size are uploaded from memory so the SDK can retry them; larger ones stream. */
const BUFFERED_UPLOAD_BYTES = 16 * 1024 * 1024;
/** A single PUT's limit on S3; this backend does not do multipart uploads. */
const MAX_OBJECT_BYTES = 5 * 1024 ** 3;
const PARALLEL = 8;

const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

const S3Env = z.object({
  EMBEDFLOW_S3_ENDPOINT: z.url({ protocol: /^https?$/ }).optional(),
  AWS_REGION: z.string().min(1).optional(),
  AWS_DEFAULT_REGION: z.string().min(1).optional(),
  AWS_ACCESS_KEY_ID: z.string().min(1).optional(),
  AWS_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  AWS_SESSION_TOKEN: z.string().min(1).optional(),
});

const CacheEntry = z.object({ digest: Digest });
const LeaseBody = z.object({ id: z.string().optional(), group: z.string().optional() });

export interface S3StoreOptions {
  client: S3Client;
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing '/'; '' for the bucket root. */
  prefix: string;
  /** Local directory for staging, downloaded artifacts, the memo mirror and work dirs. */
  cacheRoot: string;
  /** Where the bucket is served, for messages: the endpoint URL or `AWS S3 (<region>)`. */
  endpointLabel: string;
}

interface ListedObject {
  /** Key relative to the store prefix. */
  key: string;
  size: number;
  modifiedMs: number;
}

export class S3Store implements ArtifactStore {
  readonly bucket: string;
  readonly prefix: string;
  readonly cacheRoot: string;
  readonly endpointLabel: string;
  private readonly client: S3Client;
  private readonly base: string;
  private readonly verified = new Set<string>();
  private readonly downloads = new Map<string, Promise<string>>();
  private bucketChecked: Promise<void> | undefined;

  constructor(opts: S3StoreOptions) {
    this.client = opts.client;
    this.bucket = opts.bucket;
    this.prefix = opts.prefix;
    this.cacheRoot = opts.cacheRoot;
    this.endpointLabel = opts.endpointLabel;
    this.base = opts.prefix ? `${opts.prefix}/` : '';
  }

  /**
   * Open `s3://bucket/prefix` with the standard AWS environment (AWS_REGION / AWS_DEFAULT_REGION,
   * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, else the SDK's default chain:
   * AWS_PROFILE, instance roles...) plus EMBEDFLOW_S3_ENDPOINT for S3-compatible servers, which
   * also switches to path-style addressing. The local cache goes to `<home>/s3cache/<bucket>/<prefix>`.
   */
  static fromUrl(url: string, opts: { env: Record<string, string | undefined>; home: string }): S3Store {
    const { bucket, prefix } = parseS3Url(url);
    const parsed = S3Env.safeParse(opts.env);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      // The message names the variable only: its value may be a secret.
      throw new ConfigError(`environment variable ${issue.path.join('.')} is invalid: ${issue.message}`, {
        where: url,
        hint: 'EMBEDFLOW_S3_ENDPOINT is a URL such as http://127.0.0.1:9000; fix or unset it',
      });
    }
    const e = parsed.data;
    const region = e.AWS_REGION ?? e.AWS_DEFAULT_REGION ?? 'us-east-1';
    const config: S3ClientConfig = { region };
    if (e.EMBEDFLOW_S3_ENDPOINT) {
      config.endpoint = e.EMBEDFLOW_S3_ENDPOINT;
      config.forcePathStyle = true;
      // S3-compatible servers vary in which of the SDK's newer default checksums they accept; every
      // byte is checked against its sha256 from the manifest anyway.
      config.requestChecksumCalculation = 'WHEN_REQUIRED';
      config.responseChecksumValidation = 'WHEN_REQUIRED';
    }
    if (e.AWS_ACCESS_KEY_ID && e.AWS_SECRET_ACCESS_KEY) {
      config.credentials = {
        accessKeyId: e.AWS_ACCESS_KEY_ID,
        secretAccessKey: e.AWS_SECRET_ACCESS_KEY,
        sessionToken: e.AWS_SESSION_TOKEN,
      };
    }
    return new S3Store({
      client: new S3Client(config),
      bucket,
      prefix,
      cacheRoot: join(opts.home, 's3cache', bucket, ...(prefix ? prefix.split('/') : [])),
      endpointLabel: e.EMBEDFLOW_S3_ENDPOINT ?? `AWS S3 (${region})`,
    });
  }

  get location(): string {
    return `s3://${this.bucket}${this.prefix ? `/${this.prefix}` : ''}`;
  }

  // ---- keys and local paths -------------------------------------------------------------------

  private manifestKey(digest: string): string {
    return `artifacts/${checkDigest(digest)}/manifest.json`;
  }

  private dataKey(digest: string, rel: string): string {
    return `artifacts/${digest}/data/${safeRelPath(rel)}`;
  }

  private localArtifact(digest: string): string {
    return join(this.cacheRoot, 'artifacts', digest);
  }

  // ---- artifacts -------------------------------------------------------------------------------

  async newWriter(): Promise<ArtifactWriter> {
    const dir = join(this.cacheRoot, 'tmp', `w-${Date.now()}-${randomId()}`);
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
        const { sha256, bytes } = await sha256File(join(writer.dir, rel));
        if (bytes > MAX_OBJECT_BYTES) {
          throw new InvalidInputError(`artifact file ${rel} is ${bytes} bytes, over the 5 GiB a single S3 PUT takes`, {
            where: this.location,
            hint: 'split the file, or use a filesystem store for artifacts this large',
          });
        }
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
      for (let attempt = 0; ; attempt++) {
        const existing = await this.intactExisting(digest);
        if (existing) {
          await this.keepLocalCopy(staging, digest);
          return existing;
        }
        await forEachLimit(files, PARALLEL, (f) => this.uploadFile(join(writer.dir, f.path), this.dataKey(digest, f.path), f.bytes));
        await this.removeUnlisted(digest, files);
        try {
          await this.put(this.manifestKey(digest), JSON.stringify(manifest, null, 2), { ifNoneMatch: true });
        } catch (err) {
          // Someone published the same content first: loop round to keep theirs if it is intact.
          if (isConflict(err) && attempt < 2) continue;
          throw err;
        }
        await this.keepLocalCopy(staging, digest);
        return manifest;
      }
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      throw asDiskFull(err, `local cache ${this.cacheRoot}`);
    }
  }

  /** The manifest of an already published artifact if it is intact; a corrupt one is quarantined. */
  private async intactExisting(digest: string): Promise<Manifest | undefined> {
    if (!(await this.has(digest))) return undefined;
    // Sizes plus "nothing rewritten since the manifest" (else a full re-hash): a publish that only
    // repeats existing content costs a listing, not a download.
    if ((await this.quickVerify(digest)).ok) return this.readManifest(digest);
    await this.quarantine(digest);
    return undefined;
  }

  /** Objects under the artifact's data/ left by a crashed or quarantined earlier attempt. */
  private async removeUnlisted(digest: string, files: ManifestFile[]): Promise<void> {
    const listed = new Set(files.map((f) => this.dataKey(digest, f.path)));
    const stray = (await this.list(`artifacts/${digest}/data/`)).filter((o) => !listed.has(o.key));
    await this.deleteKeys(stray.map((o) => o.key));
  }

  /** The staging dir holds exactly the published files, already hashed: keep it as the local copy. */
  private async keepLocalCopy(staging: string, digest: string): Promise<void> {
    const target = this.localArtifact(digest);
    await mkdir(dirname(target), { recursive: true });
    try {
      await rename(staging, target);
      this.verified.add(digest);
    } catch (err) {
      // A copy is there already (downloaded earlier): open() verifies it once per process.
      if (!isErrno(err, 'EEXIST', 'ENOTEMPTY', 'ENOTDIR')) throw err;
      await rm(staging, { recursive: true, force: true });
    }
  }

  async has(digest: string): Promise<boolean> {
    const key = this.manifestKey(digest);
    try {
      await this.call('check', key, () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.base + key })));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async readManifest(digest: string): Promise<Manifest> {
    return (await this.readManifestWithTime(digest)).manifest;
  }

  private async readManifestWithTime(digest: string): Promise<{ manifest: Manifest; modifiedMs: number }> {
    const key = this.manifestKey(digest);
    const got = await this.getText(key);
    if (!got) throw new ArtifactNotFoundError(`artifact ${digest} is not in the store`, { where: this.location });
    try {
      return { manifest: Manifest.parse(JSON.parse(got.text)), modifiedMs: got.modifiedMs };
    } catch (err) {
      throw new ArtifactCorruptError(`manifest of artifact ${digest} is unreadable`, { where: `${this.location}/${key}`, cause: err });
    }
  }

  /** Like LocalStore.verify, re-hashing every object. Store outages throw rather than read as corruption. */
  async verify(digest: string): Promise<VerifyResult> {
    let manifest: Manifest;
    try {
      manifest = await this.readManifest(digest);
    } catch (err) {
      if (err instanceof ArtifactNotFoundError || err instanceof ArtifactCorruptError) {
        return { digest, ok: false, problems: [err.message] };
      }
      throw err;
    }
    const problems = manifestProblems(digest, manifest);
    const objects = new Map((await this.list(`artifacts/${digest}/data/`)).map((o) => [o.key, o]));
    await forEachLimit(manifest.files, PARALLEL, async (f) => {
      const key = this.dataKey(digest, f.path);
      const got = objects.has(key) ? await this.fetchObject(key) : undefined;
      if (!got) problems.push(`${f.path}: missing`);
      else if (got.bytes !== f.bytes) problems.push(`${f.path}: ${got.bytes} bytes, manifest says ${f.bytes}`);
      else if (got.sha256 !== f.sha256) problems.push(`${f.path}: sha256 mismatch`);
    });
    const listed = new Set(manifest.files.map((f) => this.dataKey(digest, f.path)));
    for (const key of objects.keys()) {
      if (!listed.has(key)) problems.push(`${key.slice(`artifacts/${digest}/data/`.length)}: not in the manifest`);
    }
    return { digest, ok: problems.length === 0, problems: problems.sort() };
  }

  /**
   * One listing of the artifact's objects: each file present with its manifest size, and none
   * written after the manifest (S3 keeps whole seconds; a later rewrite means a full re-hash).
   */
  async quickVerify(digest: string): Promise<VerifyResult> {
    let manifest: Manifest;
    let publishedMs: number;
    try {
      ({ manifest, modifiedMs: publishedMs } = await this.readManifestWithTime(digest));
    } catch (err) {
      if (err instanceof ArtifactNotFoundError || err instanceof ArtifactCorruptError) {
        return { digest, ok: false, problems: [err.message] };
      }
      throw err;
    }
    const objects = new Map((await this.list(`artifacts/${digest}/data/`)).map((o) => [o.key, o]));
    for (const f of manifest.files) {
      const o = objects.get(this.dataKey(digest, f.path));
      if (!o) return { digest, ok: false, problems: [`${f.path}: missing`] };
      if (o.size !== f.bytes) return { digest, ok: false, problems: [`${f.path}: ${o.size} bytes, manifest says ${f.bytes}`] };
      if (o.modifiedMs > publishedMs) return this.verify(digest);
    }
    return { digest, ok: true, problems: [] };
  }

  async open(digest: string): Promise<ArtifactReader> {
    const manifest = await this.readManifest(digest);
    const problems = manifestProblems(digest, manifest);
    if (problems.length) throw this.corrupt(digest, manifest, problems);
    let pending = this.downloads.get(digest);
    if (!pending) {
      pending = this.localCopy(digest, manifest).finally(() => this.downloads.delete(digest));
      this.downloads.set(digest, pending);
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

  /** A verified local copy of the artifact's files: reused when intact, else downloaded. */
  private async localCopy(digest: string, manifest: Manifest): Promise<string> {
    const target = this.localArtifact(digest);
    const dataDir = join(target, 'data');
    if (await exists(dataDir)) {
      if (this.verified.has(digest)) return dataDir;
      if ((await localProblems(dataDir, manifest)).length === 0) {
        this.verified.add(digest);
        return dataDir;
      }
      // Damaged on this disk: the store's copy is the truth.
      await rm(target, { recursive: true, force: true });
    }
    const tmp = join(this.cacheRoot, 'tmp', `r-${Date.now()}-${randomId()}`);
    try {
      await mkdir(join(tmp, 'data'), { recursive: true });
      const problems: string[] = [];
      await forEachLimit(manifest.files, PARALLEL, async (f) => {
        const got = await this.fetchObject(this.dataKey(digest, f.path), join(tmp, 'data', safeRelPath(f.path)));
        if (!got) problems.push(`${f.path}: missing`);
        else if (got.bytes !== f.bytes) problems.push(`${f.path}: ${got.bytes} bytes, manifest says ${f.bytes}`);
        else if (got.sha256 !== f.sha256) problems.push(`${f.path}: sha256 mismatch`);
      });
      if (problems.length) throw this.corrupt(digest, manifest, problems.sort());
      await mkdir(dirname(target), { recursive: true });
      try {
        await rename(tmp, target);
      } catch (err) {
        if (!isErrno(err, 'EEXIST', 'ENOTEMPTY', 'ENOTDIR')) throw err;
        // Another process on this machine placed its copy first; it may be in use, so check it instead.
        const theirs = await localProblems(dataDir, manifest);
        if (theirs.length) {
          throw new ArtifactCorruptError(`local copy of artifact ${digest} is damaged: ${theirs.join('; ')}`, {
            where: target,
            hint: 'delete that folder; it is downloaded again on the next open',
          });
        }
      }
      this.verified.add(digest);
      return dataDir;
    } catch (err) {
      throw asDiskFull(err, `local cache ${this.cacheRoot}`);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  private corrupt(digest: string, manifest: Manifest, problems: string[]): ArtifactCorruptError {
    return new ArtifactCorruptError(`artifact ${digest} (${manifest.kind}) is corrupt: ${problems.join('; ')}`, {
      where: `${this.location}/artifacts/${digest}`,
      hint: 'it will be rebuilt on the next run; `embedflow store verify` lists every corrupt artifact',
    });
  }

  /**
   * Server-side copy of the artifact's objects to quarantine/, then the manifest is deleted first (the
   * artifact disappears at once) and the data objects after it. A publish of the same content racing
   * this delete can lose data objects under its fresh manifest; open() and quickVerify() catch that
   * and it is rebuilt.
   */
  async quarantine(digest: string): Promise<void> {
    this.verified.delete(digest);
    const objects = await this.list(`artifacts/${checkDigest(digest)}/`);
    if (objects.length === 0) return;
    const dest = `quarantine/${digest}-${Date.now()}-${randomId(3)}/`;
    await forEachLimit(objects, PARALLEL, (o) => this.copy(o.key, dest + o.key.slice(`artifacts/${digest}/`.length)));
    await this.removeArtifactObjects(digest, objects);
  }

  async quarantined(digest: string): Promise<{ manifest?: Manifest } | undefined> {
    const objects = await this.list(`quarantine/${checkDigest(digest)}-`);
    const latest = newestQuarantined([...new Set(objects.map((o) => o.key.split('/')[1] ?? ''))], digest);
    if (latest === undefined) return undefined;
    return { manifest: parseManifestOrUndefined((await this.getText(`quarantine/${latest}/manifest.json`))?.text ?? '') };
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
    await this.removeArtifactObjects(digest, await this.list(`artifacts/${digest}/`));
    await rm(this.localArtifact(digest), { recursive: true, force: true });
    return bytes;
  }

  private async removeArtifactObjects(digest: string, objects: ListedObject[]): Promise<void> {
    const manifestKey = this.manifestKey(digest);
    if (objects.some((o) => o.key === manifestKey)) await this.deleteKeys([manifestKey]);
    await this.deleteKeys(objects.map((o) => o.key).filter((k) => k !== manifestKey));
  }

  async listArtifacts(): Promise<string[]> {
    const out: string[] = [];
    for (const [digest, a] of await this.scanArtifacts()) if (a.manifest) out.push(digest);
    return out.sort();
  }

  /** Every digest folder in the store: whether it has a manifest, and its newest object. */
  private async scanArtifacts(): Promise<Map<string, { manifest: boolean; newestMs: number; keys: ListedObject[] }>> {
    const out = new Map<string, { manifest: boolean; newestMs: number; keys: ListedObject[] }>();
    for (const o of await this.list('artifacts/')) {
      const [, digest, rest] = /^artifacts\/([^/]+)\/(.*)$/.exec(o.key) ?? [];
      if (!digest || !DIGEST_RE.test(digest)) continue;
      const a = out.get(digest) ?? { manifest: false, newestMs: 0, keys: [] };
      a.manifest ||= rest === 'manifest.json';
      a.newestMs = Math.max(a.newestMs, o.modifiedMs);
      a.keys.push(o);
      out.set(digest, a);
    }
    return out;
  }

  // ---- stage cache -----------------------------------------------------------------------------

  private cacheKey(key: string): string {
    return `cache/${safeName(key, 'cache key')}.json`;
  }

  async getCache(key: string): Promise<string | undefined> {
    const got = await this.getText(this.cacheKey(key));
    if (!got) return undefined;
    try {
      const entry = CacheEntry.safeParse(JSON.parse(got.text));
      return entry.success ? entry.data.digest : undefined;
    } catch {
      return undefined;
    }
  }

  async putCache(key: string, digest: string, info: Record<string, unknown> = {}): Promise<void> {
    const objectKey = this.cacheKey(key);
    await this.put(objectKey, canonicalJson({ ...info, key, digest: checkDigest(digest), at: new Date().toISOString() }));
  }

  async dropCache(key: string): Promise<void> {
    await this.deleteKeys([this.cacheKey(key)]);
  }

  async listCache(): Promise<Array<{ key: string; digest: string }>> {
    const keys = (await this.list('cache/', '/'))
      .map((o) => o.key.slice('cache/'.length))
      .filter((n) => n.endsWith('.json'))
      .map((n) => n.slice(0, -5));
    const out: Array<{ key: string; digest: string }> = [];
    await forEachLimit(keys, PARALLEL, async (key) => {
      const digest = await this.getCache(key);
      if (digest) out.push({ key, digest });
    });
    return out.sort((a, b) => a.key.localeCompare(b.key));
  }

  // ---- leases ---------------------------------------------------------------------------------

  private leaseKey(key: string): string {
    return `locks/${safeName(key, 'lease key')}.lock`;
  }

  private async readLease(key: string): Promise<{ id?: string; group?: string; etag: string; modifiedMs: number } | undefined> {
    const got = await this.getText(key);
    if (!got) return undefined;
    let held: z.infer<typeof LeaseBody> = {};
    try {
      held = LeaseBody.parse(JSON.parse(got.text));
    } catch {
      // Unreadable: treated as held by nobody we know, so only its age frees it.
    }
    return { ...held, etag: got.etag, modifiedMs: got.modifiedMs };
  }

  /**
   * A lock object created with If-None-Match and taken over with If-Match on the ETag read, so of two
   * contenders exactly one wins. Staleness compares the object's Last-Modified (the server's clock)
   * with this machine's: clocks skewed by more than `ttlMs` make leases look stale, which costs a
   * duplicate computation, never a wrong artifact (publishing is atomic).
   */
  async acquireLease(key: string, owner: { id: string; group: string }, ttlMs: number): Promise<boolean> {
    const lockKey = this.leaseKey(key);
    const body = JSON.stringify({ ...owner, pid: process.pid, at: new Date().toISOString() });
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await this.put(lockKey, body, { ifNoneMatch: true });
        return true;
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
      const held = await this.readLease(lockKey);
      if (!held) continue; // released meanwhile
      if (Date.now() - held.modifiedMs <= ttlMs && held.group !== owner.group) return false;
      try {
        await this.put(lockKey, body, { ifMatch: held.etag });
        return true;
      } catch (err) {
        // Another contender took it over, or it was released: look again.
        if (!isConflict(err) && !isNotFound(err)) throw err;
      }
    }
    return false;
  }

  async renewLease(key: string, ownerId: string): Promise<void> {
    try {
      const lockKey = this.leaseKey(key);
      const held = await this.readLease(lockKey);
      if (held?.id === ownerId) {
        await this.put(lockKey, JSON.stringify({ id: held.id, group: held.group, pid: process.pid, at: new Date().toISOString() }), {
          ifMatch: held.etag,
        });
      }
    } catch {
      // Lost, released or the store is unreachable: the publish is atomic either way.
    }
  }

  async releaseLease(key: string, ownerId: string): Promise<void> {
    try {
      const lockKey = this.leaseKey(key);
      const held = await this.readLease(lockKey);
      if (held?.id === ownerId) {
        await this.call('delete', lockKey, () =>
          this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.base + lockKey, IfMatch: held.etag })),
        );
      }
    } catch {
      // Already gone or taken over; a stale lease expires by itself.
    }
  }

  // ---- memo ------------------------------------------------------------------------------------

  /**
   * A Memo over a private local folder mirroring the namespace's segment objects. Each flush()
   * uploads what it appended as a new, immutable segment object (S3 has no append): re-uploading the
   * writer's whole segment every few items would cost quadratic traffic over a long stage, and
   * immutable objects are downloaded once per machine. reload() fetches segments it has not seen.
   */
  async memo<V>(namespace: string): Promise<Memo<V>> {
    const ns = safeNamespace(namespace);
    const dir = join(this.cacheRoot, 'memo-open', `${Date.now()}-${randomId()}`);
    await mkdir(dir, { recursive: true });
    const mirror = new MemoMirror(this.memoIo(ns), dir, join(this.cacheRoot, 'memo', ns));
    try {
      await mirror.pull();
      return mirror.attach(await Memo.open<V>(dir));
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  private memoIo(ns: string): MemoIo {
    const prefix = `memo/${ns}/`;
    return {
      where: `${this.location}/${prefix}`,
      list: async () =>
        (await this.list(prefix, '/')).map((o) => o.key.slice(prefix.length)).filter((n) => n.endsWith('.jsonl')),
      get: async (name, dest) => {
        if (!(await this.fetchObject(prefix + name, dest))) {
          throw new ArtifactNotFoundError(`memo segment ${name} vanished while being read`, { where: `${this.location}/${prefix}` });
        }
      },
      put: (name, data) => this.put(prefix + name, data),
    };
  }

  async listMemo(): Promise<Array<{ namespace: string; bytes: number }>> {
    const sizes = new Map<string, number>();
    for (const o of await this.list('memo/')) {
      if (!o.key.endsWith('.jsonl')) continue;
      const ns = o.key.slice('memo/'.length, o.key.lastIndexOf('/'));
      sizes.set(ns, (sizes.get(ns) ?? 0) + o.size);
    }
    return [...sizes].map(([namespace, bytes]) => ({ namespace, bytes })).sort((a, b) => a.namespace.localeCompare(b.namespace));
  }

  async deleteMemo(namespace: string): Promise<void> {
    const ns = safeNamespace(namespace);
    const prefix = `memo/${ns}/`;
    await this.deleteKeys((await this.list(prefix, '/')).map((o) => o.key).filter((k) => k.endsWith('.jsonl')));
    const mirror = join(this.cacheRoot, 'memo', ns);
    for (const name of await readdir(mirror).catch(() => [] as string[])) {
      if (name.endsWith('.jsonl')) await rm(join(mirror, name), { force: true });
    }
  }

  // ---- local scratch ---------------------------------------------------------------------------

  /** Checkpoints stay on this worker's disk, under the local cache root (not in the bucket). */
  async workDir(key: string): Promise<string> {
    const dir = join(this.cacheRoot, 'work', safeName(key, 'work key'));
    await mkdir(dir, { recursive: true });
    return dir;
  }

  async removeWorkDir(key: string): Promise<void> {
    await rm(join(this.cacheRoot, 'work', safeName(key, 'work key')), { recursive: true, force: true });
  }

  /**
   * Local staging folders left by crashed writers, and artifact folders in the bucket that never got
   * a manifest (a publish that died mid-upload), both untouched for `olderThanMs`.
   */
  async listStale(olderThanMs: number): Promise<string[]> {
    const { local, remote } = await this.stale(olderThanMs);
    return [...local, ...remote.map((d) => `${this.location}/artifacts/${d}/`)];
  }

  async removeStale(olderThanMs: number): Promise<number> {
    const { local, remote, scan } = await this.stale(olderThanMs);
    for (const p of local) await rm(p, { recursive: true, force: true });
    for (const d of remote) await this.deleteKeys(scan.get(d)!.keys.map((o) => o.key));
    return local.length + remote.length;
  }

  private async stale(olderThanMs: number) {
    const cutoff = Date.now() - olderThanMs;
    const local = await untouchedSince(join(this.cacheRoot, 'tmp'), cutoff);
    const scan = await this.scanArtifacts();
    const remote = [...scan].filter(([, a]) => !a.manifest && a.newestMs < cutoff).map(([d]) => d);
    return { local, remote, scan };
  }

  // ---- documents -------------------------------------------------------------------------------

  private docKey(name: string): string {
    return `docs/${safeNamespace(name, 'document name')}.json`;
  }

  async putDoc(name: string, value: unknown): Promise<void> {
    await this.put(this.docKey(name), JSON.stringify(value, null, 2));
  }

  async getDoc<T = unknown>(name: string): Promise<T | undefined> {
    const got = await this.getText(this.docKey(name));
    return got ? (JSON.parse(got.text) as T) : undefined;
  }

  async deleteDoc(name: string): Promise<void> {
    await this.deleteKeys([this.docKey(name)]);
  }

  async listDocs(prefix: string): Promise<string[]> {
    const dir = `docs/${safeNamespace(prefix, 'document prefix')}/`;
    return (await this.list(dir, '/'))
      .map((o) => o.key.slice(dir.length))
      .filter((n) => n.endsWith('.json'))
      .map((n) => `${prefix}/${n.slice(0, -5)}`);
  }

  // ---- S3 calls --------------------------------------------------------------------------------

  /**
   * Run one S3 request. Not-found and failed preconditions pass through for the caller to judge;
   * every other failure becomes a named error that says which bucket and endpoint, never the
   * credentials (the SDK's error is not attached as a cause, as it can carry request headers).
   */
  private async call<T>(what: string, key: string, send: () => Promise<T>): Promise<T> {
    this.bucketChecked ??= this.checkBucket().catch((err: unknown) => {
      this.bucketChecked = undefined;
      throw err;
    });
    await this.bucketChecked;
    try {
      return await send();
    } catch (err) {
      if (isNotFound(err) || isConflict(err)) throw err;
      throw this.failure(err, `${what} ${this.location}/${key}`);
    }
  }

  /** Once per store handle: a missing bucket or refused credentials are reported as such, up front. */
  private async checkBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      if (statusOf(err) === 404 || nameOf(err) === 'NoSuchBucket') {
        throw new StoreAccessError(`bucket "${this.bucket}" does not exist`, {
          where: this.endpointLabel,
          hint: `create it, or point EMBEDFLOW_STORE at an existing bucket (the store is ${this.location})`,
        });
      }
      throw this.failure(err, `open bucket ${this.bucket}`);
    }
  }

  private failure(err: unknown, what: string): EmbedflowError {
    if (err instanceof EmbedflowError) return err;
    const status = statusOf(err);
    const name = nameOf(err);
    if (status === undefined && name !== 'CredentialsProviderError') {
      const detail = err instanceof Error ? err.message : String(err);
      return new StoreUnavailableError(`${what}: cannot reach the object store at ${this.endpointLabel} (${detail})`, {
        where: this.endpointLabel,
        hint: 'check the network and EMBEDFLOW_S3_ENDPOINT (unset it for AWS S3); the stage is retried',
      });
    }
    if (status !== undefined && status >= 500) {
      return new StoreUnavailableError(`${what}: the object store answered ${name} (HTTP ${status})`, {
        where: this.endpointLabel,
        hint: 'the server is failing or throttling; the stage is retried',
      });
    }
    if (name === 'CredentialsProviderError') {
      return new StoreAccessError(`${what}: no AWS credentials found`, {
        where: this.endpointLabel,
        hint: 'set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or run where an instance role applies',
      });
    }
    if (name === 'NoSuchBucket') {
      return new StoreAccessError(`bucket "${this.bucket}" does not exist`, { where: this.endpointLabel });
    }
    return new StoreAccessError(`${what}: refused by the object store (${name}${status ? `, HTTP ${status}` : ''})`, {
      where: this.endpointLabel,
      hint:
        'check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and that they may read, write, list and delete in the bucket',
    });
  }

  private async list(relPrefix: string, delimiter?: string): Promise<ListedObject[]> {
    const out: ListedObject[] = [];
    let token: string | undefined;
    do {
      const page = await this.call('list', relPrefix, () =>
        this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.base + relPrefix, Delimiter: delimiter, ContinuationToken: token }),
        ),
      );
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined) continue;
        out.push({ key: o.Key.slice(this.base.length), size: o.Size ?? 0, modifiedMs: o.LastModified?.getTime() ?? 0 });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  private async getText(key: string): Promise<{ text: string; modifiedMs: number; etag: string } | undefined> {
    try {
      return await this.call('read', key, async () => {
        const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.base + key }));
        return {
          text: (await res.Body?.transformToString('utf8')) ?? '',
          modifiedMs: res.LastModified?.getTime() ?? 0,
          etag: res.ETag ?? '',
        };
      });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Stream an object through sha256, into `dest` when given. Undefined when there is no such object. */
  private async fetchObject(key: string, dest?: string): Promise<{ sha256: string; bytes: number } | undefined> {
    let body: Readable;
    try {
      const res = await this.call('read', key, () => this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.base + key })));
      if (!(res.Body instanceof Readable)) throw new StoreUnavailableError(`read ${this.location}/${key}: the response has no body`);
      body = res.Body;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    const hash = createHash('sha256');
    let bytes = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        bytes += chunk.length;
        done(null, chunk);
      },
    });
    try {
      if (dest) {
        await mkdir(dirname(dest), { recursive: true });
        await pipeline(body, tap, createWriteStream(dest));
      } else {
        await pipeline(body, tap, async (source: AsyncIterable<Buffer>) => {
          for await (const _ of source);
        });
      }
    } catch (err) {
      if (isErrno(err, 'ENOSPC', 'EDQUOT')) throw asDiskFull(err, dest ?? this.cacheRoot);
      throw new StoreUnavailableError(`read ${this.location}/${key}: the download broke off (${(err as Error).message})`, {
        where: this.endpointLabel,
        hint: 'the stage is retried',
      });
    }
    return { sha256: hash.digest('hex'), bytes };
  }

  /** `ifNoneMatch`: only if there is no such object; `ifMatch`: only if it still has this ETag. */
  private async put(key: string, body: string | Buffer, opts: { ifNoneMatch?: boolean; ifMatch?: string } = {}): Promise<void> {
    await this.call('write', key, () =>
      this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.base + key,
          Body: body,
          IfNoneMatch: opts.ifNoneMatch ? '*' : undefined,
          IfMatch: opts.ifMatch,
        }),
      ),
    );
  }

  private async uploadFile(path: string, key: string, bytes: number): Promise<void> {
    if (bytes <= BUFFERED_UPLOAD_BYTES) return this.put(key, await readFile(path));
    const fh = await open(path, 'r');
    try {
      await this.call('write', key, () =>
        this.client.send(
          new PutObjectCommand({ Bucket: this.bucket, Key: this.base + key, Body: fh.createReadStream({ autoClose: false }), ContentLength: bytes }),
        ),
      );
    } finally {
      await fh.close();
    }
  }

  private async copy(fromKey: string, toKey: string): Promise<void> {
    const source = `${this.bucket}/${(this.base + fromKey).split('/').map(encodeURIComponent).join('/')}`;
    await this.call('copy', fromKey, () =>
      this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key: this.base + toKey, CopySource: source })),
    );
  }

  private async deleteKeys(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      const res = await this.call('delete', batch[0]!, () =>
        this.client.send(
          new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((k) => ({ Key: this.base + k })), Quiet: true } }),
        ),
      );
      const failed = res.Errors ?? [];
      if (failed.length) {
        throw new StoreAccessError(`delete in ${this.location}: ${failed.length} object(s) refused (${failed[0]!.Code ?? 'error'})`, {
          where: this.endpointLabel,
          hint: 'the credentials need s3:DeleteObject on the bucket',
        });
      }
    }
  }
}

/** `s3://bucket/optional/prefix` → its parts, checked. */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(url);
  const bucket = m?.[1] ?? '';
  const prefix = (m?.[2] ?? '').replace(/\/+$/, '');
  if (!m || !BUCKET_RE.test(bucket)) {
    throw new ConfigError(`${JSON.stringify(url)} is not a usable S3 store URL`, {
      hint: 'write s3://<bucket>/<optional prefix>; bucket names are 3-63 lowercase letters, digits, "." and "-"',
    });
  }
  if (prefix) prefix.split('/').forEach((p) => safeName(p, 'S3 prefix segment'));
  return { bucket, prefix };
}

function manifestProblems(digest: string, manifest: Manifest): string[] {
  const problems: string[] = [];
  if (manifest.digest !== digest) problems.push(`manifest names digest ${manifest.digest}`);
  if (contentDigest(manifest.kind, manifest.files) !== digest) problems.push('file list does not hash to the digest');
  return problems;
}

/** Problems of a local copy against its manifest (hash of every file, nothing extra). */
async function localProblems(dataDir: string, manifest: Manifest): Promise<string[]> {
  const problems: string[] = [];
  for (const f of manifest.files) {
    try {
      const { sha256, bytes } = await sha256File(join(dataDir, safeRelPath(f.path)));
      if (bytes !== f.bytes || sha256 !== f.sha256) problems.push(`${f.path}: differs from the manifest`);
    } catch {
      problems.push(`${f.path}: missing`);
    }
  }
  const listed = new Set(manifest.files.map((f) => f.path));
  for (const rel of await listFiles(dataDir)) if (!listed.has(rel)) problems.push(`${rel}: not in the manifest`);
  return problems;
}

// ---- memo mirroring ------------------------------------------------------------------------------

interface MemoIo {
  where: string;
  /** Segment object names in the namespace. */
  list(): Promise<string[]>;
  get(name: string, dest: string): Promise<void>;
  put(name: string, data: Buffer): Promise<void>;
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
    private readonly io: MemoIo,
    private readonly dir: string,
    private readonly shared: string,
  ) {}

  /** Link every segment object not seen yet into the folder, downloading it once per machine. */
  async pull(): Promise<void> {
    const ownPrefix = this.own?.slice(0, -'.jsonl'.length);
    const fresh = (await this.io.list()).filter((n) => !this.linked.has(n) && !(ownPrefix && n.startsWith(`${ownPrefix}-`)));
    await mkdir(this.shared, { recursive: true });
    await forEachLimit(fresh, PARALLEL, async (name) => {
      // Marked first: push() takes the one unmarked file in the folder for the Memo's own.
      this.linked.add(name);
      const cached = join(this.shared, name);
      if (!(await exists(cached))) {
        const tmp = `${cached}.tmp-${randomId()}`;
        try {
          await this.io.get(name, tmp);
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
      await this.io.put(name, data);
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

// ---- S3 error shapes -----------------------------------------------------------------------------

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

function nameOf(err: unknown): string {
  return err instanceof Error ? err.name : 'Error';
}

function isNotFound(err: unknown): boolean {
  return statusOf(err) === 404 && ['NoSuchKey', 'NotFound'].includes(nameOf(err));
}

/** A conditional write lost: the object exists (412), or a concurrent conditional write is in flight (409). */
function isConflict(err: unknown): boolean {
  const status = statusOf(err);
  return status === 412 || (status === 409 && nameOf(err) === 'ConditionalRequestConflict');
}

async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
