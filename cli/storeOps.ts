import { copyFile, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { InvalidInputError } from '../core/errors.ts';
import { MetricsJson } from '../activities/evaluation/metricsJson.ts';
import { CARD_FILE, type CardEvaluation, type CardLineage, fillModelCard } from '../activities/models/modelCard.ts';
import { listMemoUse } from '../artifacts/memoUse.ts';
import type { ArtifactStore } from '../artifacts/store.ts';
import type { Runtime } from '../workers/runtime.ts';
import { describeRun, listRuns, planOfRun } from './runs.ts';
import { METRICS_FILE } from '../activities/artifactKinds/evaluationArtifact.ts';

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
 * Artifacts and memo entries unreachable from the last `keep` runs of each pipeline on this store
 * (and from any of its runs still open) are garbage. Reachability follows each artifact's lineage to
 * its inputs, so a kept run reruns fully cached after gc; the memo a kept run's unfinished stages
 * opened is kept too, so resuming it pays for nothing twice.
 *
 * Runs of other stores on the same Temporal namespace are told apart by the store location recorded
 * when they started: start runs and run gc with the same store URL (on a shared filesystem, the same
 * mount path). Runs started before locations were recorded count as this store's.
 */
export async function gc(rt: Runtime, opts: { keep: number; apply: boolean }): Promise<GcReport> {
  const store = rt.store;
  // Listed before the runs: whatever a run started after this listing creates is not up for deletion.
  const artifacts = await store.listArtifacts();
  const memo = await store.listMemo();
  const runs = (await listRuns(rt, 10_000)).filter((r) => r.store === undefined || r.store === store.location);
  // A resumed run is listed once per execution; it counts once towards `keep`, as its newest one.
  const newest = new Map<string, (typeof runs)[number]>();
  for (const r of runs) if ((newest.get(r.runId)?.startTime ?? '') <= (r.startTime ?? '')) newest.set(r.runId, r);
  const byPipeline = new Map<string, typeof runs>();
  for (const r of newest.values()) {
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
  const reachable = new Set<string>();
  const memoUse = await listMemoUse(store);
  const memoKept = new Set(memoUse.filter((u) => kept.has(u.runId)).flatMap((u) => u.namespaces));
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
  for (const digest of artifacts) {
    if (reachable.has(digest)) continue;
    const m = await store.readManifest(digest).catch(() => undefined);
    deleteArtifacts.push({ digest, kind: m?.kind ?? '?', bytes: m ? m.files.reduce((n, f) => n + f.bytes, 0) : 0 });
  }
  const deleteMemo = memo.filter((m) => !memoKept.has(m.namespace));
  const stale = await store.listStale(STALE_STAGING_MS);
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
    // Records go with the runs gc lets go, and with runs the server has forgotten; a record of a run
    // too new to be in the listing is young.
    const listed = new Set(runs.map((r) => r.runId));
    const forgotten = Date.now() - FORGOTTEN_RUN_MS;
    for (const u of memoUse) {
      if (!kept.has(u.runId) && (listed.has(u.runId) || Date.parse(u.at) < forgotten)) await store.deleteDoc(u.name);
    }
    await store.removeStale(STALE_STAGING_MS);
  }
  return report;
}

/** A staging folder with nothing in it touched for this long belongs to a writer that died. */
const STALE_STAGING_MS = 60 * 60 * 1000;
const FORGOTTEN_RUN_MS = 24 * 60 * 60 * 1000;

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
  return { artifacts: digests.length, corrupt, danglingCache, staleStaging: await store.listStale(STALE_STAGING_MS) };
}

/**
 * Copy an artifact's files out of the store, in their native formats, into an empty folder. A model's
 * README.md card gets its evaluation table (the store's evaluations of it, with CIs) and lineage filled.
 */
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
  if (reader.manifest.kind === 'model' && reader.manifest.files.some((f) => f.path === CARD_FILE)) {
    const card = await readFile(join(dest, CARD_FILE), 'utf8');
    const filled = fillModelCard(card, { digest, evaluations: await evaluationsOf(store, digest), lineage: await lineageRows(store, digest) });
    await writeFile(join(dest, CARD_FILE), filled);
  }
  return reader.manifest.files.length;
}

/** The store's evaluations made from model `digest` (as base or as fine-tuned), newest first. */
async function evaluationsOf(store: ArtifactStore, digest: string): Promise<CardEvaluation[]> {
  const found: Array<CardEvaluation & { createdAt: string }> = [];
  for (const d of await store.listArtifacts()) {
    const m = await store.readManifest(d).catch(() => undefined);
    if (m?.kind !== 'evaluation') continue;
    const role = Object.entries(m.lineage.inputs).find(([, input]) => input === digest)?.[0];
    if (role !== 'base' && role !== 'finetuned') continue;
    const reader = await store.open(d);
    const parsed = MetricsJson.pick({ generated: true, human: true, pairedTests: true, meta: true }).safeParse(
      JSON.parse(await readFile(reader.file(METRICS_FILE), 'utf8').catch(() => 'null')),
    );
    // An evaluation written by an older schema is left out rather than shown half-read.
    if (parsed.success) found.push({ digest: d, system: role, metrics: parsed.data, createdAt: m.createdAt });
  }
  return found.sort((a, b) => b.createdAt.localeCompare(a.createdAt)).map(({ createdAt: _, ...e }) => e);
}

/** Every artifact model `digest` was made from, breadth first, each once, named by its path of input names. */
async function lineageRows(store: ArtifactStore, digest: string): Promise<CardLineage[]> {
  const rows: CardLineage[] = [];
  const seen = new Set([digest]);
  const queue: Array<{ digest: string; path: string }> = [{ digest, path: '' }];
  for (let next = queue.shift(); next; next = queue.shift()) {
    const m = await store.readManifest(next.digest).catch(() => undefined);
    for (const [name, input] of Object.entries(m?.lineage.inputs ?? {})) {
      if (seen.has(input)) continue;
      seen.add(input);
      const path = next.path ? `${next.path}.${name}` : name;
      const kind = (await store.readManifest(input).catch(() => undefined))?.kind ?? null;
      rows.push({ path, kind, digest: input });
      queue.push({ digest: input, path });
    }
  }
  return rows;
}
