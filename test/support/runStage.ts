import { testCacheDir } from './cli.ts';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stageCacheKey } from '../../artifacts/cacheKey.ts';
import type { Manifest } from '../../artifacts/manifest.ts';
import { type ArtifactStore, LocalStore } from '../../artifacts/store.ts';
import { runStageKind } from '../../engine/stageRunner.ts';
import { snapshotInput } from '../../engine/snapshotInput.ts';
import type { Progress, StageKind } from '../../dsl/stage.ts';
import { PROJECT_ROOT } from '../../workers/config.ts';

/** A fresh store in a temporary directory. */
export async function tempStore(prefix = 'ef-store-'): Promise<LocalStore> {
  return new LocalStore(await mkdtemp(join(tmpdir(), prefix)));
}

/** Snapshot a directory (or file) into the store as a `files` artifact, as the CLI does for --corpus. */
export async function filesArtifact(store: ArtifactStore, path: string, type: 'directory' | 'file' = 'directory'): Promise<string> {
  return (await snapshotInput(store, { name: 'test', type, path })).digest;
}

export interface RunStageOptions {
  params?: unknown;
  /** Input name → artifact digest. */
  inputs?: Record<string, string | undefined>;
  store: ArtifactStore;
  /** Environment variables the stage sees (secrets...). */
  vars?: Record<string, string | undefined>;
  signal?: AbortSignal;
  resume?: Progress;
  onProgress?: (p: Progress) => void;
}

/**
 * Run a stage kind against a real store exactly as the worker does (same runner), without Temporal:
 * for stage tests. Returns the published manifest and the stage's stats.
 */
export async function runStage(kind: StageKind, opts: RunStageOptions): Promise<{ manifest: Manifest; digest: string; stats: Record<string, unknown> }> {
  const params = kind.params.parse(opts.params ?? {});
  const inputs = opts.inputs ?? {};
  const key = stageCacheKey({ kind: kind.kind, fingerprint: 'test', params, inputs });
  const outcome = await runStageKind(
    { runId: 'test', stageId: kind.kind, kind, params, inputs, cacheKey: key, fingerprint: 'test' },
    {
      store: opts.store,
      env: {
        home: join(testCacheDir(), 'embedflow-test-home'),
        python: join(PROJECT_ROOT, '.venv', 'bin', 'python'),
        projectRoot: PROJECT_ROOT,
        // This test process's budget alone, as before workers of a home shared one: test files run side by side.
        vars: { EMBEDFLOW_BUDGET_DIR: join(tmpdir(), `ef-test-budget-${process.pid}`), ...opts.vars },
      },
      signal: opts.signal ?? new AbortController().signal,
      resume: opts.resume,
      heartbeat: (p) => opts.onProgress?.(p),
      log: { info: () => {}, warn: () => {} },
    },
  );
  return { manifest: outcome.manifest, digest: outcome.digest, stats: outcome.stats };
}
