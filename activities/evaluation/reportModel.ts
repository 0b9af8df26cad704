import type { EvalSetName, MetricsJson, PairedComparison, Verdict } from './metricsJson.ts';
import type { MetricName, StableMetricName } from './metrics.ts';

/** Everything the report renders, gathered by the report stage from the evaluation and its lineage. */
export interface ReportData {
  metrics: MetricsJson;
  evaluation: { digest: string; createdAt: string; runId?: string };
  /** Accuracy@k for k = 1..100, per eval set and system, from the per-query first relevant ranks. */
  curves: Partial<Record<EvalSetName, Record<string, number[]>>>;
  /** Loss per step of each trained model found in the lineage (fine-tuned model, reranker). */
  training: Array<{ name: string; points: Array<[number, number]> }>;
  /** Why a training curve is missing, when it is. */
  trainingNote?: string;
  /** Dev-split metrics per step of the fine-tuned model's training (the train stage's meta.evals). */
  devCurves: Array<{ name: string; points: Array<[number, number]> }>;
  lineage: LineageNode[];
  examples: Partial<Record<EvalSetName, ExampleSection>>;
  /** From metrics.json, or derived from its paired tests for an evaluation written before verdicts. */
  verdict: Verdict;
  /** Similarity scores of the mined pairs, binned; absent when no mining stage is in the lineage. */
  mining?: MiningScores;
  /** Counts from the chunks to the training rows, in pipeline order, from the stages' stats. */
  funnel: Array<{ label: string; count: number }>;
}

export interface MiningScores {
  stageId: string;
  /** Bin edges shared by both histograms (bins + 1 values). */
  edges: number[];
  positive: number[];
  negative: number[];
  /** 1 − relativeMargin: candidates scoring above this × their positive's score were dropped (NaN: no relative margin). */
  margin: number;
  medianPositive: number;
  removedByMargin: number | null;
}

export interface LineageNode {
  digest: string;
  kind: string;
  stageId?: string;
  stageKind?: string;
  rows: Record<string, number>;
  stats: Record<string, unknown>;
  /** The producing stage's parameters as the manifest recorded them (defaults filled in). */
  params?: unknown;
  /** Input name → digest. */
  inputs: Record<string, string>;
  missing?: boolean;
}

export interface ExampleQuery {
  queryId: string;
  query: string;
  /** Start of the first relevant chunk. */
  relevant: string;
  relevantPath: string;
  /** Per system shown; `scored` false when the system did not see the query (outside the rerank sample). */
  ranks: Array<{ system: string; scored: boolean; rank: number | null; top1: string }>;
}

/** Lists of example queries for one eval set: 'Most improved by fine-tuning', 'Misses', 'Sample'... */
export type ExampleSection = Array<{ label: string; queries: ExampleQuery[] }>;

/** BM25 and the hybrids: their place in the reading order, and their colour. */
const LEXICAL_SYSTEMS: Record<string, { order: number; color: string }> = {
  bm25: { order: 2, color: '#16a34a' },
  'base+bm25': { order: 3, color: '#0d9488' },
  'finetuned+bm25': { order: 4, color: '#0891b2' },
};

/** Systems in a fixed reading order: base, fine-tuned, BM25 and the hybrids, then rerankers by depth. */
export function orderSystems(names: Iterable<string>): string[] {
  const key = (s: string) => {
    const lexical = LEXICAL_SYSTEMS[s];
    if (lexical) return lexical.order;
    const m = /^(base|finetuned)(?:\+rerank@(\d+))?$/.exec(s);
    return m ? (m[2] ? 5 + (m[1] === 'finetuned' ? 1000 : 0) + Number(m[2]) / 1000 : m[1] === 'base' ? 0 : 1) : 9999;
  };
  return [...names].sort((a, b) => key(a) - key(b) || a.localeCompare(b));
}

const RERANK_BASE = ['#f59e0b', '#d97706', '#b45309', '#92400e'];
const RERANK_FT = ['#8b5cf6', '#7c3aed', '#6d28d9'];

export function colorOf(system: string, all: string[]): string {
  if (system === 'base') return '#6b7280';
  if (system === 'finetuned') return '#2563eb';
  const lexical = LEXICAL_SYSTEMS[system];
  if (lexical) return lexical.color;
  const group = all.filter((s) => s.startsWith(system.split('+')[0]!) && s.includes('+rerank@'));
  const i = Math.max(0, group.indexOf(system));
  return system.startsWith('base') ? RERANK_BASE[i % RERANK_BASE.length]! : RERANK_FT[i % RERANK_FT.length]!;
}

export function findComparison(metrics: Pick<MetricsJson, 'pairedTests'>, set: EvalSetName, a: string, b: string): PairedComparison | undefined {
  return metrics.pairedTests[set]?.find((c) => c.a === a && c.b === b);
}

/** The deepest base reranker, the one fine-tuning is compared with. */
export function deepestBaseReranker(systems: string[]): string | undefined {
  return orderSystems(systems.filter((s) => s.startsWith('base+rerank@'))).pop();
}

export const HEADLINE_METRICS: StableMetricName[] = ['accuracy@1', 'accuracy@10', 'mrr@10', 'ndcg@10'];
export const SET_LABEL: Record<EvalSetName, string> = { generated: 'generated eval queries', human: 'human-written questions' };
