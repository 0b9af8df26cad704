import type { Encoder, TextKind } from './encoder.ts';

// Concurrent requests' texts embedded together: one onnxruntime call for many small requests costs
// about what one costs alone on a CPU, so a server under load answers more of them per second.

interface Pending {
  texts: readonly string[];
  kind: TextKind;
  resolve: (vectors: Float32Array[]) => void;
  reject: (err: unknown) => void;
}

export interface MicroBatcherOptions {
  /** How long the first request of a batch waits for others (ms). */
  windowMs: number;
  /** Most texts per model call; more wait for the next one. */
  maxTexts: number;
}

export class MicroBatcher {
  private queue: Pending[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** Model calls made and texts embedded: batching shows as texts > calls. */
  calls = 0;
  texts = 0;

  constructor(
    private readonly encoder: Encoder,
    private readonly opts: MicroBatcherOptions,
  ) {}

  embed(texts: readonly string[], kind: TextKind): Promise<Float32Array[]> {
    return new Promise((resolve, reject) => {
      this.queue.push({ texts, kind, resolve, reject });
      // While a batch runs, arrivals wait for it to end: they then go at once, having waited already.
      if (!this.running && !this.timer) this.timer = setTimeout(() => this.flush(), this.opts.windowMs);
    });
  }

  /** Resolves when every queued request has been answered. */
  async drain(): Promise<void> {
    while (this.running || this.timer || this.queue.length) {
      if (this.timer) {
        clearTimeout(this.timer);
        this.flush();
      }
      await this.running;
    }
  }

  private flush(): void {
    this.timer = undefined;
    const batch = this.take();
    this.running = this.run(batch).finally(() => {
      this.running = undefined;
      if (this.queue.length) this.flush();
    });
  }

  /** Whole requests, oldest first, up to maxTexts texts (a larger single request goes alone). */
  private take(): Pending[] {
    const batch: Pending[] = [];
    let n = 0;
    while (this.queue.length && (batch.length === 0 || n + this.queue[0]!.texts.length <= this.opts.maxTexts)) {
      const p = this.queue.shift() as Pending;
      n += p.texts.length;
      batch.push(p);
    }
    return batch;
  }

  private async run(batch: Pending[]): Promise<void> {
    for (const kind of ['query', 'passage'] as const) {
      const group = batch.filter((p) => p.kind === kind);
      if (!group.length) continue;
      try {
        const emb = await this.encoder.encode(group.flatMap((p) => p.texts), { kind });
        this.calls++;
        this.texts += emb.count;
        let row = 0;
        for (const p of group) {
          const start = row;
          row += p.texts.length;
          p.resolve(p.texts.map((_, i) => emb.data.slice((start + i) * emb.dim, (start + i + 1) * emb.dim)));
        }
      } catch (err) {
        for (const p of group) p.reject(err);
      }
    }
  }
}
