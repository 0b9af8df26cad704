import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { ConfigError } from '../core/errors.ts';
import type { Encoder, TextKind } from '../activities/embedding/encoder.ts';
import { encodeVector } from '../activities/embedding/memoEmbed.ts';
import { MicroBatcher } from '../activities/embedding/microBatcher.ts';

// `embedflow serve`: the OpenAI embeddings API over the project's ONNX encoder, so a RAG app (or
// anything speaking that API) points its base URL here. Queries and passages get the model's own
// prefixes: by `input_type`, or by a `:query` / `:passage` suffix on the model name for clients that
// cannot send extra fields.

/** OpenAI's own limit on inputs per request. */
const MAX_INPUTS = 2048;
const MAX_BODY_BYTES = 16 * 1024 * 1024;

const KINDS: Record<string, TextKind> = { query: 'query', passage: 'passage', document: 'passage' };

export const EmbeddingsRequest = z
  .object({
    input: z.union([
      z.string().min(1, 'an input text is empty'),
      z.array(z.string().min(1, 'an input text is empty')).min(1, 'input is an empty list').max(MAX_INPUTS, `at most ${MAX_INPUTS} inputs per request`),
    ]).describe('the text, or a list of texts, to embed'),
    model: z.string().optional().describe('the served model id (GET /v1/models), optionally with a :query or :passage suffix'),
    encoding_format: z.enum(['float', 'base64']).default('float').describe('vectors as JSON numbers, or base64 of little-endian float32'),
    input_type: z.enum(['query', 'passage', 'document']).optional().describe('query (the default) or passage/document: which of the model’s prefixes is applied'),
    dimensions: z.number().int().positive().optional().describe('must equal the model’s dimension when given (no truncation)'),
    user: z.string().optional(),
  })
  .strict();
export type EmbeddingsRequest = z.infer<typeof EmbeddingsRequest>;

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly type = status >= 500 ? 'server_error' : 'invalid_request_error',
  ) {
    super(message);
  }
}

export interface EmbeddingServerOptions {
  encoder: Encoder;
  /** The id clients name in `model` and GET /v1/models lists. */
  modelId: string;
  /** The model artifact's digest: also accepted as `model`. */
  digest: string;
  host: string;
  port: number;
  batchWindowMs?: number;
  maxBatchTexts?: number;
}

export interface EmbeddingServer {
  url: string;
  batcher: MicroBatcher;
  /** Stop taking connections, answer what is in flight, then resolve. */
  close(): Promise<void>;
}

export async function startEmbeddingServer(opts: EmbeddingServerOptions): Promise<EmbeddingServer> {
  const batcher = new MicroBatcher(opts.encoder, { windowMs: opts.batchWindowMs ?? 2, maxTexts: opts.maxBatchTexts ?? 256 });
  const created = Math.floor(Date.now() / 1000);
  const modelEntry = { id: opts.modelId, object: 'model', created, owned_by: 'embedflow' };

  /** The kind a request asks for: input_type, or the model name's suffix; a query by default. */
  const kindOf = (body: EmbeddingsRequest): TextKind => {
    let kind: TextKind | undefined;
    if (body.model !== undefined) {
      const m = /^(.*?)(?::(query|passage|document))?$/.exec(body.model) as RegExpExecArray;
      const name = m[1] as string;
      if (name !== opts.modelId && name !== opts.digest) {
        throw new ApiError(404, `The model '${body.model}' is not served here; this server serves '${opts.modelId}' (optionally '${opts.modelId}:query' or '${opts.modelId}:passage')`, 'model', 'model_not_found');
      }
      if (m[2]) kind = KINDS[m[2]];
    }
    if (body.input_type) {
      const asked = KINDS[body.input_type] as TextKind;
      if (kind && kind !== asked) throw new ApiError(400, `input_type '${body.input_type}' contradicts the model suffix '${body.model}'`, 'input_type');
      kind = asked;
    }
    return kind ?? 'query';
  };

  const embeddings = async (req: IncomingMessage): Promise<unknown> => {
    const parsed = EmbeddingsRequest.safeParse(await readJson(req));
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const param = issue?.path.join('.') || null;
      throw new ApiError(400, `${param ? `'${param}': ` : ''}${issue?.message ?? 'invalid request body'}`, param);
    }
    const body = parsed.data;
    if (body.dimensions !== undefined && body.dimensions !== opts.encoder.dim) {
      throw new ApiError(400, `this model returns ${opts.encoder.dim}-dimensional vectors; 'dimensions' must be ${opts.encoder.dim} or left out`, 'dimensions');
    }
    const kind = kindOf(body);
    const texts = typeof body.input === 'string' ? [body.input] : body.input;
    const vectors = await batcher.embed(texts, kind);
    const tokens = opts.encoder.tokenCounts(texts, kind).reduce((a, b) => a + b, 0);
    return {
      object: 'list',
      data: vectors.map((v, index) => ({ object: 'embedding', index, embedding: body.encoding_format === 'base64' ? encodeVector(v) : Array.from(v) })),
      model: opts.modelId,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  };

  const route = async (req: IncomingMessage): Promise<unknown> => {
    const path = new URL(req.url ?? '/', 'http://x').pathname.replace(/\/+$/, '');
    if (path === '/v1/embeddings' || path === '/embeddings') {
      if (req.method !== 'POST') throw new ApiError(405, `use POST for ${path}`);
      return embeddings(req);
    }
    if (req.method !== 'GET') throw new ApiError(405, `use GET for ${path}`);
    if (path === '/v1/models' || path === '/models') return { object: 'list', data: [modelEntry] };
    const one = /^\/(?:v1\/)?models\/(.+)$/.exec(path);
    if (one) {
      if (decodeURIComponent(one[1] as string) === opts.modelId) return modelEntry;
      throw new ApiError(404, `The model '${decodeURIComponent(one[1] as string)}' is not served here`, 'model', 'model_not_found');
    }
    if (path === '/health') return { status: 'ok' };
    throw new ApiError(404, `no route ${req.method} ${path}: this server answers POST /v1/embeddings and GET /v1/models`);
  };

  const server = createServer((req, res) => {
    route(req).then(
      (body) => send(res, 200, body),
      (err: unknown) => {
        const e = err instanceof ApiError ? err : new ApiError(500, (err as Error)?.message ?? String(err));
        send(res, e.status, { error: { message: e.message, type: e.type, param: e.param, code: e.code } });
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'EADDRINUSE' ? 'the port is in use' : err.code === 'EACCES' ? 'permission denied' : (err.code ?? err.message);
      reject(
        new ConfigError(`cannot listen on ${opts.host}:${opts.port}: ${why}`, {
          hint: 'pick another --port (--port 0 takes any free one), or a --host this machine has',
          cause: err,
        }),
      );
    });
    server.listen(opts.port, opts.host, () => resolve());
  });
  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    url: `http://${host}:${port}/v1`,
    batcher,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await batcher.drain();
      await closed;
    },
  };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of req) {
    size += (part as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new ApiError(413, `the request body is over ${MAX_BODY_BYTES / 1024 / 1024} MiB; send fewer texts per request`);
    parts.push(part as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(parts).toString('utf8'));
  } catch {
    throw new ApiError(400, 'the request body is not JSON');
  }
}
