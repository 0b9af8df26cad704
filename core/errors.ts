// Named error classes: the vocabulary every layer shares, so this module imports nothing of the project.
// Their `name` becomes the Temporal failure type, so workflows and the CLI can tell what failed without
// parsing messages. Non-retryable types are listed once, in NON_RETRYABLE. No Node imports: the workflow
// bundle imports it.

export class EmbedflowError extends Error {
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

// Bad pipeline files and parameters: found at load time, before anything runs.
export class PipelineLoadError extends EmbedflowError {}
export class PipelineValidationError extends EmbedflowError {}
export class StageParamsError extends EmbedflowError {}
export class UnknownStageKindError extends EmbedflowError {}

// Bad input data.
export class CorpusEmptyError extends EmbedflowError {}
export class CorpusPathError extends EmbedflowError {}
export class InvalidInputError extends EmbedflowError {}
export class ModelNotFoundError extends EmbedflowError {}
export class EvalQuestionsError extends EmbedflowError {}

// The store.
export class ArtifactCorruptError extends EmbedflowError {}
export class ArtifactNotFoundError extends EmbedflowError {}
/**
 * A stage's input was found corrupt and quarantined. Not retried: only a new execution of the run
 * (`resume`) rebuilds it, by rerunning the stage that produced it.
 */
export class CorruptInputError extends EmbedflowError {}
export class StorePathError extends EmbedflowError {}
export class DiskFullError extends EmbedflowError {}
/** Object store: credentials refused, access denied, or the bucket does not exist. */
export class StoreAccessError extends EmbedflowError {}
/** Object store unreachable or failing (network, 5xx): retrying may help. */
export class StoreUnavailableError extends EmbedflowError {}

// LLM providers.
export class LlmUnauthorizedError extends EmbedflowError {}
export class LlmModelNotFoundError extends EmbedflowError {}
export class LlmConfigError extends EmbedflowError {}
export class LlmUnavailableError extends EmbedflowError {}

// Training and other child processes.
export class TrainerFailedError extends EmbedflowError {}
export class TrainerConfigError extends EmbedflowError {}
export class OutOfMemoryError extends EmbedflowError {}
/** A model cannot be exported to the `model` artifact (unsupported layout, ONNX disagrees with PyTorch). */
export class ModelExportError extends EmbedflowError {}

// Evaluation.
export class QualityGateError extends EmbedflowError {}

// Configuration (environment, cluster connection).
export class ConfigError extends EmbedflowError {}

// Runs.
export class RunNotFoundError extends EmbedflowError {}

// Distributed mode.
export class WorkerCodeMismatchError extends EmbedflowError {}

/** Failure types that retrying cannot fix. Used as the retry policy's nonRetryableErrorTypes. */
export const NON_RETRYABLE = [
  'PipelineLoadError',
  'PipelineValidationError',
  'StageParamsError',
  'UnknownStageKindError',
  'CorpusEmptyError',
  'CorpusPathError',
  'InvalidInputError',
  'ModelNotFoundError',
  'EvalQuestionsError',
  'ArtifactNotFoundError',
  'CorruptInputError',
  'StorePathError',
  'StoreAccessError',
  'LlmUnauthorizedError',
  'LlmModelNotFoundError',
  'LlmConfigError',
  'TrainerConfigError',
  'OutOfMemoryError',
  'ModelExportError',
  'QualityGateError',
  'WorkerCodeMismatchError',
  'ConfigError',
  'RunNotFoundError',
] as const;
