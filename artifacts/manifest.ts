import { z } from 'zod';
import { hashJson } from './hash.ts';

export const DIGEST_RE = /^[0-9a-f]{64}$/;
export const Digest = z.string().regex(DIGEST_RE, 'expected a 64-character sha256 hex digest');

export const ManifestFile = z.object({
  path: z.string(),
  sha256: Digest,
  bytes: z.number().int().nonnegative(),
});
export type ManifestFile = z.infer<typeof ManifestFile>;

/** Lineage: who produced the artifact, from what. Not part of the digest. */
export const Lineage = z.object({
  stageId: z.string().optional(),
  stageKind: z.string().optional(),
  params: z.unknown().optional(),
  inputs: z.record(z.string(), Digest).default({}),
  codeFingerprint: z.string().optional(),
  cacheKey: z.string().optional(),
  runId: z.string().optional(),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
});
export type Lineage = z.infer<typeof Lineage>;

export const Manifest = z.object({
  formatVersion: z.literal(1),
  /** The artifact kind (`chunks`, `model`, ...). Part of the digest. */
  kind: z.string().min(1),
  /** Content digest: sha256 over kind and the sorted (path, sha256) list. */
  digest: Digest,
  files: z.array(ManifestFile),
  /** Row counts per table file, where the artifact holds tables. */
  rows: z.record(z.string(), z.number().int().nonnegative()).default({}),
  /** The stage's own counts and notes (skipped files with reasons, filter counts...). */
  meta: z.record(z.string(), z.unknown()).default({}),
  lineage: Lineage,
  createdAt: z.string(),
});
export type Manifest = z.infer<typeof Manifest>;

/** The content digest: what the artifact holds (kind and files), not who made it or when. */
export function contentDigest(kind: string, files: ManifestFile[]): string {
  return hashJson({ kind, files: files.map((f) => [f.path, f.sha256]).sort() });
}

/** How a manifest is stored: the same bytes on every backend. */
export function manifestText(manifest: Manifest): string {
  return JSON.stringify(manifest, null, 2);
}

/** A quarantined copy's manifest if it parses (an unreadable manifest may be why it was quarantined). */
export function parseManifestOrUndefined(text: string): Manifest | undefined {
  try {
    return Manifest.parse(JSON.parse(text));
  } catch {
    return undefined;
  }
}
