import { copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { InvalidInputError } from '../activities/errors.ts';
import type { ArtifactStore } from '../artifacts/store.ts';
import type { Runtime } from '../workers/runtime.ts';
import { describeRun, listRuns, planOfRun } from './runs.ts';

// Store maintenance: what to keep (gc), what is broken (verify), and getting an artifact out (export).

export interface GcReport {
  keptRuns: string[];
  keptArtifacts: number;
  deleteArtifacts: Array<{ digest: string; kind: string; bytes: number }>;
  deleteMemo: Array<{ namespace: string; bytes: number }>;
  staleStaging: number;
  bytes: number;
  applied: boolean;
}

/**
 * Artifacts and memo entries unreachable from the last `keep` runs of each pipeline (and from any run
 * still open) are garbage. Reachability follows each artifact's lineage to its inputs, so a kept run
 * reruns fully cached after gc.
 */
export async function gc(rt: Runtime, opts: { keep: number; apply: boolean }): Promise<GcReport> {
  const runs = await listRuns(rt, 10_000);
  const byPipeline = new Map<string, typeof runs>();
  for (const r of runs) {
    const key = r.pipeline ?? r.runId;
    byPipeline.set(key, [...(byPipeline.get(key) ?? []), r]);
  }
  const kept = new Set<string>();
  for (const list of byPipeline.values()) {
    list.sort((a, b) => (b.startTime ?? '').localeCompare(a.startTime ?? ''));
    list.slice(0, opts.keep).forEach((r) => kept.add(r.runId));
    list.filter((r) => r.status === 'running').forEach((r) => kept.add(r.runId));
  }
  const roots = new Set<string>();
  for (const runId of kept) {
    const view = await describeRun(rt, runId);
    for (const s of view.stages) if (s.artifact) roots.add(s.artifact);
    const plan = await planOfRun(rt, runId).catch(() => undefined);
    for (const input of plan?.inputs ?? []) if (input.digest) roots.add(input.digest);
  }
  const store = rt.store;
  const reachable = new Set<string>();
  const memoKept = new Set<string>();
  const visit = async (digest: string): Promise<void> => {
    if (reachable.has(digest)) return;
    reachable.add(digest);
    const m = await store.readManifest(digest).catch(() => undefined);
    if (!m) return;
    for (const ns of (m.meta.memoNamespaces as string[] | undefined) ?? []) memoKept.add(ns);
    for (const input of Object.values(m.lineage.inputs)) await visit(input);
  };
  for (const d of roots) await visit(d);

  const deleteArtifacts: GcReport['deleteArtifacts'] = [];
  for (const digest of await store.listArtifacts()) {
    if (reachable.has(digest)) continue;
    const m = await store.readManifest(digest).catch(() => undefined);
    deleteArtifacts.push({ digest, kind: m?.kind ?? '?', bytes: m ? m.files.reduce((n, f) => n + f.bytes, 0) : 0 });
  }
  const deleteMemo = (await store.listMemo()).filter((m) => !memoKept.has(m.namespace));
  const stale = await store.listStale(60 * 60 * 1000);
  const report: GcReport = {
    keptRuns: [...kept],
    keptArtifacts: reachable.size,
    deleteArtifacts,
    deleteMemo,
    staleStaging: stale.length,
    bytes: deleteArtifacts.reduce((n, a) => n + a.bytes, 0) + deleteMemo.reduce((n, m) => n + m.bytes, 0),
    applied: opts.apply,
  };
  if (opts.apply) {
    const doomed = new Set(deleteArtifacts.map((a) => a.digest));
    for (const { key, digest } of await store.listCache()) if (doomed.has(digest)) await store.dropCache(key);
    for (const a of deleteArtifacts) await store.deleteArtifact(a.digest);
    for (const m of deleteMemo) await store.deleteMemo(m.namespace);
    await store.removeStale(60 * 60 * 1000);
  }
  return report;
}

export interface StoreVerifyReport {
  artifacts: number;
  corrupt: Array<{ digest: string; problems: string[] }>;
  danglingCache: string[];
  staleStaging: string[];
}

/** Re-hash every artifact; list cache entries pointing nowhere and staging folders left by crashes. */
export async function verifyStore(store: ArtifactStore): Promise<StoreVerifyReport> {
  const digests = await store.listArtifacts();
  const corrupt: StoreVerifyReport['corrupt'] = [];
  for (const d of digests) {
    const r = await store.verify(d);
    if (!r.ok) corrupt.push({ digest: d, problems: r.problems });
  }
  const present = new Set(digests);
  const danglingCache = (await store.listCache()).filter((c) => !present.has(c.digest)).map((c) => c.key);
  return { artifacts: digests.length, corrupt, danglingCache, staleStaging: await store.listStale(60 * 60 * 1000) };
}

/** Copy an artifact's files out of the store, in their native formats, into an empty folder. */
export async function exportArtifact(store: ArtifactStore, digest: string, dest: string): Promise<number> {
  const reader = await store.open(digest);
  const existing = await readdir(dest).catch(() => [] as string[]);
  if (existing.length) {
    throw new InvalidInputError(`export destination ${dest} is not empty`, { hint: 'choose a new or empty folder' });
  }
  for (const f of reader.manifest.files) {
    const target = join(dest, f.path);
    await mkdir(dirname(target), { recursive: true });
    await copyFile(reader.file(f.path), target);
  }
  await writeFile(join(dest, 'embedflow-manifest.json'), JSON.stringify(reader.manifest, null, 2));
  return reader.manifest.files.length;
}
