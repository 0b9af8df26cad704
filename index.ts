// The public authoring API: what a pipeline file or a custom stage kind imports as `from 'embedflow'`.
// Built-in stage kinds are in 'embedflow/kinds'. Deep paths ('embedflow/dsl/dsl.ts') still
// resolve, but only what is exported here is the API that stays put when files move.
export { type DroppedDefault, type Pipeline, type PipelineDef, type PipelineInputDecl, type StageDecl, FILES_KIND, definePipeline, extendPipeline, stage } from './dsl/dsl.ts';
export type {
  ActivitySpec,
  Duration,
  InputKinds,
  InputReaders,
  Progress,
  Queue,
  ResourceNeeds,
  RetrySpec,
  StageContext,
  StageEnv,
  StageKind,
  StageKindSpec,
  StageLogger,
  StageResult,
} from './dsl/stage.ts';
export { defineStage } from './dsl/stage.ts';
export * from './core/errors.ts';
