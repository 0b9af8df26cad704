import { hashJson } from './hash.ts';

export interface CacheKeyInput {
  kind: string;
  fingerprint: string;
  params: unknown;
  /** Input name → artifact digest (absent optional inputs are left out). */
  inputs: Record<string, string | undefined>;
}

/** A stage's cache key: same key → same artifact → the stage is skipped. */
export function stageCacheKey(k: CacheKeyInput): string {
  return hashJson({ v: 1, kind: k.kind, fingerprint: k.fingerprint, params: k.params, inputs: k.inputs });
}
