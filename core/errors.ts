// Named error classes: the vocabulary every layer shares, so this module imports nothing of the project.
// Their `name` becomes the Temporal failure type, so workflows and the CLI can tell what failed without
// parsing messages. Each class says itself whether a retry can help and whether only a new run (with
// its input or settings changed) can; NON_RETRYABLE and the CLI's advice are derived from that. No Node
// imports: the workflow bundle imports it.

export class EmbedflowError extends Error {
  /** A retry of the same activity can help (a server back, space freed); false: the run fails at once. */
  static readonly retryable: boolean = true;
  /**
   * The cause is part of the run itself (its pipeline file, parameters or input data): `resume`
   * replays them, so only a new run with them changed can fix it.
   */
  static readonly fixedByNewRun: boolean = false;
  /** Where the problem is (file, stage, field, URL...), shown beside the message. */
  readonly where?: string;
  /** What the user can do about it. */
  readonly hint?: string;
  constructor(message: string, opts: { where?: string; hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    if (opts.where !== undefined) this.where = opts.where;
    if (opts.hint !== undefined) this.hint = opts.hint;
  }
  /** One paragraph a person can act on: what, where, how to fix. */
  describe(): string {
    return [`${this.name}: ${this.message}`, this.where && `  at: ${this.where}`, this.hint && `  fix: ${this.hint}`]
      .filter(Boolean)
      .join('\n');
  }
}

/** Retrying cannot help; resuming after fixing something outside the run (a key, a file, memory) can. */
class Permanent extends EmbedflowError {
  static override readonly retryable: boolean = false;
}

/** The run's own input or settings are wrong: fix them and start a new run. */
class OfTheRun extends Permanent {
  static override readonly fixedByNewRun: boolean = true;
}

// Bad pipeline files and parameters: found at load time, before anything runs.
export class PipelineLoadError extends OfTheRun {}
export class PipelineValidationError extends OfTheRun {}
export class StageParamsError extends OfTheRun {}
export class UnknownStageKindError extends OfTheRun {}

// Bad input data.
export class CorpusEmptyError extends OfTheRun {}
export class CorpusPathError extends OfTheRun {}
export class InvalidInputError extends Permanent {}
export class ModelNotFoundError extends OfTheRun {}
export class EvalQuestionsError extends OfTheRun {}

// The store.
export class ArtifactCorruptError extends EmbedflowError {}
export class ArtifactNotFoundError extends Permanent {}
/**
 * A stage's input was found corrupt and quarantined. Not retried: only a new execution of the run
 * (`resume`) rebuilds it, by rerunning the stage that produced it.
 */
export class CorruptInputError extends Permanent {}
export class StorePathError extends Permanent {}
export class DiskFullError extends EmbedflowError {}
/** Object store: credentials refused, access denied, or the bucket does not exist. */
export class StoreAccessError extends Permanent {}
/** Object store unreachable or failing (network, 5xx): retrying may help. */
export class StoreUnavailableError extends EmbedflowError {}

// LLM providers.
export class LlmUnauthorizedError extends Permanent {}
export class LlmModelNotFoundError extends OfTheRun {}
export class LlmConfigError extends OfTheRun {}
export class LlmUnavailableError extends EmbedflowError {}

// Training and other child processes.
export class TrainerFailedError extends EmbedflowError {}
export class TrainerConfigError extends OfTheRun {}
export class OutOfMemoryError extends Permanent {}
/** A model cannot be exported to the `model` artifact (unsupported layout, ONNX disagrees with PyTorch). */
export class ModelExportError extends Permanent {}

// Evaluation.
export class QualityGateError extends OfTheRun {}

// Configuration (environment, cluster connection).
export class ConfigError extends Permanent {}

// Runs.
export class RunNotFoundError extends Permanent {}

// Distributed mode.
export class WorkerCodeMismatchError extends Permanent {}

/** Every named error, so the lists below are derived, never typed out. */
const ERRORS = [
  PipelineLoadError,
  PipelineValidationError,
  StageParamsError,
  UnknownStageKindError,
  CorpusEmptyError,
  CorpusPathError,
  InvalidInputError,
  ModelNotFoundError,
  EvalQuestionsError,
  ArtifactCorruptError,
  ArtifactNotFoundError,
  CorruptInputError,
  StorePathError,
  DiskFullError,
  StoreAccessError,
  StoreUnavailableError,
  LlmUnauthorizedError,
  LlmModelNotFoundError,
  LlmConfigError,
  LlmUnavailableError,
  TrainerFailedError,
  TrainerConfigError,
  OutOfMemoryError,
  ModelExportError,
  QualityGateError,
  ConfigError,
  RunNotFoundError,
  WorkerCodeMismatchError,
] as const;

/** Failure types that retrying cannot fix: the retry policy's nonRetryableErrorTypes. */
export const NON_RETRYABLE: readonly string[] = ERRORS.filter((e) => !e.retryable).map((e) => e.name);

/** Whether a failure of this type is fixed by a new run with changed input or settings, not by `resume`. */
export function fixedByNewRun(errorType: string | undefined): boolean {
  return ERRORS.some((e) => e.name === errorType && e.fixedByNewRun);
}

