import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { z } from 'zod';
import { ArtifactCorruptError, ConfigError, EmbedflowError, InvalidInputError, StoreAccessError, StoreUnavailableError } from '../core/errors.ts';
import { fileProblems, localProblems } from './fileProblems.ts';
import { asDiskFull, exists, isErrno, randomId } from './fsutil.ts';
import { type Hashed, hashStream } from './hash.ts';
import { type Manifest, manifestText } from './manifest.ts';
import { safeName, safeRelPath } from './names.ts';
import { PARALLEL, forEachLimit } from './parallel.ts';
import { type Committed, type ListedObject, type PutCondition, PreconditionFailed, type StoreBackend, type StoredObject } from './storeBackend.ts';
import { StoreCore, dataPrefix, manifestKey } from './storeCore.ts';

/**
 * S3 (or S3-compatible) backend: the store's keys are objects under the prefix. Stages need local
 * directories, so writers stage under a local cache root, opened artifacts are downloaded (and
 * verified) there once per machine, and work dirs (checkpoints) stay there, on the worker's own disk.
 *
 * Atomicity: data objects are uploaded first and the manifest last with a conditional put
 * (If-None-Match: *), so an artifact is visible exactly when its manifest exists and a half-uploaded
 * one never is; of two publishers of the same content one wins the manifest and the other keeps it.
 */

/** Files up to this size are uploaded from memory so the SDK can retry them; larger ones stream. */
const BUFFERED_UPLOAD_BYTES = 16 * 1024 * 1024;
/** A single PUT's limit on S3; this backend does not do multipart uploads. */
const MAX_OBJECT_BYTES = 5 * 1024 ** 3;

const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

const S3Env = z.object({
  EMBEDFLOW_S3_ENDPOINT: z.url({ protocol: /^https?$/ }).optional(),
  AWS_REGION: z.string().min(1).optional(),
  AWS_DEFAULT_REGION: z.string().min(1).optional(),
  AWS_ACCESS_KEY_ID: z.string().min(1).optional(),
  AWS_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  AWS_SESSION_TOKEN: z.string().min(1).optional(),
});

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

export class S3Store extends StoreCore {
  constructor(opts: S3StoreOptions) {
    super(new S3Backend(opts));
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
}

/** The S3 primitives, and S3's way to commit (manifest last, conditionally) and to materialise (download). */
class S3Backend implements StoreBackend {
  readonly location: string;
  readonly localRoot: string;
  readonly localLabel: string;
  readonly sameTimeIsLater = false;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly endpointLabel: string;
  private readonly base: string;
  private bucketChecked: Promise<void> | undefined;

  constructor(opts: S3StoreOptions) {
    this.client = opts.client;
    this.bucket = opts.bucket;
    this.endpointLabel = opts.endpointLabel;
    this.base = opts.prefix ? `${opts.prefix}/` : '';
    this.location = `s3://${opts.bucket}${opts.prefix ? `/${opts.prefix}` : ''}`;
    this.localRoot = opts.cacheRoot;
    this.localLabel = `local cache ${opts.cacheRoot}`;
  }

  // ---- object primitives -----------------------------------------------------------------------

  async get(key: string): Promise<StoredObject | undefined> {
    try {
      return await this.call('read', key, async () => {
        const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.base + key }));
        return {
          body: Buffer.from((await res.Body?.transformToByteArray()) ?? []),
          modifiedMs: res.LastModified?.getTime() ?? 0,
          etag: res.ETag ?? '',
        };
      });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async put(key: string, body: string | Buffer, condition?: PutCondition): Promise<void> {
    try {
      await this.call('write', key, () =>
        this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: this.base + key,
            Body: body,
            IfNoneMatch: condition && 'ifNoneMatch' in condition ? '*' : undefined,
            IfMatch: condition && 'ifMatch' in condition ? condition.ifMatch : undefined,
          }),
        ),
      );
    } catch (err) {
      // Not found under If-Match: released meanwhile, which is a lost condition too.
      if (condition && (isConflict(err) || isNotFound(err))) throw new PreconditionFailed(key);
      throw err;
    }
  }

  async delete(keys: readonly string[]): Promise<void> {
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

  async deleteIfMatch(key: string, etag: string): Promise<void> {
    try {
      await this.call('delete', key, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.base + key, IfMatch: etag })));
    } catch (err) {
      if (isConflict(err) || isNotFound(err)) throw new PreconditionFailed(key);
      throw err;
    }
  }

  async list(prefix: string, opts: { shallow?: boolean } = {}): Promise<ListedObject[]> {
    const out: ListedObject[] = [];
    let token: string | undefined;
    do {
      const page = await this.call('list', prefix, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.base + prefix,
            Delimiter: opts.shallow ? '/' : undefined,
            ContinuationToken: token,
          }),
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

  async download(key: string, dest?: string): Promise<Hashed | undefined> {
    let body: Readable;
    try {
      const res = await this.call('read', key, () => this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.base + key })));
      if (!(res.Body instanceof Readable)) throw new StoreUnavailableError(`read ${this.location}/${key}: the response has no body`);
      body = res.Body;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    try {
      return await hashStream(body, dest);
    } catch (err) {
      if (isErrno(err, 'ENOSPC', 'EDQUOT')) throw asDiskFull(err, dest ?? this.localRoot);
      throw new StoreUnavailableError(`read ${this.location}/${key}: the download broke off (${(err as Error).message})`, {
        where: this.endpointLabel,
        hint: 'the stage is retried',
      });
    }
  }

  // ---- publishing and local copies ---------------------------------------------------------------

  async commit(staging: string, manifest: Manifest): Promise<Committed> {
    const dataDir = join(staging, 'data');
    const data = dataPrefix(manifest.digest);
    for (const f of manifest.files) {
      if (f.bytes > MAX_OBJECT_BYTES) {
        throw new InvalidInputError(`artifact file ${f.path} is ${f.bytes} bytes, over the 5 GiB a single S3 PUT takes`, {
          where: this.location,
          hint: 'split the file, or use a filesystem store for artifacts this large',
        });
      }
    }
    await forEachLimit(manifest.files, PARALLEL, (f) => this.upload(join(dataDir, f.path), data + f.path, f.bytes));
    // Objects under data/ left by a crashed or quarantined earlier attempt.
    const listed = new Set(manifest.files.map((f) => data + f.path));
    await this.delete((await this.list(data)).map((o) => o.key).filter((k) => !listed.has(k)));
    try {
      await this.put(manifestKey(manifest.digest), manifestText(manifest), { ifNoneMatch: true });
    } catch (err) {
      if (err instanceof PreconditionFailed) return 'taken';
      throw err;
    }
    return (await this.adopt(staging, manifest)) ? 'kept' : 'published';
  }

  /** The staging dir holds exactly the published files, already hashed: keep it as the local copy. */
  async adopt(staging: string, manifest: Manifest): Promise<boolean> {
    const target = this.localCopy(manifest.digest);
    await mkdir(dirname(target), { recursive: true });
    try {
      await rename(staging, target);
      return true;
    } catch (err) {
      // A copy is there already (downloaded earlier): open() verifies it once per process.
      if (!isErrno(err, 'EEXIST', 'ENOTEMPTY', 'ENOTDIR')) throw err;
      await rm(staging, { recursive: true, force: true });
      return false;
    }
  }

  /** A local copy of the artifact's files: reused when intact, else downloaded through sha256. */
  async materialise(digest: string, manifest: Manifest, trusted: boolean): Promise<{ dir: string; problems: string[] }> {
    const target = this.localCopy(digest);
    const dir = join(target, 'data');
    if (await exists(dir)) {
      if (trusted || (await localProblems(dir, manifest)).length === 0) return { dir, problems: [] };
      // Damaged on this disk: the store's copy is the truth.
      await rm(target, { recursive: true, force: true });
    }
    const tmp = join(this.localRoot, 'tmp', `r-${Date.now()}-${randomId()}`);
    try {
      await mkdir(join(tmp, 'data'), { recursive: true });
      const data = dataPrefix(digest);
      const problems = await fileProblems(manifest.files, (f) => this.download(data + f.path, join(tmp, 'data', safeRelPath(f.path))));
      if (problems.length) return { dir, problems };
      await mkdir(dirname(target), { recursive: true });
      try {
        await rename(tmp, target);
      } catch (err) {
        if (!isErrno(err, 'EEXIST', 'ENOTEMPTY', 'ENOTDIR')) throw err;
        // Another process on this machine placed its copy first; it may be in use, so check it instead.
        const theirs = await localProblems(dir, manifest);
        if (theirs.length) {
          throw new ArtifactCorruptError(`local copy of artifact ${digest} is damaged: ${theirs.join('; ')}`, {
            where: target,
            hint: 'delete that folder; it is downloaded again on the next open',
          });
        }
      }
      return { dir, problems: [] };
    } catch (err) {
      throw asDiskFull(err, this.localLabel);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /**
   * Server-side copy to `keepAs` first; then the manifest is deleted (the artifact disappears at once)
   * and the data objects after it. A publish of the same content racing this delete can lose data
   * objects under its fresh manifest; open() and quickVerify() catch that and it is rebuilt.
   */
  async withdraw(digest: string, keepAs?: string): Promise<void> {
    const folder = `artifacts/${digest}/`;
    const keys = (await this.list(folder)).map((o) => o.key);
    if (keepAs) await forEachLimit(keys, PARALLEL, (k) => this.copy(k, keepAs + k.slice(folder.length)));
    const manifest = manifestKey(digest);
    if (keys.includes(manifest)) await this.delete([manifest]);
    await this.delete(keys.filter((k) => k !== manifest));
    await rm(this.localCopy(digest), { recursive: true, force: true });
  }

  private localCopy(digest: string): string {
    return join(this.localRoot, 'artifacts', digest);
  }

  private async upload(path: string, key: string, bytes: number): Promise<void> {
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

