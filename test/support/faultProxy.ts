import { createHash } from 'node:crypto';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A fault-injecting HTTP proxy on a loopback port, in front of an OpenAI-compatible server. Each
 * chat-completions request meets one fate: forwarded as is, answered 500, answered 429 with
 * Retry-After, held open without an answer (a hang: the client must time out), or forwarded with
 * its answer body cut in half (malformed JSON with status 200). `script` fixes the first fates, so a
 * short test sees each fault at least once; after it, fates are drawn with a seeded generator.
 * Other requests (GET /models) pass through untouched.
 */
export type Fate = 'forward' | 'error500' | 'rateLimit429' | 'hang' | 'malformed';

export interface FaultPlan {
  /** Probabilities (0..1) of each fault for unscripted requests. */
  error500?: number;
  rateLimit429?: number;
  hang?: number;
  malformed?: number;
  retryAfterSeconds?: number;
  /** Also sent as `retry-after-ms` (OpenAI's and vLLM's finer header), which a client prefers. */
  retryAfterMs?: number;
  script?: Fate[];
  seed?: number;
}

export interface ProxiedRequest {
  fate: Fate;
  at: number;
  /** sha256 of the request body: a retry of the same request has the same one. */
  body: string;
}

export class FaultProxy {
  readonly log: ProxiedRequest[] = [];
  private readonly server: Server;
  private readonly upstream: string;
  private readonly plan: FaultPlan;
  private rng: () => number;
  private readonly hanging = new Set<ServerResponse>();

  private constructor(upstream: string, plan: FaultPlan) {
    this.upstream = upstream.replace(/\/+$/, '');
    this.plan = plan;
    let s = (plan.seed ?? 12345) >>> 0 || 1;
    this.rng = () => {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      return (s >>> 0) / 0x100000000;
    };
    this.server = createServer((req, res) => {
      this.handle(req, res).catch(() => res.destroy());
    });
  }

  /** `upstream`: the server's base URL including /v1; the proxy's url mirrors it. */
  static async start(upstream: string, plan: FaultPlan): Promise<FaultProxy> {
    const p = new FaultProxy(upstream, plan);
    await new Promise<void>((resolve) => p.server.listen(0, '127.0.0.1', resolve));
    return p;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}${new URL(this.upstream).pathname}`;
  }

  count(fate: Fate): number {
    return this.log.filter((r) => r.fate === fate).length;
  }

  private fate(): Fate {
    const scripted = this.plan.script?.[this.log.length];
    if (scripted) return scripted;
    let r = this.rng();
    for (const f of ['error500', 'rateLimit429', 'hang', 'malformed'] as const) {
      const p = this.plan[f] ?? 0;
      if (r < p) return f;
      r -= p;
    }
    return 'forward';
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const upstreamPath = new URL(this.upstream).pathname;
    const rest = (req.url ?? '/').slice(upstreamPath.length);
    const isCompletion = req.method === 'POST' && rest.startsWith('/chat/completions');
    const fate: Fate = isCompletion ? this.fate() : 'forward';
    if (isCompletion) this.log.push({ fate, at: performance.now(), body: createHash('sha256').update(body).digest('hex') });
    if (fate === 'error500') {
      res.writeHead(500, { 'content-type': 'application/json' });
      return void res.end('{"error":{"message":"injected internal error"}}');
    }
    if (fate === 'rateLimit429') {
      res.writeHead(429, {
        'content-type': 'application/json',
        'retry-after': String(this.plan.retryAfterSeconds ?? 1),
        ...(this.plan.retryAfterMs !== undefined ? { 'retry-after-ms': String(this.plan.retryAfterMs) } : {}),
      });
      return void res.end('{"error":{"message":"injected rate limit"}}');
    }
    if (fate === 'hang') {
      // Never answer; the client's timeout must fire. Closed when the proxy closes.
      this.hanging.add(res);
      res.on('close', () => this.hanging.delete(res));
      return;
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (typeof v === 'string' && !['host', 'content-length', 'connection'].includes(k)) headers[k] = v;
    }
    // A client that gave up (timed out) cancels the upstream request too, as a real proxy would.
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    const up = await fetch(`${this.upstream}${rest}`, {
      method: req.method,
      headers,
      body: req.method === 'GET' ? undefined : body,
      signal: gone.signal,
    });
    let text = await up.text();
    if (fate === 'malformed') text = text.slice(0, Math.floor(text.length / 2));
    res.writeHead(up.status, { 'content-type': up.headers.get('content-type') ?? 'application/json' });
    res.end(text);
  }

  async close(): Promise<void> {
    for (const r of this.hanging) r.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
