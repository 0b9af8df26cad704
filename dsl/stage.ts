import type { z } from 'zod';
import type { ArtifactReader, ArtifactStore, ArtifactWriter } from '../artifacts/store.ts';
import { type EmbedflowError, PipelineValidationError } from '../core/errors.ts';
import { callerModule } from './callsite.ts';

export type Queue = 'cpu' | 'gpu';

/** Durations as Temporal accepts them: '90s', '2h', or milliseconds. */
export type Duration = string | number;

export interface RetrySpec {
  maximumAttempts?: number;
  initialInterval?: Duration;
  backoffCoefficient?: number;
  maximumInterval?: Duration;
}

/** How a stage's activity is scheduled; a stage kind sets defaults, a pipeline may override them. */
export interface ActivitySpec {
  queue?: Queue;
  startToCloseTimeout?: Duration;
  heartbeatTimeout?: Duration;
  retry?: RetrySpec;
}

/** An input's artifact kind; a trailing '?' makes the input optional. */
export type InputKinds = Record<string, string>;

export interface Progress {
  done: number;
  total?: number;
  /** What `done` counts: 'chunks', 'steps', ... */
  unit?: string;
  message?: string;
  /** Stage-specific resume point (e.g. last checkpoint path); read back as `ctx.resume` on a retry. */
  checkpoint?: unknown;
  [extra: string]: unknown;
}

export interface StageLogger {
  info(message: string, attrs?: Record<string, unknown>): void;
  warn(message: string, attrs?: Record<string, unknown>): void;
}

/** What the engine gives a stage implementation. Everything crossing Temporal is a reference; data is here. */
export interface StageContext<P, I extends InputKinds = InputKinds> {
  readonly runId: string;
  readonly stageId: string;
  readonly params: P;
  readonly inputs: InputReaders<I>;
  /** Where the output artifact's files go; published atomically when `run` returns. */
  readonly out: ArtifactWriter;
  /** Persistent scratch directory for this stage's cache key: survives retries, crashes and resumes. */
  readonly workDir: string;
  readonly store: ArtifactStore;
  /** Aborted when Temporal cancels the activity or the worker shuts down. Kill child processes on it. */
  readonly signal: AbortSignal;
  /** The last progress reported by the previous attempt of this activity, if any. */
  readonly resume: Progress | undefined;
  readonly env: StageEnv;
  /** Report progress (sent as a Temporal heartbeat, throttled). Long stages must call this regularly. */
  progress(p: Progress): void;
  readonly log: StageLogger;
}

/** Machine-level facts every stage may need, injected by the worker (tests inject their own). */
export interface StageEnv {
  /** EMBEDFLOW_HOME: the state folder. */
  home: string;
  /** The Python interpreter of the project's venv (trainer/). */
  python: string;
  /** The project root (where trainer/ lives). */
  projectRoot: string;
  /** Environment variables, read at run time (secrets are read here, never passed as parameters). */
  vars: Readonly<Record<string, string | undefined>>;
}

export type InputReaders<I extends InputKinds> = {
  [K in keyof I]: I[K] extends `${string}?` ? ArtifactReader | undefined : ArtifactReader;
};

export interface StageResult {
  /** The stage's own counts, shown by the CLI and in `--json` (documents, chunks, llmCalls, memoHits...). */
  stats?: Record<string, number | string | boolean>;
  /** Row counts per table file of the output. */
  rows?: Record<string, number>;
  /** Extra manifest metadata (skipped files and reasons, filter counts, score distributions...). */
  meta?: Record<string, unknown>;
  /**
   * An existing artifact that already is this stage's output (a volatile stage recognising content it
   * made before): it is returned as is and whatever was written to `out` is discarded.
   */
  reuse?: string;
  /**
   * Publish the output like any other artifact (same lineage), then fail the stage with this error,
   * its `where` naming the published artifact. For a check whose failure is the finding (evaluate's
   * quality gate): the evidence must outlive the failure so the user can open it, yet it is not
   * recorded in the cache, so a rerun with the same inputs checks again and fails again instead of
   * being served an output that reads as success.
   */
  failAfterPublish?: EmbedflowError;
}

/** What one execution of a stage needs of its worker's machine: the worker admits it only when it fits. */
export interface ResourceNeeds {
  /** 'heavy': keeps cores busy (training, embedding a corpus); 'light' (the default) runs beside anything. */
  cpu?: 'heavy' | 'light';
  /** Cores a heavy stage keeps busy; default every core of the worker (torch and ONNX Runtime use them all). */
  cores?: number;
  /** Estimated peak resident memory, in bytes. */
  memoryBytes?: number;
}

export interface StageKindSpec<P extends z.ZodType, I extends InputKinds, O extends string> {
  /** Unique name of the kind, e.g. 'chunk'. */
  kind: string;
  description?: string;
  /** Parameters, validated when the pipeline loads; defaults filled in. */
  params: P;
  inputs: I;
  /** The artifact kind this stage produces. */
  output: O;
  /** Salts the automatic code fingerprint (bump to force a rebuild when only data files changed). */
  version?: string;
  /** Files beside the code that change its behaviour (e.g. a Python script), relative to the defining module. */
  codeFiles?: string[];
  /** Never served from the cache (e.g. reading the outside world). */
  volatile?: boolean;
  defaults?: ActivitySpec;
  /**
   * What an execution with these parameters and inputs needs of the worker's CPU and memory; light
   * when absent. Asked once the inputs are open, before `run`; it may read them (a model's config).
   */
  resources?(params: z.output<P>, inputs: InputReaders<I>, env: StageEnv): ResourceNeeds | Promise<ResourceNeeds>;
  run(ctx: StageContext<z.output<P>, I>): Promise<StageResult | void>;
}

export interface StageKind<P extends z.ZodType = z.ZodType, I extends InputKinds = InputKinds, O extends string = string>
  extends StageKindSpec<P, I, O> {
  /** Absolute path of the module that defined the kind: the root of its code fingerprint. */
  readonly module: string;
}

const registry = new Map<string, StageKind>();

/**
 * Define a stage kind. Built-in kinds live one per file in activities/; pipeline files may define
 * their own. The defining module is found from the call stack so its code can be fingerprinted.
 */
export function defineStage<P extends z.ZodType, I extends InputKinds, O extends string>(
  spec: StageKindSpec<P, I, O>,
): StageKind<P, I, O> {
  const module = callerModule([import.meta.url]);
  if (!module) {
    throw new PipelineValidationError(`could not find the module that defines stage kind "${spec.kind}"`, {
      hint: 'call defineStage at the top level of a .ts/.js module',
    });
  }
  const existing = registry.get(spec.kind);
  if (existing && existing.module !== module) {
    throw new PipelineValidationError(`stage kind "${spec.kind}" is defined twice`, {
      where: `${existing.module} and ${module}`,
      hint: 'give one of them another `kind` name',
    });
  }
  const kind: StageKind<P, I, O> = { ...spec, module };
  registry.set(spec.kind, kind as unknown as StageKind);
  return kind;
}

export function getStageKind(kind: string): StageKind | undefined {
  return registry.get(kind);
}

export function registeredStageKinds(): StageKind[] {
  return [...registry.values()];
}

export function isOptionalInput(kind: string): boolean {
  return kind.endsWith('?');
}

export function inputArtifactKind(kind: string): string {
  return kind.endsWith('?') ? kind.slice(0, -1) : kind;
}
