import { availableParallelism } from 'node:os';
import { stat } from 'node:fs/promises';
import type { ChatHistoryItem, Llama, LlamaCompletion, LlamaContext, LlamaModel, LlamaText } from 'node-llama-cpp';
import { LlmConfigError } from '../../core/errors.ts';
import { loadLlamaCpp } from '../heavyLibs.ts';
import { DEFAULT_GGUF, type GgufEnv, resolveGguf } from './gguf.ts';
import { COMPLETION_STOP, renderCompletion } from './prompts.ts';
import type { ChatBackend, ChatMessage, ChatRequest, ChatResult } from './types.ts';

/**
 * The embedded provider: a GGUF model run in process by llama.cpp (node-llama-cpp's prebuilt
 * binaries; never a build from source or a download at run time). Concurrent requests run as
 * parallel sequences of one context, which llama.cpp decodes in shared batches.
 *
 * mode 'completion' feeds the few-shot turns as plain text and lets the model continue the pattern:
 * what small and base models (the packaged Gemma 3 270M is a base model) follow best. 'chat' wraps
 * the turns in the model's own chat template, for instruct models.
 */
export interface LocalOptions {
  model?: string;
  mode?: 'completion' | 'chat';
  /** Requests decoded in parallel (the stage's concurrency). */
  parallel?: number;
  /**
   * Extra idle sequences so each prompt template keeps a sequence whose KV cache already holds its
   * few-shot prefix (one per style is enough): that prefix is then not evaluated again.
   */
  templates?: number;
  /** Context tokens per sequence. */
  contextSize?: number;
  /** CPU threads for decoding; more threads than free cores makes llama.cpp crawl, so stay modest. */
  threads?: number;
  gpu?: boolean;
}

export function defaultThreads(): number {
  return Math.max(1, Math.floor(availableParallelism() / 2));
}

let llamaCpu: Promise<Llama> | undefined;
let llamaGpu: Promise<Llama> | undefined;
const models = new Map<string, Promise<LlamaModel>>();

type LlamaCpp = Awaited<ReturnType<typeof loadLlamaCpp>>;

function loadLlama(gpu: boolean): Promise<Llama> {
  const make = async () => {
    const lib = await loadLlamaCpp();
    return lib.getLlama({
      gpu: gpu ? 'auto' : false,
      // Fail fast instead of cloning and compiling llama.cpp when no prebuilt binary fits.
      build: 'never',
      skipDownload: true,
      usePrebuiltBinaries: true,
      progressLogs: false,
      logLevel: lib.LlamaLogLevel.error,
    }).catch((err: unknown) => {
      throw new LlmConfigError(`llama.cpp could not be loaded: ${(err as Error).message}`, {
        where: 'node-llama-cpp',
        hint: 'install node-llama-cpp with its prebuilt binary for this platform (@node-llama-cpp/<platform>), or use provider "openai" against a server',
        cause: err,
      });
    });
  };
  if (gpu) return (llamaGpu ??= make());
  return (llamaCpu ??= make());
}

async function loadModel(path: string, gpu: boolean): Promise<LlamaModel> {
  const key = `${gpu}:${path}`;
  let p = models.get(key);
  if (!p) {
    p = loadLlama(gpu).then((llama) =>
      llama.loadModel({ modelPath: path, gpuLayers: gpu ? 'auto' : 0 }).catch((err: unknown) => {
        throw new LlmConfigError(`llama.cpp could not load ${path}: ${(err as Error).message}`, {
          where: path,
          hint: 'is it a GGUF file of a model architecture llama.cpp supports?',
          cause: err,
        });
      }),
    );
    models.set(key, p);
    p.catch(() => models.delete(key));
  }
  return p;
}

export class LocalChatBackend implements ChatBackend {
  readonly provider = 'local';
  readonly model: string;
  /** The resolved .gguf path and its size: the model's identity for memo keys. */
  readonly path: string;
  readonly fileBytes: number;
  private readonly mode: 'completion' | 'chat';
  private readonly llamaModel: LlamaModel;
  private readonly context: LlamaContext;
  // One completion engine per sequence, reused: the few-shot prefix its last prompt shared with the
  // next one stays in that sequence's KV cache and is not evaluated again.
  private readonly free: Array<{ completion: LlamaCompletion; prefix: string }>;
  private readonly waiting: Array<{ prefix: string; resolve: (s: { completion: LlamaCompletion; prefix: string }) => void }> = [];
  private readonly parallel: number;
  private readonly lib: LlamaCpp;
  private busy = 0;

  private constructor(lib: LlamaCpp, spec: string, path: string, bytes: number, opts: LocalOptions, model: LlamaModel, context: LlamaContext) {
    this.lib = lib;
    this.model = spec;
    this.path = path;
    this.fileBytes = bytes;
    this.mode = opts.mode ?? 'completion';
    this.llamaModel = model;
    this.context = context;
    this.free = Array.from({ length: context.totalSequences }, () => ({
      completion: new lib.LlamaCompletion({ contextSequence: context.getSequence() }),
      prefix: '',
    }));
    this.parallel = Math.max(1, opts.parallel ?? 1);
  }

  static async open(env: GgufEnv, opts: LocalOptions = {}): Promise<LocalChatBackend> {
    const spec = opts.model ?? DEFAULT_GGUF;
    const path = await resolveGguf(spec, env);
    const bytes = (await stat(path)).size;
    const model = await loadModel(path, opts.gpu ?? false);
    const sequences = Math.max(1, opts.parallel ?? 1) + Math.max(0, (opts.templates ?? 1) - 1);
    const perSequence = opts.contextSize ?? 2048;
    const context = await model.createContext({
      sequences,
      contextSize: perSequence * sequences,
      threads: opts.threads ?? defaultThreads(),
      batchSize: Math.min(512, perSequence * sequences),
    });
    return new LocalChatBackend(await loadLlamaCpp(), spec, path, bytes, opts, model, context);
  }

  /** A free sequence, preferring one whose last prompt began like this one. */
  private async acquire(prefix: string): Promise<{ completion: LlamaCompletion; prefix: string }> {
    if (this.busy < this.parallel && this.free.length > 0) {
      this.busy++;
      return this.take(prefix);
    }
    return new Promise((resolve) => this.waiting.push({ prefix, resolve }));
  }

  private take(prefix: string): { completion: LlamaCompletion; prefix: string } {
    let i = this.free.findIndex((s) => s.prefix === prefix);
    if (i < 0) i = this.free.findIndex((s) => s.prefix === '');
    if (i < 0) i = 0;
    const [s] = this.free.splice(i, 1);
    s!.prefix = prefix;
    return s!;
  }

  private release(s: { completion: LlamaCompletion; prefix: string }): void {
    this.free.push(s);
    const next = this.waiting.shift();
    if (next) next.resolve(this.take(next.prefix));
    else this.busy--;
  }

  private prompt(messages: ChatMessage[]): { text: LlamaText; stops: Array<LlamaText | string> } {
    if (this.mode === 'completion') return { text: this.lib.LlamaText(renderCompletion(messages)), stops: [COMPLETION_STOP] };
    const wrapper = this.lib.resolveChatWrapper(this.llamaModel);
    const history: ChatHistoryItem[] = messages.map((m) =>
      m.role === 'assistant' ? { type: 'model', response: [m.content] } : { type: m.role, text: m.content },
    );
    history.push({ type: 'model', response: [] });
    const state = wrapper.generateContextState({ chatHistory: history });
    return { text: state.contextText, stops: state.stopGenerationTriggers };
  }

  async complete(req: ChatRequest): Promise<ChatResult> {
    const { text, stops } = this.prompt(req.messages);
    const promptTokens = text.tokenize(this.llamaModel.tokenizer).length;
    const slot = await this.acquire(text.toString().slice(0, 200));
    const { completion } = slot;
    const started = performance.now();
    try {
      req.signal?.throwIfAborted();
      let completionTokens = 0;
      const res = await completion.generateCompletionWithMeta(text, {
        maxTokens: req.sampling.maxTokens,
        temperature: req.sampling.temperature,
        topP: req.sampling.topP,
        seed: req.seed,
        customStopTriggers: stops,
        signal: req.signal,
        onToken: (tokens) => {
          completionTokens += tokens.length;
        },
      });
      return { text: res.response, promptTokens, completionTokens, latencyMs: performance.now() - started, retries: 0 };
    } finally {
      this.release(slot);
    }
  }

  async close(): Promise<void> {
    await this.context.dispose();
  }
}
