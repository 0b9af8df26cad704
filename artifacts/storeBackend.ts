import type { Hashed } from './hash.ts';
import type { Manifest } from './manifest.ts';

// What one kind of storage (a filesystem, an S3 bucket) must provide for the store core
// (storeCore.ts): a few object primitives over one key layout, plus the two steps whose atomicity
// each kind gets its own way (commit) and whose local copy it keeps its own way (materialise).
//
// Keys are relative to the store's root and use '/':
//   artifacts/<digest>/manifest.json, artifacts/<digest>/data/<path>, cache/<key>.json,
//   locks/<key>.lock, memo/<ns>/<segment>.jsonl, docs/<name>.json, quarantine/<digest>-<ms>-<id>/...
// Writers stage under `<localRoot>/tmp`; work dirs live under `<localRoot>/work`.

export interface StoredObject {
  body: Buffer;
  /** When it was last written, by the storage's clock. */
  modifiedMs: number;
  /** Changes whenever the object is rewritten; what a conditional put or delete compares. */
  etag: string;
}

export interface ListedObject {
  key: string;
  size: number;
  modifiedMs: number;
}

/** `ifNoneMatch`: only if there is no such object; `ifMatch`: only if it still has this etag. */
export type PutCondition = { ifNoneMatch: true } | { ifMatch: string };

/** A conditional put or delete whose condition did not hold: someone else wrote (or removed) first. */
export class PreconditionFailed extends Error {
  constructor(key: string) {
    super(`precondition failed for ${key}`);
    this.name = 'PreconditionFailed';
  }
}

/**
 * What commit() did: published, with the staged files now the copy materialise() serves ('kept': they
 * were hashed while publishing, so they need no check); published without keeping them ('published');
 * or not, as another publisher's manifest was there first ('taken', the staging folder left as it was).
 */
export type Committed = 'kept' | 'published' | 'taken';

export interface StoreBackend {
  /** Human-readable location, e.g. a path or s3://bucket/prefix. */
  readonly location: string;
  /** This machine's folder for staging, work dirs (and where needed, local copies and memo mirrors). */
  readonly localRoot: string;
  /** Names the local disk in a DiskFullError. */
  readonly localLabel: string;
  /**
   * Whether an object stamped with the very time of its manifest counts as written after it
   * (quickVerify). Yes on a filesystem: times tick in coarse steps (a jiffy), so a write just after
   * publishing can carry the manifest's own time, and files written before it rarely share it. No on
   * S3: Last-Modified has whole seconds, which every object of one publish shares with its manifest.
   */
  readonly sameTimeIsLater: boolean;

  /** The object, or undefined when there is none. */
  get(key: string): Promise<StoredObject | undefined>;
  /** Write a whole object: readers see the old one or the new one. Throws PreconditionFailed when `condition` does not hold. */
  put(key: string, body: string | Buffer, condition?: PutCondition): Promise<void>;
  /** Remove objects; absent ones are no error. */
  delete(keys: readonly string[]): Promise<void>;
  /** Remove an object only while it still has `etag`; throws PreconditionFailed otherwise. */
  deleteIfMatch(key: string, etag: string): Promise<void>;
  /**
   * The objects whose key starts with `prefix`, sorted by key. `shallow`: only those directly in the
   * folder `prefix` ends in, not in folders below it.
   */
  list(prefix: string, opts?: { shallow?: boolean }): Promise<ListedObject[]>;
  /** Read an object through sha256, into the local file `dest` when given; undefined when there is none. */
  download(key: string, dest?: string): Promise<Hashed | undefined>;

  /**
   * Publish the staged artifact (`<staging>/data`, hashed into `manifest`) so that it becomes visible
   * at once and whole: a reader sees all of it or none of it, a crash leaves no half of it.
   */
  commit(staging: string, manifest: Manifest): Promise<Committed>;
  /**
   * The staged files equal `manifest.digest`'s published ones: keep them as this machine's copy where
   * that spares a download, else remove them. Whether they are now the copy materialise() serves.
   */
  adopt(staging: string, manifest: Manifest): Promise<boolean>;
  /**
   * A local directory with the artifact's files, and what is wrong with them (empty when intact).
   * `trusted`: this process already checked them, so an existing copy is served as it is.
   */
  materialise(digest: string, manifest: Manifest, trusted: boolean): Promise<{ dir: string; problems: string[] }>;
  /**
   * Make the artifact vanish at once (never half-visible), moving its objects to the prefix `keepAs`
   * (quarantine) when given, else deleting them; this machine's copy goes with it.
   */
  withdraw(digest: string, keepAs?: string): Promise<void>;
  /** Present where objects are plain local files: memo segments are then appended in place, not mirrored. */
  localPath?(key: string): string;
}
