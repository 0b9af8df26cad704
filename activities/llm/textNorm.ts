/**
 * Normalised query text for duplicate detection, and near-duplicate search by MinHash + LSH over
 * character trigrams (language-agnostic: Japanese has no spaces to split words on). Candidates from
 * the LSH bands are confirmed with the exact Jaccard similarity, so a hit is never a false positive.
 * The band width follows the threshold so a pair at the threshold becomes a candidate with > 95%
 * probability (> 99% a little above it) while dissimilar pairs rarely do: verification stays far
 * from all pairs. For scale: "緑川ダムが完成したのは何年ですか" and "…何年か" are 0.73 similar,
 * "緑川ダムについて教えてください" and "茶畑について教えてください" 0.60.
 */

/** NFKC, lower case, no whitespace, punctuation or symbols: "富士山の標高は?" = "富士山の 標高は？". */
export function normalizeQuery(text: string): string {
  return text.normalize('NFKC').toLowerCase().replace(/[\s\p{P}\p{S}]+/gu, '');
}

export function trigrams(norm: string): Set<string> {
  const chars = [...norm];
  const out = new Set<string>();
  if (chars.length < 3) {
    if (chars.length > 0) out.add(norm);
    return out;
  }
  for (let i = 0; i + 3 <= chars.length; i++) out.add(chars.slice(i, i + 3).join(''));
  return out;
}

export function jaccard(a: Set<string>, b: Set<string>): number {
  if (a.size === 0 && b.size === 0) return 1;
  let inter = 0;
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  for (const x of small) if (large.has(x)) inter++;
  return inter / (a.size + b.size - inter);
}

const PERMUTATIONS = 256;

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

// Fixed odd multipliers and offsets for the universal hashes h_i(x) = a_i·x + b_i (mod 2^32).
const COEFFS = (() => {
  let s = 0x9e3779b9;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
  return Array.from({ length: PERMUTATIONS }, () => [next() | 1, next()] as const);
})();

function minhash(shingles: Set<string>): Uint32Array {
  const sig = new Uint32Array(PERMUTATIONS).fill(0xffffffff);
  for (const sh of shingles) {
    const x = fnv1a(sh);
    for (let i = 0; i < PERMUTATIONS; i++) {
      const [a, b] = COEFFS[i]!;
      const v = (Math.imul(a, x) + b) >>> 0;
      if (v < sig[i]!) sig[i] = v;
    }
  }
  return sig;
}

/** Texts added so far, searchable for near duplicates. */
export class NearDuplicateIndex {
  readonly threshold: number;
  private readonly rows: number;
  private readonly bands: Array<Map<string, number[]>>;
  private readonly items: Array<{ id: string; shingles: Set<string> }> = [];

  constructor(threshold: number) {
    this.threshold = threshold;
    this.rows = threshold >= 0.75 ? 8 : threshold >= 0.6 ? 5 : threshold >= 0.4 ? 3 : 1;
    this.bands = Array.from({ length: Math.floor(PERMUTATIONS / this.rows) }, () => new Map());
  }

  get size(): number {
    return this.items.length;
  }

  /** The id of an added text at least `threshold` similar to this one (most similar first), if any. */
  find(text: string): { id: string; similarity: number } | undefined {
    const shingles = trigrams(normalizeQuery(text));
    return this.match(shingles, this.keys(minhash(shingles)));
  }

  add(id: string, text: string): void {
    const shingles = trigrams(normalizeQuery(text));
    this.insert(id, shingles, this.keys(minhash(shingles)));
  }

  /** find() then add() unless found: returns the earlier near duplicate, if there is one. */
  addUnlessDuplicate(id: string, text: string): { id: string; similarity: number } | undefined {
    const shingles = trigrams(normalizeQuery(text));
    const keys = this.keys(minhash(shingles));
    const hit = this.match(shingles, keys);
    if (!hit) this.insert(id, shingles, keys);
    return hit;
  }

  private keys(sig: Uint32Array): string[] {
    const out: string[] = [];
    for (let b = 0; b < this.bands.length; b++) out.push(sig.subarray(b * this.rows, (b + 1) * this.rows).join(','));
    return out;
  }

  private match(shingles: Set<string>, keys: string[]): { id: string; similarity: number } | undefined {
    const seen = new Set<number>();
    let best: { id: string; similarity: number } | undefined;
    keys.forEach((key, b) => {
      for (const idx of this.bands[b]!.get(key) ?? []) {
        if (seen.has(idx)) continue;
        seen.add(idx);
        const item = this.items[idx]!;
        const sim = jaccard(shingles, item.shingles);
        if (sim >= this.threshold && (!best || sim > best.similarity)) best = { id: item.id, similarity: sim };
      }
    });
    return best;
  }

  private insert(id: string, shingles: Set<string>, keys: string[]): void {
    const idx = this.items.length;
    this.items.push({ id, shingles });
    keys.forEach((key, b) => {
      const band = this.bands[b]!;
      const list = band.get(key);
      if (list) list.push(idx);
      else band.set(key, [idx]);
    });
  }
}
