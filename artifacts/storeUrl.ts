import { fileURLToPath } from 'node:url';
import { LocalStore } from './fsStore.ts';
import { S3Store } from './s3Store.ts';
import type { ArtifactStore } from './store.ts';

/**
 * Open a store from its URL: `s3://bucket/prefix` is an S3Store (the AWS SDK's AWS_* variables in
 * `env`, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL for S3-compatible servers, EMBEDFLOW_S3_PART_SIZE;
 * its local cache under `<home>/s3cache`); a `file://` URL or anything else is a filesystem path.
 */
export function openStoreUrl(url: string, opts: { env: Record<string, string | undefined>; home: string }): ArtifactStore {
  if (url.startsWith('s3://')) return S3Store.fromUrl(url, opts);
  return new LocalStore(url.startsWith('file://') ? fileURLToPath(url) : url);
}
