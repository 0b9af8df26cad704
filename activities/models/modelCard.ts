import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../../artifacts/fsutil.ts';
import type { ModelInfo } from '../artifactKinds/modelArtifact.ts';
import type { MetricsJson } from '../evaluation/metricsJson.ts';
import { MODEL_INFO_FILE } from '../artifactKinds/modelArtifact.ts';

/**
 * The README.md model card of a `model` artifact, in the Hugging Face format (YAML front matter, then
 * Markdown). The stage that makes the artifact writes it (prepareModel for a base model, train for a
 * fine-tuned one); `embedflow artifacts export` fills its evaluation and lineage sections from the store,
 * since the artifact cannot name its own digest nor the evaluations made of it later.
 */

export const CARD_FILE = 'README.md';

/** This file, relative to the project root: the stages that write cards key their caches on it. */
export const CARD_SOURCE = join('activities', 'models', 'modelCard.ts');

/** model.json's `card`, as trainer/export_model.py reads it from the base model's own card or package. */
export const CardFacts = z.object({
  baseModel: z.string().nullable().describe('Hugging Face id of the model this one derives from'),
  license: z.string().describe("the base model's license id ('mit', 'apache-2.0') or 'unknown'"),
  language: z.array(z.string()),
});
export type CardFacts = z.infer<typeof CardFacts>;

/** What a card says of a model nothing is known about. */
export const UNKNOWN_FACTS: CardFacts = { baseModel: null, license: 'unknown', language: [] };

/** The card facts in a model folder's model.json; undefined for models exported before cards existed. */
export async function readCardFacts(modelDir: string): Promise<CardFacts | undefined> {
  const raw = JSON.parse(await readFile(join(modelDir, MODEL_INFO_FILE), 'utf8')) as { card?: unknown };
  const parsed = CardFacts.safeParse(raw.card);
  return parsed.success ? parsed.data : undefined;
}

/** What the train stage knows of a fine-tuning run, for the card's training section. */
export interface TrainingSummary {
  base: { name: string; digest: string };
  dataset: { digest: string; rows: number; droppedRows: number };
  params: { loss: string; scale: number; trainLayers?: number; epochs: number; maxSteps?: number; learningRate: number; batchSize: number; warmupRatio: number; seed: number };
  steps: number;
  trainLoss: number | null;
  mergeShare?: number;
  device: string;
  precision: string;
  devMetrics: Record<string, number | null>;
}

export interface CardInput {
  info: ModelInfo;
  facts: CardFacts;
  training?: TrainingSummary;
}

export async function writeModelCard(dir: string, input: CardInput): Promise<void> {
  await writeFileAtomic(join(dir, CARD_FILE), renderModelCard(input));
}

const EVALUATION = 'evaluation';
const LINEAGE = 'lineage';
const open = (name: string) => `<!-- embedflow:${name} -->`;
const close = (name: string) => `<!-- /embedflow:${name} -->`;
const section = (name: string, body: string) => `${open(name)}\n${body.trimEnd()}\n${close(name)}`;

export function renderModelCard({ info, facts, training }: CardInput): string {
  const front = [
    '---',
    ...(facts.baseModel ? [`base_model: ${yamlString(facts.baseModel)}`] : []),
    ...(facts.language.length ? ['language:', ...facts.language.map((l) => `- ${yamlString(l)}`)] : []),
    `license: ${yamlString(facts.license)}`,
    'library_name: sentence-transformers',
    'tags:',
    '- sentence-transformers',
    '- feature-extraction',
    '- embedflow',
    'pipeline_tag: sentence-similarity',
    '---',
  ];
  const what = training
    ? `A sentence-embedding model fine-tuned by embedflow from \`${training.base.name}\`` +
      `${facts.baseModel ? ` (${facts.baseModel})` : ''} for retrieval on one domain's corpus.`
    : `The base sentence-embedding model \`${info.name}\`${facts.baseModel ? ` (${facts.baseModel})` : ''}, exported by embedflow ` +
      `as it is, to be fine-tuned or compared with fine-tuned models.`;
  const body = [
    `# ${info.name}`,
    '',
    what,
    '',
    `- Embedding: ${info.dim} dimensions, ${info.pooling} pooling${info.normalize ? ', unit length (use cosine or dot product)' : ''}`,
    `- Input: at most ${info.maxSeqLength} tokens; longer texts are truncated`,
    `- Prompts: query ${prefixText(info.queryPrefix)}, passage ${prefixText(info.passagePrefix)}`,
    `- License: ${facts.license}${facts.license === 'unknown' ? " (the base model's card did not say; check it before publishing)" : " (the base model's)"}`,
    '',
    ...(training ? trainingSection(training) : []),
    '## Evaluation',
    '',
    section(
      EVALUATION,
      'Not in the artifact itself: `embedflow artifacts export <digest> DIR` fills this section with the ' +
        "store's evaluations of this model (metrics with 95% bootstrap intervals).",
    ),
    '',
    '## Lineage',
    '',
    section(LINEAGE, 'Filled in by `embedflow artifacts export <digest> DIR`: the digests this model was made from.'),
    '',
    ...usageSection(info),
    ...limitsSection(info, training),
  ];
  return `${[...front, '', ...body].join('\n').trimEnd()}\n`;
}

function trainingSection(t: TrainingSummary): string[] {
  const p = t.params;
  const dev = Object.entries(t.devMetrics).filter(([, v]) => v != null);
  return [
    '## Training',
    '',
    `- Base model: \`${t.base.name}\` (artifact \`${t.base.digest}\`)`,
    `- Dataset: artifact \`${t.dataset.digest}\`, ${t.dataset.rows} (query, passage[, negatives]) rows` +
      (t.dataset.droppedRows ? `, ${t.dataset.droppedRows} rows with an empty text left out` : ''),
    `- Loss: ${p.loss} at scale ${p.scale}${p.trainLayers ? `, the top ${p.trainLayers} layers trained` : ''}; ${t.steps} steps (${p.maxSteps !== undefined ? `max ${p.maxSteps}` : `${p.epochs} epoch(s)`}), ` +
      `batch size ${p.batchSize}, learning rate ${p.learningRate}, warm-up ${p.warmupRatio}, seed ${p.seed}`,
    `- Final training loss: ${t.trainLoss == null ? 'not reported' : t.trainLoss.toFixed(4)}`,
    ...(t.mergeShare !== undefined ? [`- Merged with the base (WiSE-FT): ${t.mergeShare} of the fine-tuned weights kept`] : []),
    `- Trained on ${t.device} (${t.precision})`,
    ...(dev.length ? [`- Dev split after training: ${dev.map(([k, v]) => `${k} ${(v as number).toFixed(4)}`).join(', ')}`] : []),
    '',
  ];
}

function usageSection(info: ModelInfo): string[] {
  return [
    '## Use it',
    '',
    'Python (sentence-transformers loads this folder; the prompts are the ones the model was trained with):',
    '',
    '```python',
    'from sentence_transformers import SentenceTransformer',
    '',
    'model = SentenceTransformer("./my-model")',
    'queries = model.encode(["how tall is Mount Fuji?"], prompt_name="query")',
    'passages = model.encode(["Mount Fuji is 3,776 m high."], prompt_name="document")',
    'scores = model.similarity(queries, passages)',
    '```',
    '',
    'TypeScript, with transformers.js (`onnx/model.onnx`; `dtype: "int8"` takes `onnx/model_int8.onnx`); the graph',
    "includes the pooling and normalisation, so `sentence_embedding` is what Python's `encode` returns:",
    '',
    '```ts',
    "import { AutoModel, AutoTokenizer, env, type Tensor } from '@huggingface/transformers';",
    'env.allowRemoteModels = false;',
    `const texts = [${JSON.stringify(`${info.queryPrefix}how tall is Mount Fuji?`)}];`,
    "const tokenizer = await AutoTokenizer.from_pretrained('./my-model');",
    "const model = await AutoModel.from_pretrained('./my-model', { dtype: 'fp32' });",
    'const inputs = tokenizer(texts, { padding: true, truncation: true });',
    'const { sentence_embedding } = (await model(inputs)) as { sentence_embedding: Tensor };',
    '```',
    '',
    'or with onnxruntime-node (tokenize as above):',
    '',
    '```ts',
    "import * as ort from 'onnxruntime-node';",
    "const session = await ort.InferenceSession.create('./my-model/onnx/model.onnx');",
    'const enc: Record<string, Tensor | undefined> = tokenizer(texts, { padding: true, truncation: true });',
    "const feeds = Object.fromEntries(session.inputNames.map((n) => [n, new ort.Tensor('int64', enc[n]!.data as BigInt64Array, enc[n]!.dims)]));",
    "const { sentence_embedding } = await session.run(feeds, ['sentence_embedding']);",
    '```',
    '',
    "In TypeScript, prepend model.json's `queryPrefix` / `passagePrefix` to the texts yourself.",
    '',
  ];
}

function limitsSection(info: ModelInfo, training: TrainingSummary | undefined): string[] {
  return [
    '## Limits',
    '',
    ...(training
      ? [
          "- Fine-tuned on questions generated from one corpus: it is meant for that domain's retrieval and may do worse",
          '  than the base elsewhere. Trust the evaluation above (on held-out questions) more than the dev figures.',
        ]
      : ['- Not adapted to any domain: the figures of its original card apply.']),
    `- Texts over ${info.maxSeqLength} tokens are truncated; split long documents into chunks.`,
    '- `onnx/model_int8.onnx` is quantised: its vectors are close to, not equal to, the fp32 ones.',
    '- Queries and passages need their prompts (above); without them retrieval quality drops.',
  ];
}

/** An evaluation of this model, found in the store; `system` is what the evaluation called it. */
export interface CardEvaluation {
  digest: string;
  system: 'base' | 'finetuned';
  metrics: Pick<MetricsJson, 'generated' | 'human' | 'pairedTests' | 'meta'>;
}

export interface CardLineage {
  /** The input's path from this model, e.g. 'dataset' or 'dataset.chunks'. */
  path: string;
  kind: string | null;
  digest: string;
}

/** The card with its evaluation and lineage sections filled; a card without those sections is returned as it is. */
export function fillModelCard(card: string, fill: { digest: string; evaluations: CardEvaluation[]; lineage: CardLineage[] }): string {
  const evaluation = fill.evaluations.length
    ? fill.evaluations.map(evaluationTables).join('\n')
    : 'No evaluation of this model in the store (run a pipeline with an `evaluate` stage, then export again).';
  const lineage = [
    `| input | kind | digest |`,
    `|---|---|---|`,
    `| (this model) | model | \`${fill.digest}\` |`,
    ...fill.lineage.map((l) => `| ${l.path} | ${l.kind ?? '(missing)'} | \`${l.digest}\` |`),
  ].join('\n');
  return replaceSection(replaceSection(card, EVALUATION, evaluation), LINEAGE, lineage);
}

function evaluationTables(e: CardEvaluation): string {
  const out: string[] = [];
  for (const set of ['human', 'generated'] as const) {
    const systems = e.metrics[set];
    if (!systems) continue;
    const shown = (['base', 'finetuned'] as const).filter((s) => systems[s]);
    const paired = e.metrics.pairedTests[set]?.find((t) => t.a === 'base' && t.b === 'finetuned');
    const queries = e.metrics.meta.evalSets[set]?.queries;
    out.push(
      `### ${set === 'human' ? 'Human' : 'Generated'} eval set${queries !== undefined ? ` (${queries} queries)` : ''}, evaluation \`${e.digest}\``,
      '',
      `| metric | ${shown.map((s) => (s === e.system ? `**${s} (this model)**` : s)).join(' | ')}${paired ? ' | fine-tuned − base |' : ' |'}`,
      `|---|${shown.map(() => '---').join('|')}|${paired ? '---|' : ''}`,
    );
    const metrics = Object.keys(systems[shown[0] ?? 'base'] ?? {});
    for (const m of metrics) {
      const cells = shown.map((s) => interval(systems[s]?.[m as keyof (typeof systems)[string]]));
      const diff = paired?.metrics[m as keyof typeof paired.metrics]?.diff;
      out.push(`| ${m} | ${cells.join(' | ')}${paired ? ` | ${interval(diff, true)} |` : ' |'}`);
    }
    out.push('');
  }
  out.push('Values are means over the queries with 95% bootstrap intervals [lo, hi].', '');
  return out.join('\n');
}

function interval(i: { value: number; lo: number; hi: number } | undefined, signed = false): string {
  if (!i) return '–';
  const f = (x: number) => (signed && x > 0 ? '+' : '') + x.toFixed(3);
  return `${f(i.value)} [${f(i.lo)}, ${f(i.hi)}]`;
}

function replaceSection(card: string, name: string, body: string): string {
  const start = card.indexOf(open(name));
  const end = card.indexOf(close(name));
  if (start < 0 || end < start) return card;
  return `${card.slice(0, start)}${section(name, body)}${card.slice(end + close(name).length)}`;
}

function prefixText(prefix: string): string {
  return prefix ? `\`${JSON.stringify(prefix)}\`` : 'none';
}

/** A YAML double-quoted scalar: JSON's string syntax is a subset of it. */
function yamlString(s: string): string {
  return /^[\w.-]+(\/[\w.-]+)?$/.test(s) ? s : JSON.stringify(s);
}
