import { utimes } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import type { ArtifactReader, ArtifactStore } from '../artifacts/store.ts';
import type { Manifest } from '../artifacts/manifest.ts';
import type { Progress, StageContext, StageEnv, StageKind, StageLogger, StageResult } from '../dsl/stage.ts';
import { inputArtifactKind, isOptionalInput } from '../dsl/stage.ts';
import { z } from 'zod';
import {
  ArtifactCorruptError,
  ArtifactNotFoundError,
  CorruptInputError,
  type EmbedflowError,
  InvalidInputError,
  StageParamsError,
} from '../core/errors.ts';
import { asDiskFull } from '../artifacts/fsutil.ts';
import { recordMemoUse } from '../artifacts/memoUse.ts';
import { workerBudget } from './resourceBudget.ts';
import { sampleTreeRss } from './treeRss.ts';

/** Well inside the hour after which `gc` removes an untouched staging folder. */
const STAGING_TOUCH_MS = 5 * 60 * 1000;

export interface StageInvocation {
  runId: string;
  stageId: string;
  kind: StageKind;
  params: unknown;
  /** Input name → artifact digest. */
  inputs: Record<string, string | undefined>;
  cacheKey: string;
  fingerprint: string;
}

export interface StageRuntime {
  store: ArtifactStore;
  env: StageEnv;
  signal: AbortSignal;
  resume?: Progress;
  heartbeat(p: Progress): void;
  log: StageLogger;
}

export interface StageOutcome {
  digest: string;
  manifest: Manifest;
  stats: NonNullable<StageResult['stats']>;
  seconds: number;
  /** The stage handed back an artifact it made before (StageResult.reuse) instead of a new one. */
  reused: boolean;
}

/**
 * Run one stage kind against the store: open and verify its inputs, run it, publish its output
 * atomically, record the cache entry. The Temporal activity and the tests both come through here,
 * so a stage behaves the same under either.
 */
export async function runStageKind(inv: StageInvocation, rt: StageRuntime): Promise<StageOutcome> {
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const { kind } = inv;
  const parsed = kind.params.safeParse(inv.params);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new StageParamsError(`params.${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`, {
      where: `stage "${inv.stageId}" (${kind.kind})`,
    });
  }
  const inputs: Record<string, ArtifactReader | undefined> = {};
  for (const [name, want] of Object.entries(kind.inputs)) {
    const digest = inv.inputs[name];
    if (digest === undefined) {
      if (isOptionalInput(want)) continue;
      throw new InvalidInputError(`stage "${inv.stageId}" needs input "${name}" (${want}) and got none`);
    }
    const reader = await openInput(rt.store, inv, name, digest);
    if (reader.manifest.kind !== inputArtifactKind(want)) {
      throw new InvalidInputError(
        `stage "${inv.stageId}": input "${name}" is a "${reader.manifest.kind}" artifact, expected "${inputArtifactKind(want)}"`,
      );
    }
    inputs[name] = reader;
  }

  const out = await rt.store.newWriter();
  const workDir = await rt.store.workDir(inv.cacheKey);
  // Record the memo namespaces the stage uses: in its manifest once it publishes (`gc` keeps the memo
  // of kept artifacts), and before the first item is memoised in a record for the run, so a failed or
  // running stage's memo outlives `gc` for a resume. Records are written one after another, each
  // with every namespace so far, so a slow earlier write never replaces a later one.
  const memoUsed = new Set<string>();
  let recorded = Promise.resolve();
  const store: ArtifactStore = Object.create(rt.store, {
    memo: {
      value: async <V>(ns: string) => {
        if (!memoUsed.has(ns)) {
          memoUsed.add(ns);
          const namespaces = [...memoUsed];
          recorded = recorded.catch(() => {}).then(() => recordMemoUse(rt.store, inv.runId, inv.stageId, namespaces));
        }
        // Also when another caller opened `ns` first: no item goes in before its record is written.
        await recorded;
        return rt.store.memo<V>(ns);
      },
    },
  }) as ArtifactStore;
  // `gc` takes a staging folder untouched for an hour for a crashed writer's; a stage that writes its
  // output only at the end (training) keeps its folder fresh.
  const keepFresh = setInterval(() => {
    const now = new Date();
    void utimes(out.dir, now, now).catch(() => {});
  }, STAGING_TOUCH_MS);
  keepFresh.unref();
  const ctx: StageContext<z.output<typeof kind.params>> = {
    runId: inv.runId,
    stageId: inv.stageId,
    params: parsed.data,
    inputs: inputs as StageContext<unknown>['inputs'],
    out,
    workDir,
    store,
    signal: rt.signal,
    resume: rt.resume,
    env: rt.env,
    progress: (p) => rt.heartbeat(p),
    log: rt.log,
  };
  let result: StageResult;
  let release: (() => void) | undefined;
  let estimatedBytes: number | undefined;
  let ranAlone: string | undefined;
  let rss: ReturnType<typeof sampleTreeRss> | undefined;
  let workerPeakRssMB: number | undefined;
  try {
    ({ release, estimatedBytes, ranAlone } = await admit(inv, parsed.data, inputs, rt));
    rss = sampleTreeRss();
    result = (await kind.run(ctx)) ?? {};
    workerPeakRssMB = rss.stop();
    rt.signal.throwIfAborted();
  } catch (err) {
    await rt.store.discard(out);
    throw asDiskFull(err, `stage "${inv.stageId}" writing its output`);
  } finally {
    rss?.stop();
    release?.();
    clearInterval(keepFresh);
  }
  // Beside a measured peakRssMB, what the worker's budget assumed (resourceEstimates.ts). The worker's
  // own peak (its process and children, stages beside this one included) is there for every kind.
  // Why a stage ran by itself stays with its stats: a heartbeat carrying it can be overtaken by the end.
  const stats = {
    ...result.stats,
    ...(estimatedBytes ? { estimatedPeakMB: Math.round(estimatedBytes / 2 ** 20) } : {}),
    ...(workerPeakRssMB ? { workerPeakRssMB } : {}),
    ...(ranAlone ? { ranAlone } : {}),
  };
  const reused = result.reuse !== undefined;
  let manifest: Manifest;
  if (result.reuse !== undefined) {
    await rt.store.discard(out);
    const check = await rt.store.quickVerify(result.reuse);
    if (!check.ok) throw new ArtifactCorruptError(`stage "${inv.stageId}" reused artifact ${result.reuse}: ${check.problems.join('; ')}`);
    manifest = await rt.store.readManifest(result.reuse);
    if (manifest.kind !== kind.output) {
      throw new InvalidInputError(`stage "${inv.stageId}" reused a "${manifest.kind}" artifact as its "${kind.output}" output`);
    }
  } else {
    manifest = await rt.store.publish(out, {
      kind: kind.output,
      rows: result.rows,
      meta: { ...result.meta, stats, ...(memoUsed.size ? { memoNamespaces: [...memoUsed].sort() } : {}) },
      lineage: {
        stageId: inv.stageId,
        stageKind: kind.kind,
        params: parsed.data,
        inputs: Object.fromEntries(Object.entries(inv.inputs).filter((e): e is [string, string] => e[1] !== undefined)),
        codeFingerprint: inv.fingerprint,
        cacheKey: inv.cacheKey,
        runId: inv.runId,
        startedAt,
        finishedAt: new Date().toISOString(),
      },
    });
  }
  if (!kind.volatile && !result.failAfterPublish) await rt.store.putCache(inv.cacheKey, manifest.digest, { stage: inv.stageId, kind: kind.kind });
  // Checkpoints are only worth keeping until the artifact they lead to exists.
  await rt.store.removeWorkDir(inv.cacheKey);
  if (result.failAfterPublish) throw pointingAt(result.failAfterPublish, `${manifest.kind} artifact ${manifest.digest}`);
  return { digest: manifest.digest, manifest, stats, seconds: (performance.now() - started) / 1000, reused };
}

/** The stage's error, its `where` naming the artifact that holds the evidence (StageResult.failAfterPublish). */
function pointingAt(err: EmbedflowError, artifact: string): EmbedflowError {
  Object.defineProperty(err, 'where', { value: err.where ? `${err.where}; ${artifact}` : artifact, enumerable: true });
  return err;
}

/**
 * Wait until the stage's declared CPU and memory fit in this worker's budget, telling `status` so
 * (in the heartbeat, keeping the previous attempt's checkpoint for a resume).
 */
async function admit(
  inv: StageInvocation,
  params: unknown,
  inputs: Record<string, ArtifactReader | undefined>,
  rt: StageRuntime,
): Promise<{ release: () => void; estimatedBytes?: number; ranAlone?: string }> {
  const needs = await inv.kind.resources?.(params, inputs as StageContext<unknown>['inputs'], rt.env);
  if (!needs) return { release: () => {} };
  let ranAlone: string | undefined;
  const release = await workerBudget(rt.env.vars, rt.env.home).admit(needs, {
    signal: rt.signal,
    stage: `${inv.runId}/${inv.stageId}`,
    onWait: (message) => rt.heartbeat({ ...rt.resume, done: rt.resume?.done ?? 0, message }),
    onAlone: (message) => {
      ranAlone = message;
      rt.log.warn(`stage "${inv.stageId}" ${message}`);
      rt.heartbeat({ ...rt.resume, done: rt.resume?.done ?? 0, message: `running alone: ${message}` });
    },
  });
  return { release, estimatedBytes: needs.memoryBytes, ...(ranAlone ? { ranAlone } : {}) };
}

/**
 * Open an input. A corrupt one is quarantined so the stage that produced it is rebuilt, which takes a
 * new execution of the run: this one fails for good. An attempt (or a parallel stage) that then finds
 * the input gone fails the same way, not as a bare "not in the store".
 */
async function openInput(store: ArtifactStore, inv: StageInvocation, name: string, digest: string): Promise<ArtifactReader> {
  try {
    return await store.open(digest);
  } catch (err) {
    if (err instanceof ArtifactCorruptError) {
      // Read before quarantining it, for the producing stage's id; an unreadable manifest names none.
      const manifest = await store.readManifest(digest).catch(() => undefined);
      await store.quarantine(digest);
      throw corruptInput(inv, name, digest, manifest, err);
    }
    if (err instanceof ArtifactNotFoundError) {
      const aside = await store.quarantined(digest);
      if (aside) throw corruptInput(inv, name, digest, aside.manifest, err);
    }
    throw err;
  }
}

function corruptInput(inv: StageInvocation, name: string, digest: string, manifest: Manifest | undefined, cause: Error): CorruptInputError {
  const producer = manifest?.lineage.stageId;
  return new CorruptInputError(
    `the input artifact ${digest} ("${name}") of stage "${inv.stageId}"${producer ? ` (produced by stage "${producer}")` : ''} was corrupt and has been quarantined`,
    { hint: `\`embedflow resume ${inv.runId}\` rebuilds it`, cause },
  );
}
