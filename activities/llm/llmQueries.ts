import { parseAnswer } from './parse.ts';
import { normalizeQuery } from './textNorm.ts';
import { type Template, type TemplateName, renderMessages, repairMessages } from './prompts.ts';
import type { ChatBackend, ChatResult, ChunkGeneration, ChunkInput, GeneratedQuery, LlmStyle, QueryProvider, Sampling, StyleCount } from './types.ts';

export interface QuerySampling {
  temperature: number;
  topP: number;
  /** Answer tokens allowed per query asked for (a call's limit is this times its count, plus a little). */
  maxTokensPerQuery: number;
  /** Larger counts are asked for in several calls: small models lose the thread in long lists. */
  maxQueriesPerCall: number;
}

export interface PlannedCall {
  style: LlmStyle;
  count: number;
  seed: number;
}

/**
 * The calls one chunk needs: per style, batches of at most maxQueriesPerCall, each with its own seed
 * (derived from the chunk's), so the same chunk asked twice does not answer twice the same way.
 */
export function planCalls(plan: StyleCount[], chunkSeed: number, maxQueriesPerCall: number): PlannedCall[] {
  const calls: PlannedCall[] = [];
  for (const { style, count } of plan) {
    for (let left = count; left > 0; left -= maxQueriesPerCall) {
      calls.push({ style, count: Math.min(left, maxQueriesPerCall), seed: (chunkSeed + 7919 * (calls.length + 1)) >>> 0 });
    }
  }
  return calls;
}

export function callSampling(s: QuerySampling, count: number): Sampling {
  return { temperature: s.temperature, topP: s.topP, maxTokens: 16 + count * s.maxTokensPerQuery };
}

/**
 * Queries from an LLM: one request per style a chunk gets, its answer parsed; an unreadable answer
 * gets one repair turn, and if that fails too it is counted as malformed and skipped.
 */
export class LlmQueryProvider implements QueryProvider {
  readonly backend: ChatBackend;
  private readonly templates: Record<TemplateName, Template>;
  private readonly sampling: QuerySampling;
  private readonly examples: Set<string>;

  constructor(backend: ChatBackend, templates: Record<TemplateName, Template>, sampling: QuerySampling) {
    this.backend = backend;
    this.templates = templates;
    this.sampling = sampling;
    this.examples = new Set(
      Object.values(templates)
        .flatMap((t) => t.turns.filter((turn) => turn.role === 'assistant'))
        .flatMap((turn) => parseAnswer(turn.content, Number.MAX_SAFE_INTEGER).queries.map(normalizeQuery)),
    );
  }

  get provider(): string {
    return this.backend.provider;
  }

  get model(): string {
    return this.backend.model;
  }

  async generate(chunk: ChunkInput, plan: StyleCount[], seed: number, signal?: AbortSignal): Promise<ChunkGeneration> {
    const out: ChunkGeneration = { queries: [], llmCalls: 0, retries: 0, malformed: 0, repairs: 0, promptTokens: 0, completionTokens: 0 };
    const seen = new Set<string>();
    for (const call of planCalls(plan, seed, this.sampling.maxQueriesPerCall)) {
      for (const q of await this.generateCall(chunk, call.style, call.count, call.seed, out, signal)) {
        // Batches of one chunk may repeat each other; the filter stage handles subtler overlap.
        const norm = normalizeQuery(q.text);
        if (seen.has(norm)) continue;
        seen.add(norm);
        out.queries.push(q);
      }
    }
    return out;
  }

  private async generateCall(
    chunk: ChunkInput,
    style: LlmStyle,
    count: number,
    seed: number,
    acc: ChunkGeneration,
    signal?: AbortSignal,
  ): Promise<GeneratedQuery[]> {
    const template = this.templates[style];
    const messages = renderMessages(template, { passage: chunk.text, count });
    const call = async (msgs: typeof messages): Promise<ChatResult> => {
      const r = await this.backend.complete({ messages: msgs, sampling: callSampling(this.sampling, count), seed, signal });
      acc.llmCalls++;
      acc.retries += r.retries;
      acc.promptTokens += r.promptTokens;
      acc.completionTokens += r.completionTokens;
      return r;
    };
    let result = await call(messages);
    let parsed = parseAnswer(result.text, count, this.examples);
    let latencyMs = result.latencyMs;
    let tokens = result.promptTokens + result.completionTokens;
    if (parsed.malformed) {
      acc.repairs++;
      result = await call(repairMessages(messages, result.text, this.templates.repair, count));
      parsed = parseAnswer(result.text, count, this.examples);
      latencyMs += result.latencyMs;
      tokens += result.promptTokens + result.completionTokens;
      if (parsed.malformed) {
        acc.malformed++;
        return [];
      }
    }
    const share = Math.round(tokens / parsed.queries.length);
    return parsed.queries.map((text) => ({ text, style, promptHash: template.hash, latencyMs, tokens: share }));
  }

  async close(): Promise<void> {
    await this.backend.close();
  }
}
