// The embedded local default: the whole recipe on the example corpus with the packaged models, sized to
// finish in minutes on a laptop CPU. `npm start` runs it.
import { extendPipeline } from 'embedflow';
import recipe from './domain-embedding.ts';

export default extendPipeline(recipe, {
  name: 'quickstart',
  inputs: {
    // Hand-written questions for the example corpus, so the report has a human-written eval set too.
    // They belong to the example corpus: `--corpus ./my-docs` alone runs without them.
    evalQuestions: { default: '../examples/questions.jsonl', pairedWith: 'corpus', description: 'human-written eval set' },
  },
  stages: {
    // Questions written by rule from the chunks' sentences: instant on a CPU. For an LLM's questions,
    // `--set 'generatedQueries.llm={"provider":"local"}'` (an in-process GGUF) or an OpenAI-compatible server.
    generatedQueries: { params: { llm: { provider: 'ict', form: 'question' }, queriesPerChunk: 4 } },
    // The eval set from another generator than training's: the chunks' own sentences.
    evalQueries: { params: { llm: { provider: 'ict', form: 'sentence' } } },
    // Small corpus: short chunks give more of them to learn from.
    chunks: { params: { maxTokens: 128, overlap: 16 } },
    // Two epochs over a few dozen pairs: CPU minutes, not hours. On 31 chunks the base already ranks 94%
    // of the human questions first and a fine-tune has little to learn (at the recipe's fixed half share it
    // lost 3 of 87): here the share is chosen on dev, where the base is kept unless the fine-tune's gain is
    // beyond noise, and the report says which.
    model: { params: { epochs: 2, batchSize: 16, checkpointEvery: 20, logEvery: 5, maxSeqLength: 160, mergeWithBase: 'auto' } },
  },
});
