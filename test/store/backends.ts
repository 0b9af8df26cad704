import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { exists, listFiles, randomId } from '../../artifacts/fsutil.ts';
import { S3Store } from '../../artifacts/s3Store.ts';
import { type ArtifactStore, LocalStore } from '../../artifacts/store.ts';
import { openStoreUrl } from '../../artifacts/storeUrl.ts';
import type { S3TestServer } from '../support/s3Server.ts';

/** The store's bytes, addressed by the shared layout (`artifacts/<digest>/data/a.txt`), bypassing the store. */
export interface RawAccess {
  read(key: string): Promise<Buffer | undefined>;
  write(key: string, data: string | Buffer): Promise<void>;
  remove(key: string): Promise<void>;
  /** Keys below `prefix`, sorted. */
  list(prefix: string): Promise<string[]>;
}

export interface StoreUnderTest {
  store: ArtifactStore;
  /** Another handle on the same store, as another process or machine opens it: no shared in-process state or local cache. */
  reopen(): Promise<ArtifactStore>;
  raw: RawAccess;
  /** Arguments for publishChild.ts (store url, home) and the environment it needs. */
  child: { args: [string, string]; env: Record<string, string> };
}

/** How the child processes open a store: a path is a LocalStore, `s3://` an S3Store with its cache in `home`. */
export function openTestStore(url: string, home: string): ArtifactStore {
  return openStoreUrl(url, { env: process.env, home });
}

export async function localStoreUnderTest(): Promise<StoreUnderTest> {
  const root = await mkdtemp(join(tmpdir(), 'ef-conf-local-'));
  const path = (key: string) => join(root, key);
  return {
    store: new LocalStore(root),
    reopen: async () => new LocalStore(root),
    child: { args: [root, root], env: {} },
    raw: {
      read: async (key) => ((await exists(path(key))) ? readFile(path(key)) : undefined),
      async write(key, data) {
        await mkdir(dirname(path(key)), { recursive: true });
        await writeFile(path(key), data);
      },
      remove: (key) => rm(path(key), { force: true }),
      async list(prefix) {
        const dir = path(prefix);
        if (!(await exists(dir))) return [];
        return (await listFiles(dir)).map((rel) => join(prefix, rel));
      },
    },
  };
}

/** A fresh prefix in `bucket` and a fresh local cache, so tests never see each other. */
export async function s3StoreUnderTest(server: S3TestServer, bucket: string): Promise<StoreUnderTest> {
  const prefix = `conf-${randomId(4)}/store`;
  const url = `s3://${bucket}/${prefix}`;
  const newHome = () => mkdtemp(join(tmpdir(), 'ef-conf-s3home-'));
  const open = async () => S3Store.fromUrl(url, { env: server.env, home: await newHome() });
  const key = (k: string) => `${prefix}/${k}`;
  const c = server.client;
  return {
    store: await open(),
    reopen: open,
    child: { args: [url, await newHome()], env: server.env },
    raw: {
      async read(k) {
        try {
          const res = await c.send(new GetObjectCommand({ Bucket: bucket, Key: key(k) }));
          return Buffer.from(await res.Body!.transformToByteArray());
        } catch (err) {
          if ((err as Error).name === 'NoSuchKey') return undefined;
          throw err;
        }
      },
      async write(k, data) {
        await c.send(new PutObjectCommand({ Bucket: bucket, Key: key(k), Body: data }));
      },
      async remove(k) {
        await c.send(new DeleteObjectCommand({ Bucket: bucket, Key: key(k) }));
      },
      async list(p) {
        const out: string[] = [];
        let token: string | undefined;
        do {
          const page = await c.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: key(p), ContinuationToken: token }));
          for (const o of page.Contents ?? []) out.push(o.Key!.slice(prefix.length + 1));
          token = page.IsTruncated ? page.NextContinuationToken : undefined;
        } while (token);
        return out.sort();
      },
    },
  };
}
