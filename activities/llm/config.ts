import { stat } from 'node:fs/promises';
import { z } from 'zod';
import { hashJson } from '../../artifacts/hash.ts';
import type { StageEnv } from '../../dsl/stage.ts';
import { DEFAULT_GGUF, resolveGguf } from './gguf.ts';
import { CLOZE_RULES_HASH, IctProvider } from './ict.ts';
import { LlmQueryProvider, type QuerySampling } from './llmQueries.ts';
import { LocalChatBackend } from './local.ts';
import { OpenAiCompatibleBackend } from './openaiCompatible.ts';
import { LlmConfigError } from '../../core/errors.ts';
import { type TemplateName, templateSet } from './prompts.ts';
import { type Language, type QueryProvider, STYLES } from './types.ts';

/**
 * Parameters shared by the generateQueries and generateEvalQueries stages, and the one place that
 * turns them into a provider. Secrets are never parameters: the API key is read at run time from
 * the environment variable `llm.apiKeyEnv` names.
 */

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const DEFAULT_KEY_ENV = 'EMBEDFLOW_LLM_API_KEY';
const SECRET_FIELD = /(?:^|_|-)?(?:api_?key|apikey|key|token|secret|password|authorization)$/i;

const LocalSpec = z
  .object({
    provider: z.literal('local'),
    /** `package:<name>` (a GGUF shipped as a Python package) or a path to a .gguf file. */
    model: z.string().min(1).default(DEFAULT_GGUF),
    mode: z.enum(['completion', 'chat']).default('completion'),
    threads: z.number().int().min(1).max(256).optional(),
    contextSize: z.number().int().min(256).max(131072).default(2048),
    gpu: z.boolean().default(false),
  })
  .strict();

const OpenAiSpec = z
  .object({
    provider: z.literal('openai'),
    baseUrl: z
      .url({ protocol: /^https?$/ })
      .optional()
      .describe("The server's API root, e.g. http://127.0.0.1:8000/v1 (default: the worker's OPENAI_BASE_URL, as OpenAI's own clients read it)"),
    model: z.string().min(1),
    apiKeyEnv: z
      .string()
      .regex(ENV_NAME, 'an environment variable name')
      .default(DEFAULT_KEY_ENV)
      .describe(`The worker's environment variable holding the API key (the default ${DEFAULT_KEY_ENV} falls back to OPENAI_API_KEY)`),
    timeoutMs: z.number().int().min(100).max(3_600_000).default(120_000),
    maxRetries: z.number().int().min(0).max(50).default(8),
    requestsPerMinute: z.number().positive().optional(),
    tokensPerMinute: z.number().positive().optional(),
    backoffInitialMs: z.number().int().min(1).default(500),
    backoffMaxMs: z.number().int().min(1).default(30_000),
    /** Extra request fields a server understands (e.g. vLLM's repetition_penalty). */
    extraBody: z.record(z.string(), z.json()).optional(),
  })
  .strict();

const IctSpec = z
  .object({
    provider: z.literal('ict'),
    form: z
      .enum(['sentence', 'question'])
      .default('sentence')
      .describe("'sentence': a sentence of the chunk is the query (Inverse Cloze Task); 'question': that sentence rewritten by rule into the question it answers (Japanese; others stay sentences)"),
  })
  .strict();

/** Refuse secrets in parameters (they would be kept in the run's history and the artifact's lineage). */
export const LlmSpec = z.preprocess(
  (value, ctx) => {
    const visit = (v: unknown, path: string[]) => {
      if (!v || typeof v !== 'object' || Array.isArray(v)) return;
      for (const [k, inner] of Object.entries(v)) {
        if (k !== 'apiKeyEnv' && SECRET_FIELD.test(k)) {
          ctx.addIssue({
            code: 'custom',
            path: [...path, k],
            message:
              'secrets are never stage parameters: put the key in an environment variable of the worker and name it with apiKeyEnv (default EMBEDFLOW_LLM_API_KEY)',
          });
        }
        visit(inner, [...path, k]);
      }
    };
    visit(value, []);
    return value;
  },
  z.discriminatedUnion('provider', [LocalSpec, OpenAiSpec, IctSpec]),
);
export type LlmSpec = z.output<typeof LlmSpec>;

const Prompts = z
  .object({ question: z.string(), keyword: z.string(), request: z.string(), repair: z.string() })
  .partial()
  .strict();

export const GenerationParams = z.strictObject({
  llm: LlmSpec.prefault({ provider: 'local' }).describe('The query generator: an in-process GGUF model (local), an OpenAI-compatible server (openai) or sentences of the chunk (ict)'),
  language: z.enum(['auto', 'ja', 'en']).default('auto').describe("'auto' picks the corpus language from the chunks' scripts."),
  queriesPerChunk: z.number().int().min(1).max(200).default(3).describe('Queries asked for per chunk (N)'),
  styles: z
    .array(z.enum(STYLES))
    .min(1)
    .refine((s) => new Set(s).size === s.length, 'each style once')
    .default([...STYLES])
    .describe('The styles queries are spread over, in this order (N = 4 over three styles: 2, 1, 1).'),
  temperature: z.number().min(0).max(2).default(0.7).describe('Sampling temperature of the LLM'),
  topP: z.number().gt(0).max(1).default(0.95).describe('Nucleus sampling: the LLM samples from the most likely tokens that make up this share of probability'),
  maxTokensPerQuery: z.number().int().min(4).max(2048).default(48).describe("Answer tokens per query asked for; a call's limit is this times its count (plus a little)."),
  maxQueriesPerCall: z.number().int().min(1).max(100).default(8).describe('Larger N is asked for in several calls per style (small models lose the thread in long lists).'),
  seed: z.number().int().min(0).max(2 ** 31 - 1).default(0).describe('Sampling seed passed to the LLM (same seed, same model, same prompt: same queries where the backend is deterministic)'),
  concurrency: z.number().int().min(1).max(512).default(1).describe('Chunks in flight at once (parallel requests; parallel sequences for the local model).'),
  maxChunks: z.number().int().min(1).optional().describe('Only this many chunks, picked by hash of their id (a stable sample).'),
  prompts: Prompts.optional().describe('Inline templates replacing the built-in ones (format: activities/llm/prompts/en/question.txt).'),
});
export type GenerationParams = z.output<typeof GenerationParams>;

/** How one chunk's N queries are spread over the styles. */
export function stylePlan(n: number, styles: readonly (typeof STYLES)[number][]) {
  return styles.map((style, i) => ({ style, count: Math.floor(n / styles.length) + (i < n % styles.length ? 1 : 0) }));
}

export interface ProviderIdentity {
  provider: string;
  /** The model as recorded with each query. */
  model: string;
  /** Everything that determines a chunk's answer besides its text: the memo's namespace and key. */
  key: Record<string, unknown>;
}

function querySampling(params: GenerationParams): QuerySampling {
  return {
    temperature: params.temperature,
    topP: params.topP,
    maxTokensPerQuery: params.maxTokensPerQuery,
    maxQueriesPerCall: params.maxQueriesPerCall,
  };
}

/**
 * Who answers and what decides the answers, without contacting or loading anything (the local
 * model's file is located, not loaded): a fully memoised rerun needs neither the server nor the model.
 */
export async function providerIdentity(params: GenerationParams, language: Language, env: StageEnv): Promise<ProviderIdentity> {
  const llm = params.llm;
  if (llm.provider === 'ict') {
    // The sentence form's key is what it was before forms existed, so its memo stays valid.
    const form = llm.form === 'sentence' ? {} : { form: llm.form, rules: CLOZE_RULES_HASH };
    return { provider: 'ict', model: 'ict', key: { provider: 'ict', n: params.queriesPerChunk, seed: params.seed, ...form } };
  }
  const plan = stylePlan(params.queriesPerChunk, params.styles);
  const templates = templateSet(language, params.prompts ?? {});
  const used: TemplateName[] = [...plan.filter((p) => p.count > 0).map((p) => p.style), 'repair'];
  const common = {
    templates: Object.fromEntries(used.map((t) => [t, templates[t].hash])),
    sampling: querySampling(params),
    plan,
    seed: params.seed,
  };
  if (llm.provider === 'local') {
    const path = await resolveGguf(llm.model, env);
    const modelBytes = (await stat(path)).size;
    return { provider: 'local', model: llm.model, key: { ...common, provider: 'local', model: llm.model, modelBytes, mode: llm.mode } };
  }
  // The server's address is not part of it: the same model behind another URL answers the same.
  return { provider: 'openai', model: llm.model, key: { ...common, provider: 'openai', model: llm.model, extraBody: llm.extraBody } };
}

export async function openProvider(params: GenerationParams, language: Language, env: StageEnv, signal?: AbortSignal): Promise<QueryProvider> {
  const llm = params.llm;
  if (llm.provider === 'ict') return new IctProvider(llm.form);
  const templates = templateSet(language, params.prompts ?? {});
  if (llm.provider === 'local') {
    const backend = await LocalChatBackend.open(env, {
      model: llm.model,
      mode: llm.mode,
      parallel: params.concurrency,
      templates: stylePlan(params.queriesPerChunk, params.styles).filter((p) => p.count > 0).length,
      contextSize: llm.contextSize,
      threads: llm.threads,
      gpu: llm.gpu,
    });
    return new LlmQueryProvider(backend, templates, querySampling(params));
  }
  // The standard variables of OpenAI's clients, where the pipeline names none of its own: a worker set
  // up for any OpenAI-compatible tool works unchanged.
  const baseUrl = llm.baseUrl ?? env.vars.OPENAI_BASE_URL;
  if (!baseUrl) {
    throw new LlmConfigError('the openai provider has no server address', {
      hint: "set llm.baseUrl (e.g. http://127.0.0.1:8000/v1) or the worker's OPENAI_BASE_URL",
    });
  }
  if (!llm.baseUrl && !/^https?:\/\/[^/]/.test(baseUrl)) {
    throw new LlmConfigError(`OPENAI_BASE_URL is not an http(s) URL: ${JSON.stringify(baseUrl.slice(0, 80))}`, {
      hint: 'e.g. OPENAI_BASE_URL=http://127.0.0.1:8000/v1, or set llm.baseUrl',
    });
  }
  // The default key variable, left empty, gives way to OpenAI's own; a variable the pipeline names does not.
  const keyEnv = llm.apiKeyEnv === DEFAULT_KEY_ENV && !env.vars[DEFAULT_KEY_ENV] && env.vars.OPENAI_API_KEY ? 'OPENAI_API_KEY' : llm.apiKeyEnv;
  const backend = new OpenAiCompatibleBackend({
    baseUrl,
    model: llm.model,
    apiKey: env.vars[keyEnv] || undefined,
    apiKeyEnv: keyEnv,
    timeoutMs: llm.timeoutMs,
    maxRetries: llm.maxRetries,
    requestsPerMinute: llm.requestsPerMinute,
    tokensPerMinute: llm.tokensPerMinute,
    backoff: { initialMs: llm.backoffInitialMs, maxMs: llm.backoffMaxMs },
    extraBody: llm.extraBody,
  });
  await backend.checkModel(signal);
  return new LlmQueryProvider(backend, templates, querySampling(params));
}

export function identityHash(identity: Record<string, unknown>): string {
  return hashJson({ v: 1, ...identity });
}
