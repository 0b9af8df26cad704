import { z } from 'zod';
import { fmt, pts } from './html.ts';
import type { BaselineStatus, DevCheck, EvalSetName, LexicalStanding, MetricsJson, Outcome, PairedComparison, Verdict } from './metricsJson.ts';
import { EVAL_SETS } from './metricsJson.ts';
import type { MetricName, StableMetricName } from './metrics.ts';
import { SET_LABEL, findComparison, orderSystems } from './reportModel.ts';

/**
 * The verdict a run must not hide: is the fine-tuned model better or worse than its base, and is
 * each reranked system a baseline worth beating. Written by the evaluation into metrics.json and its
 * stats (so `status` and `run --json` carry it), and rendered by the report and summary.
 */

/** The metrics that decide: the first answer, and the ranking of the first page. */
export const VERDICT_METRICS: StableMetricName[] = ['accuracy@1', 'ndcg@10'];

/**
 * Below this many queries a sampled system's bootstrap interval means little (one query gives the
 * interval 0.000–0.000): its figures are shown with their n, and nothing is concluded from them.
 */
export const MIN_JUDGED_QUERIES = 30;

/**
 * The train stage records dev means without per-query values, so there is no interval: a change
 * smaller than this (one point) is taken as no difference.
 */
export const DEV_TOLERANCE = 0.01;

/** The dev figures compared before/after fine-tuning, when the train stage recorded them. */
const DEV_METRICS = ['dev_cosine_ndcg@10', 'dev_cosine_accuracy@1'] as const;

/** b compared with a: 'worse' when any deciding metric's interval lies below 0, 'better' when one lies above. */
export function outcomeOf(cmp: PairedComparison): Outcome {
  const diffs = VERDICT_METRICS.map((k) => cmp.metrics[k].diff);
  if (diffs.some((d) => d.hi < 0)) return 'worse';
  if (diffs.some((d) => d.lo > 0)) return 'better';
  return 'no difference';
}

/** Queries a system was scored on, and whether that is a sample of the eval set (rerankMaxQueries). */
export function scoredOn(m: Pick<MetricsJson, 'meta'>, set: EvalSetName, system: string): { n: number; sampled: boolean } {
  const info = m.meta.evalSets[set];
  if (!info) return { n: 0, sampled: false };
  const n = system.includes('+rerank@') ? info.reranked : info.queries;
  return { n, sampled: n < info.queries };
}

/** Too few to judge: a sample of fewer than MIN_JUDGED_QUERIES queries. */
export function tooFew(m: Pick<MetricsJson, 'meta'>, set: EvalSetName, system: string): boolean {
  const s = scoredOn(m, set, system);
  return s.sampled && s.n < MIN_JUDGED_QUERIES;
}

/** The system a reranked system reorders: 'base' for 'base+rerank@50'. */
export function firstStageOf(system: string): string {
  return system.split('+')[0]!;
}

/** The accuracy figures a harmful reranker lowered beyond the interval: "accuracy@1 0.900 → 0.125". */
export function harmText(m: Pick<MetricsJson, 'generated' | 'human' | 'pairedTests'>, set: EvalSetName, system: string): string {
  const first = firstStageOf(system);
  const cmp = findComparison(m, set, first, system);
  const table = m[set]!;
  return (['accuracy@1', 'accuracy@10'] as const)
    .filter((k) => cmp && cmp.metrics[k].diff.hi < 0)
    .map((k) => `${k} ${fmt(table[first]![k].value)} → ${fmt(table[system]![k].value)}`)
    .join(', ');
}

export function baselineStatus(m: Pick<MetricsJson, 'meta' | 'pairedTests'>, set: EvalSetName, system: string): BaselineStatus {
  if (tooFew(m, set, system)) return 'too few queries';
  const cmp = findComparison(m, set, firstStageOf(system), system);
  const harms = cmp && (['accuracy@1', 'accuracy@10'] as const).some((k) => cmp.metrics[k].diff.hi < 0);
  return harms ? 'harms its first stage' : 'valid';
}

const EvalPoint = z.object({ step: z.number().int(), metrics: z.record(z.string(), z.number().nullable()) });

/**
 * The train stage's dev evaluations (meta.evals), one per step, the metric names as the dev evaluator
 * gives them: the Trainer's periodic evaluations prefix them with "eval_", the final one does not.
 */
export function devPoints(evals: unknown): Array<{ step: number; metrics: Record<string, number | null> }> {
  const parsed = z.array(EvalPoint).safeParse(evals);
  if (!parsed.success) return [];
  const byStep = new Map<number, Record<string, number | null>>();
  for (const e of parsed.data) {
    const metrics = Object.fromEntries(Object.entries(e.metrics).map(([k, v]) => [k.replace(/^eval_/, ''), v]));
    byStep.set(e.step, { ...byStep.get(e.step), ...metrics });
  }
  return [...byStep].sort((a, b) => a[0] - b[0]).map(([step, metrics]) => ({ step, metrics }));
}

/**
 * Base vs fine-tuned on the training dev split, from the train stage's `meta.evals`: the evaluation
 * at step 0 is the base model's (the kernel evaluates before training when asked to), the last one
 * the exported model's. Undefined when there is no step-0 figure to compare with.
 */
const MergeMeta = z.object({
  share: z.number(),
  chosenBy: z.string(),
  candidates: z.array(z.object({ share: z.number(), gain: z.number().optional(), gainLow: z.number().optional(), gainHigh: z.number().optional() }).loose()),
});

/** The train stage's merge record (meta.merge): what was kept, and the best candidate's interval. */
function mergeOf(merge: unknown): DevCheck['merge'] {
  const parsed = MergeMeta.safeParse(merge);
  if (!parsed.success) return undefined;
  const { share, chosenBy, candidates } = parsed.data;
  const scored = candidates.filter((c) => c.share > 0 && c.gain !== undefined && c.gainLow !== undefined && c.gainHigh !== undefined);
  const top = scored.reduce<(typeof scored)[number] | undefined>((a, c) => (a && a.gain! >= c.gain! ? a : c), undefined);
  return { share, chosenBy, ...(top ? { best: { share: top.share, gain: top.gain!, low: top.gainLow!, high: top.gainHigh! } } : {}) };
}

export function devCheckOf(evals: unknown, merge?: unknown): DevCheck | undefined {
  const points = devPoints(evals);
  const before = points.find((p) => p.step === 0);
  const after = points.at(-1);
  if (!before || !after || after.step === 0) return undefined;
  const mergeInfo = mergeOf(merge);
  const figures: DevCheck['figures'] = {};
  for (const k of DEV_METRICS) {
    const base = before.metrics[k];
    const finetuned = after.metrics[k];
    if (typeof base === 'number' && typeof finetuned === 'number') figures[k] = { base, finetuned };
  }
  const deltas = Object.values(figures).map((f) => f.finetuned - f.base);
  if (deltas.length === 0) return undefined;
  const outcome = deltas.some((d) => d < -DEV_TOLERANCE) ? 'worse' : deltas.some((d) => d > DEV_TOLERANCE) ? 'better' : 'no difference';
  return { step: after.step, figures, outcome, ...(mergeInfo ? { merge: mergeInfo } : {}) };
}

const diffText = (d: { value: number; lo: number; hi: number }) => `${pts(d.value)} (95% CI ${pts(d.lo)} … ${pts(d.hi)})`;

/** What the evaluation concludes, from its paired tests and (when recorded) the training dev split. */
export function judge(m: Pick<MetricsJson, 'generated' | 'human' | 'pairedTests' | 'meta'>, dev?: DevCheck): Verdict {
  const finetuned: Verdict['finetuned'] = {};
  const baselines: Verdict['baselines'] = {};
  const lexical: NonNullable<Verdict['lexical']> = {};
  const best: NonNullable<Verdict['best']> = {};
  const bad: Verdict['notes'] = [];
  const rest: Verdict['notes'] = [];
  const note = (about: Verdict['notes'][number]['about'], isBad: boolean, text: string) => (isBad ? bad : rest).push({ about, severity: isBad ? 'bad' : 'info', text });
  for (const set of EVAL_SETS) {
    const table = m[set];
    if (!table) continue;
    const label = SET_LABEL[set];
    const ft = findComparison(m, set, 'base', 'finetuned');
    if (ft) {
      const o = outcomeOf(ft);
      finetuned[set] = o;
      const figures = VERDICT_METRICS.map((k) => `${k} ${diffText(ft.metrics[k].diff)}`).join(', ');
      const what = { better: 'better than', worse: 'WORSE than', 'no difference': 'not distinguishable from' }[o];
      note('evalSet', o === 'worse', `Fine-tuned is ${what} base on the ${label}: ${figures}, n = ${ft.n}.`);
    }
    const top = bestSystem(m, set);
    if (top) {
      best[set] = top;
      const t = table[top]!;
      note('best', false, `Best on the ${label}: ${top}, accuracy@1 ${fmt(t['accuracy@1'].value)} (${fmt(t['accuracy@1'].lo)}–${fmt(t['accuracy@1'].hi)}), nDCG@10 ${fmt(t['ndcg@10'].value)}.`);
    }
    const versus = lexicalStanding(m, set);
    if (versus) {
      lexical[set] = versus.standing;
      note('lexical', versus.standing.versusBm25 === 'worse', versus.text);
    }
    const reranked = orderSystems(Object.keys(table)).filter((s) => s.includes('+rerank@'));
    if (reranked.length === 0) continue;
    const statuses: Record<string, BaselineStatus> = {};
    const few: string[] = [];
    for (const system of reranked) {
      const status = baselineStatus(m, set, system);
      statuses[system] = status;
      const first = firstStageOf(system);
      if (status === 'harms its first stage') {
        note('baseline', true, `${system}: this reranker makes ${first} worse on the ${label} (${harmText(m, set, system)}): not a meaningful comparison, and fine-tuned is not compared with it.`);
      } else if (status === 'too few queries') {
        few.push(system);
      }
    }
    if (few.length) {
      note(
        'baseline',
        false,
        `${few.join(', ')} ${few.length > 1 ? 'were' : 'was'} scored on ${scoredOn(m, set, few[0]!).n} ${label} only: ` +
          `too few to judge (at least ${MIN_JUDGED_QUERIES}; raise rerankMaxQueries).`,
      );
    }
    baselines[set] = statuses;
  }
  if (dev) {
    finetuned.dev = dev.outcome;
    const figures = Object.entries(dev.figures)
      .map(([k, f]) => `${k} ${fmt(f.base)} → ${fmt(f.finetuned)}`)
      .join(', ');
    const what = { better: 'better than', worse: 'WORSE than', 'no difference': 'within one point of' }[dev.outcome];
    note('dev', dev.outcome === 'worse', `Fine-tuned is ${what} base on the training dev split: ${figures} (step ${dev.step}; means only, no interval).`);
    const best = dev.merge?.best;
    if (dev.merge?.share === 0 && best) {
      note(
        'dev',
        false,
        `Training handed over the base model unchanged: no share of the fine-tune beat it on the training dev split beyond noise ` +
          `(best, share ${best.share}: nDCG@10 ${diffText({ value: best.gain, lo: best.low, hi: best.high })}). ` +
          `More realistic training questions (an LLM's rather than rule-made ones) may change that on a domain the base model has not seen; ` +
          `the '+bm25' rows show what fusing the base with lexical search gives without any training.`,
      );
    } else if (dev.merge && dev.merge.share > 0 && dev.merge.share < 1) {
      // The "fine-tuned" rows are not the model as trained: a reader comparing with a loss curve must know.
      const how = dev.merge.chosenBy === 'parameter' ? 'as the pipeline sets it' : 'chosen on the training dev split';
      note(
        'dev',
        false,
        `The fine-tuned model's weights are ${fmt(dev.merge.share * 100, 0)}% the fine-tune's and ${fmt((1 - dev.merge.share) * 100, 0)}% its base's (mergeWithBase ${dev.merge.share}, ${how}; WiSE-FT): ` +
          `the mix keeps the base's reach on questions unlike the training ones.`,
      );
    }
  }
  const outcomes = Object.values(finetuned);
  const overall = outcomes.length === 0 ? null : outcomes.includes('worse') ? 'worse' : outcomes.includes('better') ? 'better' : 'no difference';
  return { finetuned, overall, baselines, ...(dev ? { dev } : {}), ...(Object.keys(lexical).length ? { lexical } : {}), ...(Object.keys(best).length ? { best } : {}), notes: [...bad, ...rest] };
}

/** The system with the highest accuracy@1 (ties: nDCG@10, then reading order) of those scored on every query of the set. */
export function bestSystem(m: Pick<MetricsJson, 'generated' | 'human' | 'meta'>, set: EvalSetName): string | undefined {
  const table = m[set];
  if (!table) return undefined;
  const whole = orderSystems(Object.keys(table)).filter((s) => !scoredOn(m, set, s).sampled);
  const score = (s: string) => [table[s]!['accuracy@1'].value, table[s]!['ndcg@10'].value] as const;
  return whole.reduce<string | undefined>((a, s) => {
    if (a === undefined) return s;
    const [x, y] = [score(a), score(s)];
    return y[0] > x[0] || (y[0] === x[0] && y[1] > x[1]) ? s : a;
  }, undefined);
}

/**
 * The model the run hands over (fine-tuned, else base) against BM25, which needs no model, and its
 * hybrid with BM25 against BM25; with the sentence that says so.
 */
function lexicalStanding(m: Pick<MetricsJson, 'generated' | 'human' | 'pairedTests'>, set: EvalSetName): { standing: LexicalStanding; text: string } | undefined {
  const model = m[set]?.['finetuned'] ? 'finetuned' : 'base';
  const cmp = findComparison(m, set, 'bm25', model);
  if (!cmp) return undefined;
  const label = SET_LABEL[set];
  const name = model === 'finetuned' ? 'The fine-tuned model' : 'The base model';
  const o = outcomeOf(cmp);
  const what = { better: 'better than', worse: 'WORSE than', 'no difference': 'not distinguishable from' }[o];
  const figures = VERDICT_METRICS.map((k) => `${k} ${fmt(m[set]!['bm25']![k].value)} → ${fmt(m[set]![model]![k].value)}`).join(', ');
  let text = `${name} is ${what} lexical search with no model (bm25) on the ${label}: ${figures}, ${model} − bm25 accuracy@1 ${diffText(cmp.metrics['accuracy@1'].diff)}.`;
  const hybrid = findComparison(m, set, 'bm25', `${model}+bm25`);
  const ho = hybrid && outcomeOf(hybrid);
  if (hybrid && ho) {
    const hwhat = { better: 'beats', worse: 'is worse than', 'no difference': 'cannot be told apart from' }[ho];
    const fused = m[set]![`${model}+bm25`]!;
    text += ` Fused with BM25 (${model}+bm25) it ${hwhat} bm25: ${VERDICT_METRICS.map((k) => `${k} ${fmt(fused[k].value)}, ${diffText(hybrid.metrics[k].diff)}`).join('; ')}.`;
  }
  return { standing: { model, versusBm25: o, ...(ho ? { hybridVersusBm25: ho } : {}) }, text };
}

/** The verdict's entries for a stage's stats: short keys whose values a person and a script can read. */
export function verdictStats(v: Verdict): Record<string, string> {
  const out: Record<string, string> = {};
  if (v.overall) out['verdict'] = v.overall;
  for (const [where, o] of Object.entries(v.finetuned)) out[`verdict.${where}`] = o;
  for (const [set, system] of Object.entries(v.best ?? {})) out[`best.${set}`] = system;
  for (const [set, l] of Object.entries(v.lexical ?? {})) {
    out[`vsBm25.${set}`] = l.versusBm25;
    if (l.hybridVersusBm25) out[`hybridVsBm25.${set}`] = l.hybridVersusBm25;
  }
  for (const [set, systems] of Object.entries(v.baselines)) {
    for (const [system, status] of Object.entries(systems ?? {})) if (status !== 'valid') out[`baseline.${set}.${system}`] = status;
  }
  return out;
}
