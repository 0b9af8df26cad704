import { readFile, readdir } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../workers/config.ts';

// Dependencies point down: a module may import its own layer or a lower one, never a higher one.
// A type-only import (`import type`, or every specifier marked `type`) is erased at build time and is
// allowed; a value import is a real load-order dependency and is not.

const LAYERS = ['core', 'store', 'dsl', 'engine', 'kinds', 'recipes', 'top'] as const;
type Layer = (typeof LAYERS)[number];

function layerOf(file: string): Layer | undefined {
  if (file.startsWith('core/')) return 'core';
  if (file.startsWith('artifacts/')) return 'store';
  if (file.startsWith('dsl/')) return 'dsl';
  if (file.startsWith('engine/')) return 'engine';
  if (file.startsWith('activities/')) return 'kinds';
  // The public entry points sit with the recipes: they re-export the authoring API and every kind.
  if (file.startsWith('pipelines/') || file === 'index.ts' || file === 'kinds.ts') return 'recipes';
  if (/^(workflows|workers|cli)\//.test(file)) return 'top';
  return undefined;
}

// Known upward imports, importer → imported. Each must go (this list only shrinks): fixing one means
// moving what both sides need down a layer.
const ALLOWED = new Set<string>([
  // The input snapshot walks a corpus folder with the ingest kind's path rules (glob, sort order,
  // unreadable-file reasons): they belong in a helper below both.
  'engine/snapshotInput.ts → activities/ingest/corpus.ts',
  'engine/snapshotInput.ts → activities/ingest/glob.ts',
]);

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(join(PROJECT_ROOT, dir), { withFileTypes: true })) {
    const rel = dir ? `${dir}/${entry.name}` : entry.name;
    if (entry.isDirectory()) {
      if (dir || ['core', 'artifacts', 'dsl', 'engine', 'pipelines', 'activities', 'workflows', 'workers', 'cli'].includes(entry.name)) out.push(...(await sources(rel)));
    } else if (/\.ts$/.test(entry.name) && (dir || ['index.ts', 'kinds.ts'].includes(entry.name))) out.push(rel);
  }
  return out;
}

const IMPORT_RE = /^\s*(import|export)\s+(type\s+)?([^'";]*?)\s*from\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm;

/** Value imports of project modules, as paths from the repo root. */
function valueImports(file: string, text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(IMPORT_RE)) {
    const spec = m[4] ?? m[5] ?? m[6]!;
    if (m[2]) continue;
    const clause = m[3] ?? '';
    // `import { type A, type B } from` loads nothing at run time either.
    const named = /^\{([^}]*)\}$/.exec(clause.trim());
    if (named && named[1]!.split(',').map((s) => s.trim()).filter(Boolean).every((s) => s.startsWith('type '))) continue;
    let target: string | undefined;
    if (spec.startsWith('.')) target = relative(PROJECT_ROOT, resolve(PROJECT_ROOT, dirname(file), spec));
    else if (spec === 'embedflow') target = 'index.ts';
    else if (spec.startsWith('embedflow/')) target = spec === 'embedflow/kinds' ? 'kinds.ts' : spec.slice('embedflow/'.length);
    if (target) out.push(target);
  }
  return out;
}

describe('import direction', () => {
  it('no module imports a higher layer than its own, except the listed known ones', async () => {
    const found: string[] = [];
    for (const file of await sources('')) {
      const from = layerOf(file);
      if (!from) continue;
      for (const target of valueImports(file, await readFile(join(PROJECT_ROOT, file), 'utf8'))) {
        const to = layerOf(target);
        if (to && LAYERS.indexOf(to) > LAYERS.indexOf(from)) found.push(`${file} → ${target}`);
      }
    }
    const fresh = found.filter((v) => !ALLOWED.has(v));
    expect(fresh, 'a lower layer imports a higher one: move the shared part down, or import a type with `import type`').toEqual([]);
    // A fixed violation leaves the list: keep it honest so it only shrinks.
    expect([...ALLOWED].filter((v) => !found.includes(v)), 'listed violations that no longer occur: delete them from ALLOWED').toEqual([]);
  });
});
