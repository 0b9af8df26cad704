import type { Lineage, Manifest } from './manifest.ts';
import type { Memo } from './memo.ts';

// The store's interface, as stages, the engine and the CLI see it. One core implements it
// (storeCore.ts) over a backend: the filesystem (fsStore.ts) or S3 (s3Store.ts); storeUrl.ts opens
// either from a URL.

export { LocalStore, openLocalStore } from './fsStore.ts';
export { contentDigest } from './manifest.ts';

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
