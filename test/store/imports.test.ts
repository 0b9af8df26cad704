import { readFile, readdir } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../workers/config.ts';

/** The project modules a source file imports, as paths relative to the project root. */
async function projectImports(file: string): Promise<string[]> {
  const text = await readFile(join(PROJECT_ROOT, file), 'utf8');
  const specifiers = [...text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]!);
  return specifiers.map((s) => relative(PROJECT_ROOT, resolve(dirname(join(PROJECT_ROOT, file)), s)));
}

async function sources(folder: string): Promise<string[]> {
  return (await readdir(join(PROJECT_ROOT, folder))).filter((n) => n.endsWith('.ts')).map((n) => `${folder}/${n}`);
}

describe('the store layer', () => {
  it('imports only itself and the errors below it: no stage, engine, worker or CLI code', async () => {
    const outside: string[] = [];
    for (const file of await sources('artifacts')) {
      for (const target of await projectImports(file)) {
        if (!target.startsWith('artifacts/') && target !== 'core/errors.ts') outside.push(`${file} → ${target}`);
      }
    }
    expect(outside).toEqual([]);
  });

  it('rests on an errors module that imports nothing of the project', async () => {
    expect(await projectImports('core/errors.ts')).toEqual([]);
  });
});
