import { z } from 'zod';
import { LlmConfigError, LlmModelNotFoundError, LlmUnauthorizedError, LlmUnavailableError } from '../../core/errors.ts';
import { type BackoffOptions, TokenBucket, backoffDelay, parseRetryAfter, sleep } from './rateLimit.ts';
import type { ChatBackend, ChatRequest, ChatResult } from './types.ts';

/**
 * Chat completions over HTTP against any OpenAI-compatible server: vLLM (how llm-jp-4-8b-instruct is
 * served in production), llama.cpp's server, Ollama, hosted APIs. 429, 5xx, timeouts, dropped
 * connections and unreadable bodies are retried with jittered exponential backoff that honours
 * Retry-After; 401/403 and an unknown model fail at once (retrying cannot fix them).
 *
 * The API key is handed in by the caller, who read it from the environment variable the pipeline
 * names; it is sent in the Authorization header and nowhere else, and every message this module
 * builds passes through redact() so a server echoing it back cannot leak it into errors or logs.
 */
export interface OpenAiOptions {
  baseUrl: string;
  model: string;
  apiKey?: string;
  /** Name of the environment variable the key came from, for error messages. */
  apiKeyEnv: string;
  timeoutMs: number;
  maxRetries: number;
  requestsPerMinute?: number;
  tokensPerMinute?: number;
  backoff?: BackoffOptions;
  /** Extra request body fields some servers need (e.g. vLLM's repetition_penalty). Never secrets. */
  extraBody?: Record<string, unknown>;
}

const ChatResponse = z.object({
  choices: z
    .array(z.object({ message: z.object({ content: z.string().nullable().optional() }), finish_reason: z.string().nullable().optional() }))
    .min(1),
  usage: z.object({ prompt_tokens: z.number().int().nonnegative(), completion_tokens: z.number().int().nonnegative() }).partial().optional(),
});

const ModelList = z.object({ data: z.array(z.object({ id: z.string() })) });

/** A failure worth another try (the server or the network, not the request). */
class RetryableFailure extends Error {
  readonly retryAfterMs: number | undefined;
  constructor(message: string, retryAfterMs?: number) {
    super(message);
    this.retryAfterMs = retryAfterMs;
  }
}

export class OpenAiCompatibleBackend implements ChatBackend {
  readonly provider = 'openai';
  readonly model: string;
  readonly baseUrl: string;
  private readonly opts: OpenAiOptions;
  private readonly requests: TokenBucket | undefined;
  private readonly tokens: TokenBucket | undefined;
  private readonly backoff: BackoffOptions;

  constructor(opts: OpenAiOptions) {
    this.opts = opts;
    this.model = opts.model;
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.requests = opts.requestsPerMinute ? new TokenBucket(opts.requestsPerMinute) : undefined;
    this.tokens = opts.tokensPerMinute ? new TokenBucket(opts.tokensPerMinute) : undefined;
    this.backoff = opts.backoff ?? { initialMs: 500, maxMs: 30_000 };
  }

  /** The server's address as safe to show: no user:password, no query string. */
  get where(): string {
    try {
      const u = new URL(this.baseUrl);
      return `${u.protocol}//${u.host}${u.pathname}`;
    } catch {
      return '<invalid baseUrl>';
    }
  }

  /** Remove the key (and URL credentials) from any text that may end up in an error, a log or an artifact. */
  redact(text: string): string {
    let out = text.replace(/(\w+:\/\/)[^/@\s]+@/g, '$1***@');
    const key = this.opts.apiKey;
    if (key && key.length >= 4) out = out.split(key).join('***');
    return out;
  }

  private headers(): Record<string, string> {
    const h: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    if (this.opts.apiKey) h.authorization = `Bearer ${this.opts.apiKey}`;
    return h;
  }

  private unauthorized(status: number, body: string): LlmUnauthorizedError {
    const env = this.opts.apiKeyEnv;
    return new LlmUnauthorizedError(
      `the LLM server refused the request (HTTP ${status}${this.opts.apiKey ? ': the API key was rejected' : ': no API key was sent'}) ${this.redact(snippet(body))}`.trim(),
      {
        where: this.where,
        hint: this.opts.apiKey
          ? `put a valid key for this server in the environment variable ${env}`
          : `set the environment variable ${env} to the server's API key (or name another variable with apiKeyEnv)`,
      },
    );
  }

  private modelNotFound(detail: string, available?: string[]): LlmModelNotFoundError {
    return new LlmModelNotFoundError(`the LLM server does not serve model "${this.model}"${detail ? ` (${this.redact(snippet(detail))})` : ''}`, {
      where: this.where,
      hint: available?.length
        ? `it serves: ${available.slice(0, 10).join(', ')}; set model to one of them`
        : 'check the model name (as the server lists it at GET /models) and baseUrl',
    });
  }

  /**
   * Fail fast before any work: ask the server which models it serves. Servers without a model list
   * (or with an empty one, as llama.cpp's single-model server may have) are given the benefit of the doubt.
   */
  async checkModel(signal?: AbortSignal): Promise<void> {
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}/models`, { headers: this.headers(), signal: anySignal(signal, this.opts.timeoutMs) });
    } catch {
      if (signal?.aborted) throw signal.reason;
      // Unreachable now: complete() retries and reports that with LlmUnavailableError.
      return;
    }
    const body = await res.text().catch(() => '');
    if (res.status === 401 || res.status === 403) throw this.unauthorized(res.status, body);
    if (!res.ok) return;
    const parsed = ModelList.safeParse(safeJson(body));
    if (!parsed.success || parsed.data.data.length === 0) return;
    const ids = parsed.data.data.map((m) => m.id);
    if (!ids.includes(this.model)) throw this.modelNotFound('', ids);
  }

  async complete(req: ChatRequest): Promise<ChatResult> {
    const started = performance.now();
    const body = JSON.stringify({
      ...this.opts.extraBody,
      model: this.model,
      messages: req.messages,
      temperature: req.sampling.temperature,
      top_p: req.sampling.topP,
      max_tokens: req.sampling.maxTokens,
      seed: req.seed,
      stream: false,
    });
    // Rough prompt size for the tokens-per-minute budget until the server reports usage.
    const estimate = Math.ceil(body.length / 3) + req.sampling.maxTokens;
    let lastProblem = '';
    for (let attempt = 0; ; attempt++) {
      req.signal?.throwIfAborted();
      await this.requests?.take(1, req.signal);
      await this.tokens?.take(estimate, req.signal);
      try {
        const result = await this.once(body, req.signal);
        this.tokens?.adjust(result.promptTokens + result.completionTokens - estimate);
        return { ...result, latencyMs: performance.now() - started, retries: attempt };
      } catch (err) {
        if (!(err instanceof RetryableFailure)) throw err;
        lastProblem = err.message;
        if (attempt >= this.opts.maxRetries) break;
        await sleep(backoffDelay(attempt, this.backoff, err.retryAfterMs), req.signal);
      }
    }
    throw new LlmUnavailableError(`the LLM server failed ${this.opts.maxRetries + 1} times in a row; last: ${this.redact(lastProblem)}`, {
      where: this.where,
      hint: 'is the server up and not overloaded? the stage resumes from its memo when retried',
    });
  }

  private async once(body: string, signal: AbortSignal | undefined): Promise<Omit<ChatResult, 'latencyMs' | 'retries'>> {
    let res: Response;
    let text: string;
    try {
      res = await fetch(`${this.baseUrl}/chat/completions`, {
        method: 'POST',
        headers: this.headers(),
        body,
        signal: anySignal(signal, this.opts.timeoutMs),
      });
      text = await res.text();
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const e = err as Error;
      const reason = e.name === 'TimeoutError' ? `no answer within ${this.opts.timeoutMs} ms` : `${e.message}${causeCode(e)}`;
      throw new RetryableFailure(reason);
    }
    if (res.ok) {
      const parsed = ChatResponse.safeParse(safeJson(text));
      if (!parsed.success) throw new RetryableFailure(`unreadable response body: ${snippet(text)}`);
      const choice = parsed.data.choices[0]!;
      const usage = parsed.data.usage ?? {};
      return {
        text: choice.message.content ?? '',
        promptTokens: usage.prompt_tokens ?? 0,
        completionTokens: usage.completion_tokens ?? 0,
      };
    }
    const s = res.status;
    if (s === 401 || s === 403) throw this.unauthorized(s, text);
    if (s === 404 || (s === 400 && /model/i.test(text) && /not (?:exist|found)|does not exist|unknown/i.test(text))) {
      if (s === 404 && !/model/i.test(text)) {
        throw new LlmConfigError(`no chat-completions endpoint at ${this.where}/chat/completions (HTTP 404)`, {
          where: this.where,
          hint: 'baseUrl usually ends in /v1, e.g. http://127.0.0.1:8000/v1',
        });
      }
      throw this.modelNotFound(text);
    }
    if (s === 408 || s === 409 || s === 429 || s >= 500) {
      throw new RetryableFailure(`HTTP ${s} ${snippet(text)}`.trim(), parseRetryAfter(res.headers.get('retry-after'), Date.now(), res.headers.get('retry-after-ms')));
    }
    throw new LlmConfigError(`the LLM server rejected the request (HTTP ${s}): ${this.redact(snippet(text))}`, {
      where: this.where,
      hint: 'check the sampling parameters and model for this server',
    });
  }

  async close(): Promise<void> {}
}

function anySignal(signal: AbortSignal | undefined, timeoutMs: number): AbortSignal {
  const t = AbortSignal.timeout(timeoutMs);
  return signal ? AbortSignal.any([signal, t]) : t;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function snippet(text: string, max = 200): string {
  const t = text.replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

function causeCode(e: Error): string {
  const code = (e.cause as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? ` (${code})` : '';
}
