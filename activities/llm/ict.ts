import { readFileSync } from 'node:fs';
import { sha256 } from '../../artifacts/hash.ts';
import { clozeQuestion } from './clozeQuestion.ts';
import type { ChunkGeneration, ChunkInput, QueryProvider, StyleCount } from './types.ts';

/**
 * Inverse Cloze Task: a sentence of the chunk stands in for a query about it. No LLM, so it is free
 * and instant: a baseline to compare generated queries against, and a fallback when no model is at
 * hand. Sentences are picked by a seeded shuffle, so a chunk always gets the same ones.
 */

const MIN_CHARS = 8;
const MAX_CHARS = 300;

/** Sentences at 。！？!? and at . followed by a space; line breaks end a sentence too. */
export function sentences(text: string): string[] {
  const parts = text.split(/(?<=[。！？!?])|(?<=\.)\s+|\n+/u);
  return parts.map((s) => s.replace(/^[#>*\-\s]+/u, '').trim()).filter(Boolean);
}

export const ICT_PROMPT_HASH = sha256('ict:v1').slice(0, 16);
/** The question rules' identity: editing them makes new queries (the per-chunk memo is keyed by it). */
export const CLOZE_RULES_HASH = sha256(readFileSync(new URL('./clozeQuestion.ts', import.meta.url))).slice(0, 16);

export class IctProvider implements QueryProvider {
  readonly provider = 'ict';
  readonly model = 'ict';

  constructor(private readonly form: 'sentence' | 'question' = 'sentence') {}

  async generate(chunk: ChunkInput, plan: StyleCount[], seed: number): Promise<ChunkGeneration> {
    const want = plan.reduce((s, p) => s + p.count, 0);
    const all = [...new Set(sentences(chunk.text))];
    const fit = all.filter((s) => s.length >= MIN_CHARS && s.length <= MAX_CHARS);
    const pool = fit.length > 0 ? fit : all.map((s) => s.slice(0, MAX_CHARS));
    // A chunk of one sentence would make the query equal the passage: nothing to learn from.
    const usable = pool.filter((s) => s.length < chunk.text.trim().length || pool.length > 1);
    const picked = seededShuffle(usable, `${seed}\n${chunk.text}`).slice(0, want);
    const texts = this.form === 'question' ? picked.map((s) => clozeQuestion(s, unitHash(`${seed}\n${s}`)) ?? s) : picked;
    const promptHash = this.form === 'question' ? CLOZE_RULES_HASH : ICT_PROMPT_HASH;
    return {
      queries: texts.map((text) => ({ text, style: 'ict', promptHash, latencyMs: 0, tokens: 0 })),
      llmCalls: 0,
      retries: 0,
      malformed: 0,
      repairs: 0,
      promptTokens: 0,
      completionTokens: 0,
    };
  }

  async close(): Promise<void> {}
}

/** A 32-bit integer fixed by `seed`. */
function hash32(seed: string): number {
  return parseInt(sha256(seed).slice(0, 8), 16);
}

/** A number in [0, 1) fixed by `seed`. */
function unitHash(seed: string): number {
  return hash32(seed) / 0x100000000;
}

function seededShuffle<T>(items: T[], seed: string): T[] {
  const out = [...items];
  let h = hash32(seed) || 1;
  const rand = () => {
    h ^= h << 13;
    h ^= h >>> 17;
    h ^= h << 5;
    return (h >>> 0) / 0x100000000;
  };
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
