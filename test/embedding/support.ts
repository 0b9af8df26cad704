import { execFile } from 'node:child_process';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Embeddings } from '../../activities/embedding/encoder.ts';
import { PROJECT_ROOT } from '../../workers/config.ts';
import { EXAMPLES } from '../eval/fixtures.ts';

export const PYTHON = join(PROJECT_ROOT, '.venv', 'bin', 'python');

/** Paragraphs of the project's own example corpus (Japanese and English), headings dropped. */
export async function exampleParagraphs(): Promise<string[]> {
  const dir = join(EXAMPLES, 'corpus');
  const out: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    for (const para of (await readFile(join(dir, name), 'utf8')).split(/\n\s*\n/)) {
      const t = para.trim();
      if (t && !t.startsWith('#')) out.push(t);
    }
  }
  return out;
}

/** sentence-transformers (PyTorch) embeddings of `texts`, via trainer/st_encode.py. */
export async function torchEmbeddings(stDir: string, texts: string[], work: string, opts: { kind?: 'query' | 'passage'; prefix?: string } = {}): Promise<Embeddings> {
  const textsPath = join(work, 'texts.json');
  const outPath = join(work, 'vectors.f32');
  await writeFile(textsPath, JSON.stringify(texts));
  const args = [join(PROJECT_ROOT, 'trainer', 'st_encode.py'), '--model', stDir, '--texts', textsPath, '--out', outPath, '--kind', opts.kind ?? 'passage'];
  if (opts.prefix !== undefined) args.push(`--prefix=${opts.prefix}`);
  const { stdout } = await promisify(execFile)(PYTHON, args, { maxBuffer: 1 << 24 });
  const { dim } = JSON.parse(stdout.trim().split('\n').pop() as string) as { dim: number };
  const buf = await readFile(outPath);
  return { dim, count: texts.length, data: new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)) };
}

/** Cosine of row i of a and row i of b, for every row. */
export function rowCosines(a: Embeddings, b: Embeddings): number[] {
  const out: number[] = [];
  for (let i = 0; i < a.count; i++) {
    let dot = 0;
    let na = 0;
    let nb = 0;
    for (let j = 0; j < a.dim; j++) {
      const x = a.data[i * a.dim + j] as number;
      const y = b.data[i * b.dim + j] as number;
      dot += x * y;
      na += x * x;
      nb += y * y;
    }
    out.push(dot / Math.sqrt(na * nb));
  }
  return out;
}
