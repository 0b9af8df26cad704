// The workflow bundle's entry: every workflow type a worker serves.
export { runPipeline } from './pipeline.ts';
