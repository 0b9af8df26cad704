// The built-in stage kinds, for pipeline files: `import { ingest, chunk, train } from 'embedflow/kinds'`.
// `embedflow kinds` lists them with their parameters.
export { buildDataset } from './activities/buildDataset.ts';
export { chunk } from './activities/chunk.ts';
export { embed } from './activities/embed.ts';
export { evaluate } from './activities/evaluate.ts';
export { filterQueries } from './activities/filterQueries.ts';
export { generateEvalQueries } from './activities/generateEvalQueries.ts';
export { generateQueries } from './activities/generateQueries.ts';
export { importQuestions } from './activities/importQuestions.ts';
export { ingest } from './activities/ingest.ts';
export { mineNegatives } from './activities/mineNegatives.ts';
export { prepareModel } from './activities/prepareModel.ts';
export { prepareReranker } from './activities/prepareReranker.ts';
export { report } from './activities/report.ts';
export { train } from './activities/train.ts';
export { trainReranker } from './activities/trainReranker.ts';
