import { InvalidInputError } from '../core/errors.ts';
import { DIGEST_RE } from '../artifacts/manifest.ts';
import type { ArtifactStore } from '../artifacts/store.ts';
import { describeRun } from './runs.ts';
import { cliStore, withRuntime } from './runtime.ts';

// What `search` and `serve` are pointed at: a run id or a model artifact digest, resolved to the
// models and the chunks they use.

export interface ModelTarget {
  /** The base model (the prepareModel stage's artifact); absent when a single model digest was given. */
  base?: string;
  /** The fine-tuned model (the train stage's), or the model digest given. */
  finetuned?: string;
  /** The chunks the run made (for a model digest: the first found up its lineage). */
  chunks?: string;
  /** For messages: the run id or digest as given. */
  source: string;
}

/** Deep enough for any pipeline (model ← dataset ← queries ← chunks …); bounds the walk on a lineage loop. */
const MAX_LINEAGE_ARTIFACTS = 200;

/** The nearest `chunks` artifact up a model's lineage, breadth first. */
export async function chunksOfModel(store: ArtifactStore, digest: string): Promise<string | undefined> {
  const queue = [digest];
  const seen = new Set(queue);
  while (queue.length && seen.size <= MAX_LINEAGE_ARTIFACTS) {
    const m = await store.readManifest(queue.shift() as string).catch(() => undefined);
    if (!m) continue;
    if (m.kind === 'chunks') return m.digest;
    for (const input of Object.values(m.lineage.inputs)) {
      if (!seen.has(input)) {
        seen.add(input);
        queue.push(input);
      }
    }
  }
  return undefined;
}

/** A model artifact digest, checked to be one, with the chunks of the run that made it. */
export async function modelDigestTarget(store: ArtifactStore, digest: string): Promise<ModelTarget> {
  const m = await store.readManifest(digest);
  if (m.kind !== 'model') {
    throw new InvalidInputError(`artifact ${digest.slice(0, 12)} is a ${m.kind} artifact, not a model`, {
      where: store.location,
      hint: 'pass a run id, or the digest of a baseModel or model stage (`embedflow status --json` lists them)',
    });
  }
  return { finetuned: digest, chunks: await chunksOfModel(store, digest), source: digest };
}

/** A run's base model, fine-tuned model and chunks, from its finished stages. */
export async function runTarget(runId: string): Promise<ModelTarget> {
  return withRuntime(async (rt) => {
    const view = await describeRun(rt, runId);
    const target: ModelTarget = { source: runId };
    for (const s of view.stages) {
      if (!s.artifact || (s.status !== 'ran' && s.status !== 'cached')) continue;
      if (s.kind === 'prepareModel') target.base = s.artifact;
      else if (s.kind === 'train') target.finetuned = s.artifact;
      else if (s.kind === 'chunk') target.chunks = s.artifact;
    }
    if (!target.base && !target.finetuned) {
      throw new InvalidInputError(`run ${runId} has no finished model stage yet`, {
        hint: `\`embedflow status ${runId}\` shows its stages; wait for its model stage, or pass a model digest`,
      });
    }
    return target;
  });
}

/** A run id or a model digest (64 hex characters). */
export async function resolveTarget(target: string): Promise<{ target: ModelTarget; store: ArtifactStore }> {
  // A run's Temporal connection is closed once its stages are read: the store is all search and serve need.
  const resolved = DIGEST_RE.test(target) ? undefined : await runTarget(target);
  const store = await cliStore();
  return { target: resolved ?? (await modelDigestTarget(store, target)), store };
}
