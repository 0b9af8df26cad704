import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  type CompletedPart,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  UploadPartCommand,
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

const MIB = 1024 * 1024;
/**
 * Files up to the part size go up as one PUT from memory; larger ones in parts of this size, each read
 * from the file for its own request (and read again for a retry), so no streamed body is ever resent
 * half-read. 16 MiB keeps memory at PARALLEL × 16 MiB per publish.
 */
const DEFAULT_PART_BYTES = 16 * MIB;
/** S3's limits: parts of 5 MiB to 5 GiB (but the last), at most 10,000 of them, objects up to 5 TiB. */
const MIN_PART_BYTES = 5 * MIB;
const MAX_PART_BYTES = 5 * 1024 * MIB;
const MAX_PARTS = 10_000;
const MAX_OBJECT_BYTES = 5 * 1024 ** 4;
/** Attempts per part, on top of the SDK's own retries of each request. */
const PART_ATTEMPTS = 3;

const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

const Endpoint = z.url({ protocol: /^https?$/ });
/** A size in bytes, or with a unit: 64MiB, 5MB (both binary), 1GiB. */
const Size = z
  .string()
  .regex(/^\d+\s*(|B|KiB|KB|MiB|MB|GiB|GB)$/i, 'a size such as 64MiB or 67108864')
  .transform((v) => {
    const [, n, unit] = /^(\d+)\s*(\w*)$/.exec(v)!;
    const scale: Record<string, number> = { '': 1, b: 1, kib: 1024, kb: 1024, mib: MIB, mb: MIB, gib: 1024 * MIB, gb: 1024 * MIB };
    return Number(n) * scale[unit!.toLowerCase()]!;
  })
  .pipe(z.number().min(MIN_PART_BYTES, 'at least 5MiB (S3\'s smallest part)').max(MAX_PART_BYTES, 'at most 5GiB (S3\'s largest part)'));

/** The AWS SDK's standard variables (and EMBEDFLOW_S3_ENDPOINT, the project's older name for the endpoint). */
const S3Env = z.object({
  AWS_ENDPOINT_URL_S3: Endpoint.optional().describe("S3's endpoint, for S3-compatible servers (the AWS SDK's name)"),
  AWS_ENDPOINT_URL: Endpoint.optional().describe('every AWS service\'s endpoint; S3 uses it when AWS_ENDPOINT_URL_S3 is unset'),
  AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: z.enum(['true', 'false']).optional().describe('true: ignore AWS_ENDPOINT_URL*'),
  EMBEDFLOW_S3_ENDPOINT: Endpoint.optional().describe('alias of AWS_ENDPOINT_URL_S3'),
  EMBEDFLOW_S3_PART_SIZE: Size.optional().describe('multipart upload part size; larger files go up in parts (default 16MiB)'),
  AWS_REGION: z.string().min(1).optional(),
  AWS_DEFAULT_REGION: z.string().min(1).optional(),
  AWS_ACCESS_KEY_ID: z.string().min(1).optional(),
  AWS_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  AWS_SESSION_TOKEN: z.string().min(1).optional(),
});
type S3EnvVars = z.infer<typeof S3Env>;

/** The endpoint and the variable it came from, as the AWS SDK ranks them; EMBEDFLOW_S3_ENDPOINT must agree. */
function endpointOf(e: S3EnvVars, url: string): { endpoint: string; from: string } | undefined {
  const standard = e.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS === 'true' ? undefined : (
    e.AWS_ENDPOINT_URL_S3 ? { endpoint: e.AWS_ENDPOINT_URL_S3, from: 'AWS_ENDPOINT_URL_S3' }
    : e.AWS_ENDPOINT_URL ? { endpoint: e.AWS_ENDPOINT_URL, from: 'AWS_ENDPOINT_URL' }
    : undefined);
  if (!e.EMBEDFLOW_S3_ENDPOINT) return standard;
  if (standard && standard.endpoint !== e.EMBEDFLOW_S3_ENDPOINT) {
    throw new ConfigError(`EMBEDFLOW_S3_ENDPOINT and ${standard.from} are both set, to different endpoints`, {
      where: url,
      hint: `EMBEDFLOW_S3_ENDPOINT is the older name for AWS_ENDPOINT_URL_S3: unset it`,
    });
  }
  return { endpoint: e.EMBEDFLOW_S3_ENDPOINT, from: 'EMBEDFLOW_S3_ENDPOINT' };
}

export interface S3StoreOptions {
  client: S3Client;
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing '/'; '' for the bucket root. */
  prefix: string;
  /** Local directory for staging, downloaded artifacts, the memo mirror and work dirs. */
  cacheRoot: string;
  /** Where the bucket is served, for messages: the endpoint URL or `AWS S3 (<region>)`. */
  endpointLabel: string;
  /** Files above this many bytes are uploaded in parts of this size (default 16 MiB, at least 5 MiB). */
  partBytes?: number;
}

export class S3Store extends StoreCore {
  constructor(opts: S3StoreOptions) {
    super(new S3Backend(opts));
  }

  /**
   * Open `s3://bucket/prefix` with the standard AWS environment (AWS_REGION / AWS_DEFAULT_REGION,
   * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, else the SDK's default chain:
   * AWS_PROFILE, instance roles...; AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, or the older
   * EMBEDFLOW_S3_ENDPOINT, for S3-compatible servers, which also switches to path-style addressing)
   * and EMBEDFLOW_S3_PART_SIZE. The local cache goes to `<home>/s3cache/<bucket>/<prefix>`.
   */
  static fromUrl(url: string, opts: { env: Record<string, string | undefined>; home: string }): S3Store {
    const { bucket, prefix } = parseS3Url(url);
    const parsed = S3Env.safeParse(opts.env);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      // The message names the variable only: its value may be a secret.
      throw new ConfigError(`environment variable ${issue.path.join('.')} is invalid: ${issue.message}`, {
        where: url,
        hint:
          issue.path[0] === 'EMBEDFLOW_S3_PART_SIZE'
            ? 'write a size from 5MiB to 5GiB, such as 64MiB, or unset it'
            : 'an endpoint is a URL such as http://127.0.0.1:9000; fix or unset it',
      });
    }
    const e = parsed.data;
    const region = e.AWS_REGION ?? e.AWS_DEFAULT_REGION ?? 'us-east-1';
    // Set explicitly, the endpoint is this store's alone: the SDK would otherwise read
    // AWS_ENDPOINT_URL* from the process, not from `opts.env`.
    const config: S3ClientConfig = { region, ignoreConfiguredEndpointUrls: true };
    const endpoint = endpointOf(e, url)?.endpoint;
    if (endpoint) {
      config.endpoint = endpoint;
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
      endpointLabel: endpoint ?? `AWS S3 (${region})`,
      partBytes: e.EMBEDFLOW_S3_PART_SIZE,
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
  private readonly partBytes: number;
  private bucketChecked: Promise<void> | undefined;

  constructor(opts: S3StoreOptions) {
    this.client = opts.client;
    this.bucket = opts.bucket;
    this.endpointLabel = opts.endpointLabel;
    this.base = opts.prefix ? `${opts.prefix}/` : '';
    this.location = `s3://${opts.bucket}${opts.prefix ? `/${opts.prefix}` : ''}`;
    this.localRoot = opts.cacheRoot;
    this.localLabel = `local cache ${opts.cacheRoot}`;
    this.partBytes = opts.partBytes ?? DEFAULT_PART_BYTES;
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
        throw new InvalidInputError(`artifact file ${f.path} is ${f.bytes} bytes, over the 5 TiB an S3 object can hold`, {
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
    if (bytes <= this.partBytes) return this.put(key, await readFile(path));
    // Parts grow past the setting only for files over 10,000 parts.
    const partBytes = Math.max(this.partBytes, Math.ceil(bytes / MAX_PARTS));
    const created = await this.call('write', key, () =>
      this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.base + key })),
    );
    const uploadId = created.UploadId;
    if (!uploadId) throw new StoreUnavailableError(`write ${this.location}/${key}: the object store started no multipart upload`, { where: this.endpointLabel });
    const fh = await open(path, 'r');
    try {
      const parts: CompletedPart[] = [];
      for (let n = 1, offset = 0; offset < bytes; n++, offset += partBytes) {
        const length = Math.min(partBytes, bytes - offset);
        parts.push(await this.uploadPart(fh, key, uploadId, n, offset, length));
      }
      await this.call('write', key, () =>
        this.client.send(
          new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: this.base + key, UploadId: uploadId, MultipartUpload: { Parts: parts } }),
        ),
      );
    } catch (err) {
      // Parts of an unfinished upload are stored (and billed) until aborted.
      await this.client
        .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.base + key, UploadId: uploadId }))
        .catch(() => undefined);
      throw err;
    } finally {
      await fh.close();
    }
  }

  /** One part, read from the file for each attempt; what the part's response says goes into the completion. */
  private async uploadPart(
    fh: Awaited<ReturnType<typeof open>>,
    key: string,
    uploadId: string,
    partNumber: number,
    offset: number,
    length: number,
  ): Promise<CompletedPart> {
    for (let attempt = 1; ; attempt++) {
      const body = Buffer.alloc(length);
      const { bytesRead } = await fh.read(body, 0, length, offset);
      if (bytesRead !== length) throw new StoreUnavailableError(`write ${this.location}/${key}: the staged file shrank while uploading`);
      try {
        const res = await this.call('write', `${key} (part ${partNumber})`, () =>
          this.client.send(
            new UploadPartCommand({ Bucket: this.bucket, Key: this.base + key, UploadId: uploadId, PartNumber: partNumber, Body: body, ContentLength: length }),
          ),
        );
        return {
          PartNumber: partNumber,
          ETag: res.ETag,
          ChecksumCRC32: res.ChecksumCRC32,
          ChecksumCRC32C: res.ChecksumCRC32C,
          ChecksumCRC64NVME: res.ChecksumCRC64NVME,
          ChecksumSHA1: res.ChecksumSHA1,
          ChecksumSHA256: res.ChecksumSHA256,
        };
      } catch (err) {
        if (!(err instanceof StoreUnavailableError) || attempt >= PART_ATTEMPTS) throw err;
        await sleep(500 * 2 ** attempt);
      }
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
        hint: 'check the network and AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL / EMBEDFLOW_S3_ENDPOINT (unset them for AWS S3); the stage is retried',
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

