import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { writeFileAtomic } from '../artifacts/fsutil.ts';
import type { Manifest } from '../artifacts/manifest.ts';
import { readParquet } from '../artifacts/parquet.ts';
import type { ArtifactReader, ArtifactStore } from '../artifacts/store.ts';
import { defineStage } from '../dsl/stage.ts';
import { CHUNKS_FILE } from './artifactKinds/chunksArtifact.ts';
import { TRAIN_FILE } from './artifactKinds/datasetArtifact.ts';
import { QUESTIONS_FILE } from './artifactKinds/evalQuestionsArtifact.ts';
import { METRICS_FILE, type PerQueryRow, parseMetrics, readMetricsText, readPerQuery } from './artifactKinds/evaluationArtifact.ts';
import { NEGATIVES_FILE } from './artifactKinds/hardNegativesArtifact.ts';
import { QUERIES_FILE } from './artifactKinds/queriesArtifact.ts';
import { accuracyCurve, RANKING_DEPTH } from './evaluation/metrics.ts';
import { EVAL_SETS, type EvalSetName, type MetricsJson } from './evaluation/metricsJson.ts';
import { quantileSorted, sortedCopy } from './evaluation/quantile.ts';
import type { ExampleQuery, ExampleSection, LineageNode, MiningScores, ReportData } from './evaluation/reportModel.ts';
import { deepestBaseReranker, orderSystems } from './evaluation/reportModel.ts';
import { renderReportHtml } from './evaluation/reportHtml.ts';
import { renderSummaryMd } from './evaluation/summaryMd.ts';
import { numberColumn, numberListColumn, stringColumn } from './evaluation/tables.ts';
import { devPoints, judge, verdictStats } from './evaluation/verdict.ts';

/**
 * The evaluation as people read it: report.html (self-contained, opens from disk), summary.md (what
 * the CLI prints) and metrics.json (for --json and scripts). Lineage, dataset counts, query and chunk
 * texts and training curves are read from the artifacts the evaluation names in its metrics.json
 * (meta.inputs), so the report is a function of the evaluation's content and caches with it.
 */

const Params = z
  .object({
    examples: z.number().int().min(0).max(50).default(5).describe('Example queries per list (most improved, most regressed, misses, sample) and eval set.'),
  })
  .strict();

const LossLine = z.object({ step: z.number(), loss: z.number() });
const MAX_LINEAGE = 80;

export const report = defineStage({
  kind: 'report',
  description: 'Self-contained HTML report, Markdown summary and metrics.json of an evaluation.',
  params: Params,
  inputs: { evaluation: 'evaluation' },
  output: 'report',
  defaults: { queue: 'cpu', startToCloseTimeout: '30m', retry: { maximumAttempts: 2 } },
  async run(ctx) {
    const ev = ctx.inputs.evaluation;
    const metricsText = await readMetricsText(ev);
    const metrics = parseMetrics(metricsText, ev.digest);
    const perQuery = await readPerQuery(ev);
    const lineage = await walkLineage(ctx.store, ev.digest);
    const { training, note } = await trainingCurves(ctx.store, metrics);
    const verdict = metrics.verdict ?? judge(metrics);
    const data: ReportData = {
      metrics,
      evaluation: { digest: ev.digest, createdAt: ev.manifest.createdAt, runId: ev.manifest.lineage.runId },
      curves: curvesOf(perQuery),
      training,
      trainingNote: note,
      devCurves: await devCurves(ctx.store, metrics),
      lineage,
      examples: await examplesOf(ctx.store, metrics, perQuery, ctx.params.examples),
      verdict,
      mining: await miningScores(ctx.store, lineage),
      funnel: funnelOf(lineage),
    };
    const html = renderReportHtml(data);
    const summary = renderSummaryMd(metrics, verdict);
    await writeFileAtomic(await ctx.out.file('report.html'), html);
    await writeFileAtomic(await ctx.out.file('summary.md'), summary);
    await writeFileAtomic(await ctx.out.file(METRICS_FILE), metricsText);
    return {
      stats: {
        ...verdictStats(verdict),
        evalSets: EVAL_SETS.filter((s) => metrics[s]).length,
        lineageArtifacts: lineage.length,
        trainingCurves: training.length,
        htmlKB: Math.round(Buffer.byteLength(html) / 1024),
      },
      meta: { summary },
    };
  },
});

function curvesOf(rows: PerQueryRow[]): ReportData['curves'] {
  const ranks = new Map<string, Array<number | null>>();
  for (const r of rows) {
    const key = `${r.evalSet}\u0000${r.system}`;
    const list = ranks.get(key);
    if (list) list.push(r.rank);
    else ranks.set(key, [r.rank]);
  }
  const out: ReportData['curves'] = {};
  for (const [key, list] of ranks) {
    const [set, system] = key.split('\u0000') as [EvalSetName, string];
    (out[set] ??= {})[system] = accuracyCurve(list, RANKING_DEPTH);
  }
  return out;
}

/** Every artifact the evaluation was built from, breadth first from the evaluation itself. */
async function walkLineage(store: ArtifactStore, root: string): Promise<LineageNode[]> {
  const seen = new Set<string>([root]);
  const queue = [root];
  const out: LineageNode[] = [];
  while (queue.length && out.length < MAX_LINEAGE) {
    const digest = queue.shift()!;
    try {
      const m = await store.readManifest(digest);
      const stats = m.meta['stats'];
      out.push({
        digest,
        kind: m.kind,
        stageId: m.lineage.stageId,
        stageKind: m.lineage.stageKind,
        rows: m.rows,
        stats: stats && typeof stats === 'object' ? (stats as Record<string, unknown>) : {},
        params: m.lineage.params,
        inputs: m.lineage.inputs,
      });
      for (const d of Object.values(m.lineage.inputs)) {
        if (!seen.has(d)) {
          seen.add(d);
          queue.push(d);
        }
      }
    } catch {
      out.push({ digest, kind: '?', rows: {}, stats: {}, inputs: {}, missing: true });
    }
  }
  return out;
}

type LossPoints = Array<[number, number]>;

/**
 * Where each trained model keeps its loss per step: the train stage in its manifest (meta.lossCurve,
 * thinned to at most 1000 points), the reranker kernel in training_log.jsonl beside the weights.
 * `undefined` when the artifact has no curve at all (a model made elsewhere), [] when it has no values.
 */
const CURVE_SOURCES = [
  { role: 'finetuned', label: 'fine-tuned model', where: 'meta.lossCurve', read: lossCurveOfMeta },
  { role: 'reranker', label: 'reranker', where: 'training_log.jsonl', read: lossCurveOfLog },
] as const;

function lossCurveOfMeta(manifest: Manifest): LossPoints | undefined {
  const curve = manifest.meta['lossCurve'];
  if (!Array.isArray(curve)) return undefined;
  return curve.flatMap((point): LossPoints => {
    const p = LossLine.safeParse(point);
    return p.success && Number.isFinite(p.data.loss) ? [[p.data.step, p.data.loss]] : [];
  });
}

async function lossCurveOfLog(manifest: Manifest, store: ArtifactStore): Promise<LossPoints | undefined> {
  if (!manifest.files.some((f) => f.path === 'training_log.jsonl')) return undefined;
  const text = await readFile((await store.open(manifest.digest)).file('training_log.jsonl'), 'utf8');
  const points: LossPoints = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const p = LossLine.safeParse(JSON.parse(line));
      if (p.success && Number.isFinite(p.data.loss)) points.push([p.data.step, p.data.loss]);
    } catch {
      // A torn last line of a crashed run: the points before it still make a curve.
    }
  }
  return points;
}

async function trainingCurves(store: ArtifactStore, metrics: MetricsJson): Promise<{ training: ReportData['training']; note?: string }> {
  const training: ReportData['training'] = [];
  const notes: string[] = [];
  for (const { role, label, where, read } of CURVE_SOURCES) {
    const digest = metrics.meta.inputs[role];
    if (!digest) continue;
    const manifest = await store.readManifest(digest).catch(() => undefined);
    const points = manifest ? await read(manifest, store) : undefined;
    if (!manifest) notes.push(`the ${label} artifact is not in the store`);
    else if (points === undefined) notes.push(`the ${label} artifact has no ${where}`);
    else if (points.length === 0) notes.push(`the ${label}'s ${where} holds no loss values`);
    else training.push({ name: `${label} (${metrics.meta.models[role]?.name ?? digest.slice(0, 8)})`, points });
  }
  if (!metrics.meta.inputs['finetuned']) notes.unshift('no fine-tuned model was evaluated');
  return { training, note: notes.length ? `No training curve for: ${notes.join('; ')}.` : undefined };
}

/** The dev metrics drawn over training steps: the ranking quality and the first answer. */
const DEV_CURVE_METRICS = ['dev_cosine_ndcg@10', 'dev_cosine_accuracy@1', 'dev_cosine_mrr@10'];

/** The fine-tuned model's dev evaluations per step (train stage meta.evals). */
async function devCurves(store: ArtifactStore, metrics: MetricsJson): Promise<ReportData['devCurves']> {
  const digest = metrics.meta.inputs['finetuned'];
  const manifest = digest ? await store.readManifest(digest).catch(() => undefined) : undefined;
  const points = devPoints(manifest?.meta['evals']);
  return DEV_CURVE_METRICS.flatMap((name) => {
    const line = points.flatMap((p): Array<[number, number]> => {
      const v = p.metrics[name];
      return typeof v === 'number' && Number.isFinite(v) ? [[p.step, v]] : [];
    });
    return line.length ? [{ name: name.replace(/^dev_cosine_/, ''), points: line }] : [];
  });
}

const HISTOGRAM_BINS = 40;

/**
 * Scores of each mined positive and of the hard negatives kept, binned on shared edges; read from
 * the mining stage's negatives.parquet in the lineage (a few numbers per query).
 */
async function miningScores(store: ArtifactStore, lineage: LineageNode[]): Promise<MiningScores | undefined> {
  const node = lineage.find((n) => n.stageKind === 'mineNegatives' && !n.missing);
  if (!node || !(await store.has(node.digest))) return undefined;
  const where = (await store.open(node.digest)).file(NEGATIVES_FILE);
  const t = await readParquet(where, ['positive_score', 'negative_scores']);
  const positive = numberColumn(t, 'positive_score', where).filter(Number.isFinite);
  const negative = numberListColumn(t, 'negative_scores', where).flat().filter(Number.isFinite);
  if (positive.length === 0) return undefined;
  const all = [...positive, ...negative];
  const lo = Math.floor(Math.min(...all) * 20) / 20;
  const hi = Math.ceil(Math.max(...all) * 20) / 20;
  const width = (hi - lo || 0.05) / HISTOGRAM_BINS;
  const edges = Array.from({ length: HISTOGRAM_BINS + 1 }, (_, i) => lo + i * width);
  const bin = (xs: number[]) => {
    const counts = new Array<number>(HISTOGRAM_BINS).fill(0);
    for (const x of xs) counts[Math.min(HISTOGRAM_BINS - 1, Math.max(0, Math.floor((x - lo) / width)))]!++;
    return counts;
  };
  const params = node.params && typeof node.params === 'object' ? (node.params as Record<string, unknown>) : {};
  const removed = node.stats['removedByMargin'];
  return {
    stageId: node.stageId ?? 'mineNegatives',
    edges,
    positive: bin(positive),
    negative: bin(negative),
    margin: marginFactor(params),
    medianPositive: quantileSorted(sortedCopy(positive), 0.5),
    removedByMargin: typeof removed === 'number' ? removed : null,
  };
}

/**
 * The share of its positive's score above which a candidate was dropped: 1 − relativeMargin, or the
 * `margin` factor itself in runs mined before the parameter took sentence-transformers' name; NaN without one.
 */
function marginFactor(params: Record<string, unknown>): number {
  const relative = params['relativeMargin'];
  if (typeof relative === 'number') return 1 - relative;
  if ('relativeMargin' in params) return Number.NaN;
  return typeof params['margin'] === 'number' ? params['margin'] : Number.NaN;
}

/** Chunks → generated queries → kept by the filter → mined → training rows, as far as the lineage has them. */
function funnelOf(lineage: LineageNode[]): ReportData['funnel'] {
  const stage = (kind: string) => lineage.find((n) => n.stageKind === kind && !n.missing);
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
  const firstRows = (n: LineageNode | undefined) => (n ? num(Object.values(n.rows)[0]) : undefined);
  const filter = stage('filterQueries');
  const dataset = lineage.find((n) => n.kind === 'dataset' && !n.missing);
  const steps: Array<[string, number | undefined]> = [
    ['chunks', firstRows(lineage.find((n) => n.kind === 'chunks' && !n.missing))],
    ['generated queries', firstRows(stage('generateQueries')) ?? num(filter?.stats['input'])],
    ['kept by the filter', num(filter?.stats['kept'])],
    ['with hard negatives', firstRows(stage('mineNegatives'))],
    ['training rows', num(dataset?.stats['trainRows']) ?? num(dataset?.rows[TRAIN_FILE])],
  ];
  return steps.flatMap(([label, count]) => (count === undefined ? [] : [{ label, count }]));
}

async function textsOf(store: ArtifactStore, digest: string | undefined, file: string, key: string, columns: string[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  if (!digest || !(await store.has(digest))) return out;
  const where = (await store.open(digest)).file(file);
  const t = await readParquet(where, [key, ...columns]);
  const keys = stringColumn(t, key, where);
  const cols = columns.map((c) => stringColumn(t, c, where));
  keys.forEach((k, i) => out.set(k, cols.map((c) => c[i]!)));
  return out;
}

/**
 * Queries where the fine-tuned model moved the first relevant chunk up (or down) the most, by
 * reciprocal rank; the best model's worst misses; and the first queries of the set. Shows the texts
 * involved, which is where document and query strings enter the report (escaped by the renderer).
 */
async function examplesOf(store: ArtifactStore, metrics: MetricsJson, rows: PerQueryRow[], count: number): Promise<ReportData['examples']> {
  if (count === 0) return {};
  const inputs = metrics.meta.inputs;
  const chunks = await textsOf(store, inputs['chunks'], CHUNKS_FILE, 'chunk_id', ['text', 'path']);
  if (chunks.size === 0) return {};
  const queries = await textsOf(store, inputs['evalQueries'], QUERIES_FILE, 'query_id', ['text']);
  const questions = await textsOf(store, inputs['evalQuestions'], QUESTIONS_FILE, 'query_id', ['text']);
  const out: ReportData['examples'] = {};
  for (const set of EVAL_SETS) {
    const ofSet = rows.filter((r) => r.evalSet === set);
    if (ofSet.length === 0) continue;
    const bySystem = new Map<string, Map<string, PerQueryRow>>();
    for (const r of ofSet) {
      if (!bySystem.has(r.system)) bySystem.set(r.system, new Map());
      bySystem.get(r.system)!.set(r.queryId, r);
    }
    const texts = set === 'human' ? questions : queries;
    const hasFt = bySystem.has('finetuned');
    const shown = orderSystems([...bySystem.keys()]).filter((s) => s === 'base' || s === 'finetuned' || s === deepestBaseReranker([...bySystem.keys()]));
    const rr = (r: PerQueryRow | undefined) => (r?.rank ? 1 / r.rank : 0);
    const base = bySystem.get('base')!;
    const toExample = (queryId: string): ExampleQuery => {
      const b = base.get(queryId)!;
      const rel = chunks.get(b.relevant[0] ?? '');
      return {
        queryId,
        query: texts.get(queryId)?.[0] ?? '',
        relevant: rel?.[0] ?? '',
        relevantPath: rel?.[1] ?? '',
        ranks: shown.map((system) => {
          const r = bySystem.get(system)?.get(queryId);
          return { system, scored: r !== undefined, rank: r ? r.rank : null, top1: chunks.get(r?.top10[0] ?? '')?.[0] ?? '' };
        }),
      };
    };
    const byGain = (a: { q: string; gain: number }, b: { q: string; gain: number }) => b.gain - a.gain || a.q.localeCompare(b.q);
    const section: ExampleSection = [];
    if (hasFt) {
      const ft = bySystem.get('finetuned')!;
      const gains = [...base.keys()].map((q) => ({ q, gain: rr(ft.get(q)) - rr(base.get(q)) }));
      section.push(
        { label: 'Most improved by fine-tuning', queries: gains.filter((g) => g.gain > 0).sort(byGain).slice(0, count).map((g) => toExample(g.q)) },
        {
          label: 'Most regressed by fine-tuning',
          queries: gains.filter((g) => g.gain < 0).sort((a, b) => byGain(b, a)).slice(0, count).map((g) => toExample(g.q)),
        },
      );
    }
    const best = bySystem.get(hasFt ? 'finetuned' : 'base')!;
    const misses = [...best.values()]
      .filter((r) => r.rank === null || r.rank > 10)
      .sort((a, b) => (b.rank ?? 1e9) - (a.rank ?? 1e9) || a.queryId.localeCompare(b.queryId));
    section.push(
      { label: `Missed by ${hasFt ? 'the fine-tuned model' : 'base'} (relevant chunk not in the top 10)`, queries: misses.slice(0, count).map((r) => toExample(r.queryId)) },
      { label: 'Sample (the first queries of the set)', queries: [...base.keys()].slice(0, count).map(toExample) },
    );
    out[set] = section;
  }
  return out;
}
