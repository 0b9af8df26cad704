// Production variant: llm-jp-4-8b-instruct on a vLLM (OpenAI-compatible) server writes the training
// queries, a different model writes the eval set, and training runs on a GPU worker with the seed
// project's hyper-parameters (MNRL, batch 128, many epochs).
//
//   export EMBEDFLOW_LLM_API_KEY=...        # if the server wants one (read at run time, never stored)
//   embedflow worker --queue gpu            # on the GPU machine
//   embedflow run pipelines/llm-jp-vllm.ts --corpus ./whitepaper --eval-questions ./questions.jsonl
//
// To compare against a bge-reranker-v2-m3 you have on disk (a folder with tokenizer.json and an ONNX
// export, e.g. from `optimum-cli export onnx --task text-classification`) instead of the trained
// reranker, add a `prepareReranker` stage in its place:
//   add: [stage({ id: 'reranker', kind: prepareReranker, params: { model: '/models/bge-reranker-v2-m3', maxLength: 512 } })]
import { extendPipeline, stage } from 'embedflow';
import { trainReranker } from 'embedflow/kinds';
import recipe from './domain-embedding.ts';

const VLLM = process.env.EMBEDFLOW_VLLM_URL ?? 'http://127.0.0.1:8000/v1';
const EVAL_LLM = process.env.EMBEDFLOW_EVAL_LLM_URL ?? VLLM;

export default extendPipeline(recipe, {
  name: 'llm-jp-vllm',
  inputs: { corpus: { default: undefined } },
  stages: {
    generatedQueries: {
      params: {
        llm: { provider: 'openai', baseUrl: VLLM, model: 'llm-jp/llm-jp-4-8b-instruct', apiKeyEnv: 'EMBEDFLOW_LLM_API_KEY' },
        // ~100 questions per chunk: the seed made 21,659 for 204 chunks.
        queriesPerChunk: 100,
        concurrency: 32,
        language: 'ja',
      },
    },
    evalQueries: {
      params: {
        llm: { provider: 'openai', baseUrl: EVAL_LLM, model: 'openai/gpt-oss-20b', apiKeyEnv: 'EMBEDFLOW_EVAL_LLM_API_KEY' },
        queriesPerChunk: 30,
        concurrency: 32,
        seed: 1,
      },
    },
    model: {
      queue: 'gpu',
      heartbeatTimeout: '10m',
      // The share of the fine-tune is chosen on dev here: at ~100 LLM questions per chunk the dev split is
      // thousands of questions in the style people write, a fair judge, unlike the CPU recipe's rule-made ones.
      params: {
        loss: 'mnrl',
        batchSize: 128,
        epochs: 100,
        learningRate: 2e-5,
        trainLayers: 'all',
        device: 'cuda',
        precision: 'bf16',
        checkpointEvery: 1000,
        mergeWithBase: 'auto',
      },
    },
    evaluation: { inputs: { reranker: 'reranker' } },
  },
  // A domain cross-encoder from the same pairs, trained long enough on a GPU to be a real baseline.
  add: [stage({ id: 'reranker', kind: trainReranker, inputs: { model: 'baseModel', dataset: 'dataset' }, queue: 'gpu', params: { maxSteps: 2000 } })],
});
