import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import type { GgufEnv } from '../../activities/llm/gguf.ts';
import { LocalChatBackend, type LocalOptions } from '../../activities/llm/local.ts';

/**
 * A real OpenAI-compatible chat-completions server on a loopback port, answering with the real
 * local GGUF model through node-llama-cpp: what the openai provider's tests talk to. It counts the
 * completions it serves and keeps each request's last user message, so tests can tell which chunks
 * were paid for. Like vLLM it lists its model at GET /v1/models, answers an unknown model with 404,
 * and with `apiKey` set refuses requests without that bearer token with 401.
 */
export interface LlmServerOptions extends LocalOptions {
  env: GgufEnv;
  /** The name clients must ask for. */
  servedModel?: string;
  apiKey?: string;
}

const Body = z.object({
  model: z.string(),
  messages: z.array(z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() })).min(1),
  temperature: z.number().optional(),
  top_p: z.number().optional(),
  max_tokens: z.number().int().optional(),
  seed: z.number().int().optional(),
});

export interface ServedCall {
  model: string;
  /** The last user message: holds the passage. */
  prompt: string;
  authorization: string | undefined;
}

export class LlmServer {
  readonly servedModel: string;
  /** Completions served by the model (refused requests are not counted). */
  calls: ServedCall[] = [];
  /** Requests that arrived, refused or not (a client failing fast sends no completion request at all). */
  received = 0;
  private readonly backend: LocalChatBackend;
  private readonly server: Server;
  private readonly apiKey: string | undefined;

  private constructor(backend: LocalChatBackend, opts: LlmServerOptions) {
    this.backend = backend;
    this.servedModel = opts.servedModel ?? 'local-gguf';
    this.apiKey = opts.apiKey;
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => json(res, 500, { error: { message: String(err) } }));
    });
  }

  static async start(opts: LlmServerOptions): Promise<LlmServer> {
    const backend = await LocalChatBackend.open(opts.env, opts);
    const s = new LlmServer(backend, opts);
    await new Promise<void>((resolve) => s.server.listen(0, '127.0.0.1', resolve));
    return s;
  }

  /** Base URL as clients configure it (…/v1). */
  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1`;
  }

  /** Calls whose prompt contains this text (e.g. a chunk's text). */
  callsFor(text: string): number {
    return this.calls.filter((c) => c.prompt.includes(text.trim())).length;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.received++;
    const auth = req.headers.authorization;
    if (this.apiKey !== undefined && auth !== `Bearer ${this.apiKey}`) {
      return json(res, 401, { error: { message: 'Invalid API key', type: 'invalid_request_error', code: 'invalid_api_key' } });
    }
    if (req.method === 'GET' && req.url === '/v1/models') {
      return json(res, 200, { object: 'list', data: [{ id: this.servedModel, object: 'model', owned_by: 'embedflow-test' }] });
    }
    if (req.method !== 'POST' || req.url !== '/v1/chat/completions') return json(res, 404, { error: { message: 'Not Found' } });
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const parsed = Body.safeParse(safeJson(Buffer.concat(chunks).toString('utf8')));
    if (!parsed.success) return json(res, 400, { error: { message: parsed.error.message } });
    const b = parsed.data;
    if (b.model !== this.servedModel) {
      return json(res, 404, { object: 'error', message: `The model \`${b.model}\` does not exist.`, type: 'NotFoundError', code: 404 });
    }
    const aborted = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) aborted.abort(new Error('client went away'));
    });
    const result = await this.backend.complete({
      messages: b.messages,
      sampling: { temperature: b.temperature ?? 0.7, topP: b.top_p ?? 1, maxTokens: b.max_tokens ?? 128 },
      seed: b.seed ?? 0,
      signal: aborted.signal,
    });
    this.calls.push({ model: b.model, prompt: b.messages.filter((m) => m.role === 'user').at(-1)?.content ?? '', authorization: auth });
    json(res, 200, {
      id: `chatcmpl-${this.calls.length}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: b.model,
      choices: [{ index: 0, message: { role: 'assistant', content: result.text }, finish_reason: 'stop' }],
      usage: { prompt_tokens: result.promptTokens, completion_tokens: result.completionTokens, total_tokens: result.promptTokens + result.completionTokens },
    });
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await this.backend.close();
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
