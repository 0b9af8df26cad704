import { parseAnswer } from './parse.ts';
import { normalizeQuery } from './textNorm.ts';
import { type Template, type TemplateName, renderMessages, repairMessages } from './prompts.ts';
import type { ChatBackend, ChatResult, ChunkGeneration, ChunkInput, GeneratedQuery, LlmStyle, QueryProvider, Sampling, StyleCount } from './types.ts';

/**
 * Queries from an LLM: one request per style a chunk gets, its answer parsed; an unreadable answer
 * gets one repair turn, and if that fails too it is counted as malformed and skipped.
 */
export class LlmQueryProvider implements QueryProvider {
  readonly backend: ChatBackend;
  private readonly templates: Record<TemplateName, Template>;
  private readonly sampling: Sampling;
  private readonly examples: Set<string>;

  constructor(backend: ChatBackend, templates: Record<TemplateName, Template>, sampling: Sampling) {
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
    for (const [i, { style, count }] of plan.entries()) {
      if (count <= 0) continue;
      // Each style its own seed: the same chunk asked twice must not answer twice the same way.
      const styleSeed = (seed + 7919 * (i + 1)) >>> 0;
      out.queries.push(...(await this.generateStyle(chunk, style, count, styleSeed, out, signal)));
    }
    return out;
  }

  private async generateStyle(
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
      const r = await this.backend.complete({ messages: msgs, sampling: this.sampling, seed, signal });
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
