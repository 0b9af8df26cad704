/**
 * The common shapes of query generation. A QueryProvider turns one chunk into queries; the LLM ones
 * do it through a ChatBackend (an OpenAI-compatible server, or llama.cpp in process), ICT without one.
 */

export const STYLES = ['question', 'keyword', 'request'] as const;
export type LlmStyle = (typeof STYLES)[number];
/** 'ict' is the Inverse Cloze Task: a sentence of the chunk used as its query, no LLM involved. */
export type QueryStyle = LlmStyle | 'ict';

export type Language = 'ja' | 'en';

export type Role = 'system' | 'user' | 'assistant';
export interface ChatMessage {
  role: Role;
  content: string;
}

export interface Sampling {
  temperature: number;
  topP: number;
  maxTokens: number;
}

export interface ChatRequest {
  messages: ChatMessage[];
  sampling: Sampling;
  /** Per-request seed, derived from the stage's seed and the chunk, so results do not depend on order. */
  seed: number;
  signal?: AbortSignal;
}

export interface ChatResult {
  text: string;
  promptTokens: number;
  completionTokens: number;
  latencyMs: number;
  /** Transport-level retries this call needed (429/5xx/timeouts/garbled bodies). */
  retries: number;
}

/** One way to get a chat completion. Implementations must be safe to call concurrently. */
export interface ChatBackend {
  /** 'openai' | 'local'. */
  readonly provider: string;
  /** The model as recorded with each query (a server's model name, a GGUF spec). */
  readonly model: string;
  complete(req: ChatRequest): Promise<ChatResult>;
  close(): Promise<void>;
}

export interface ChunkInput {
  chunkId: string;
  text: string;
}

/** How many queries of which style one chunk gets. */
export interface StyleCount {
  style: LlmStyle;
  count: number;
}

export interface GeneratedQuery {
  text: string;
  style: QueryStyle;
  promptHash: string;
  /** Wall time of the call that produced it. */
  latencyMs: number;
  /** That call's prompt+completion tokens, shared evenly among the queries it produced. */
  tokens: number;
}

/** Everything one chunk's generation produced and cost: the memoised value. */
export interface ChunkGeneration {
  queries: GeneratedQuery[];
  llmCalls: number;
  retries: number;
  /** Answers that could not be parsed even after the repair prompt (their queries are skipped). */
  malformed: number;
  /** Repair prompts sent (answers that could not be read the first time). */
  repairs: number;
  promptTokens: number;
  completionTokens: number;
}

export interface QueryProvider {
  readonly provider: string;
  readonly model: string;
  generate(chunk: ChunkInput, plan: StyleCount[], seed: number, signal?: AbortSignal): Promise<ChunkGeneration>;
  close(): Promise<void>;
}
