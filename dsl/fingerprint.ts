import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Plugin, build } from 'esbuild';
import { sha256 } from '../artifacts/hash.ts';

/**
 * The automatic code fingerprint of a stage kind: a hash over the source of its defining module and
 * every local module it imports (transitively), its declared code files (e.g. a Python script), and
 * the versions of the packages it imports. Editing a helper two imports away changes it; editing an
 * unrelated stage does not. This is what keeps the cache from serving results of old code.
 */
export interface FingerprintInput {
  module: string;
  codeFiles?: string[];
  version?: string;
}

const memo = new Map<string, Promise<string>>();

export function codeFingerprint(input: FingerprintInput): Promise<string> {
  const id = JSON.stringify([input.module, input.codeFiles ?? [], input.version ?? '']);
  let p = memo.get(id);
  if (!p) {
    p = compute(input);
    memo.set(id, p);
    p.catch(() => memo.delete(id));
  }
  return p;
}

/** Forget memoised fingerprints (tests that edit code between runs in one process). */
export function clearFingerprintCache(): void {
  memo.clear();
}

async function compute({ module, codeFiles = [], version = '' }: FingerprintInput): Promise<string> {
  const result = await build({
    entryPoints: [module],
    bundle: true,
    write: false,
    metafile: true,
    platform: 'node',
    format: 'esm',
    plugins: [otherPackagesExternal],
    logLevel: 'silent',
    absWorkingDir: dirname(module),
  });
  const meta = result.metafile;
  const base = dirname(module);
  const parts: string[] = [`version:${version}`];
  for (const rel of Object.keys(meta.inputs).sort()) {
    const abs = resolve(base, rel);
    parts.push(`src:${rel}:${sha256(await readFile(abs))}`);
  }
  const packages = new Set<string>();
  for (const input of Object.values(meta.inputs)) {
    for (const imp of input.imports) {
      if (imp.external && !imp.path.startsWith('node:')) packages.add(packageName(imp.path));
    }
  }
  for (const pkg of [...packages].sort()) parts.push(`pkg:${pkg}@${await packageVersion(pkg, base)}`);
  for (const file of [...codeFiles].sort()) {
    const abs = resolve(base, file);
    parts.push(`file:${file}:${sha256(await readFile(abs))}`);
  }
  return sha256(parts.join('\n'));
}

// Other packages count by their version; embedflow itself is followed into its source like a local
// module: its version is not bumped per edit, so `from 'embedflow'` must not hide a changed kind or helper.
// Where the importer has no embedflow of its own, it is the one running (as dsl/esmHooks.mjs loads it).
const otherPackagesExternal: Plugin = {
  name: 'other-packages-external',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, async ({ path, kind, importer, resolveDir, pluginData }) => {
      if (path !== SELF && !path.startsWith(`${SELF}/`)) return { path, external: true };
      if (pluginData === RESOLVING_SELF) return undefined;
      const installed = await b.resolve(path, { kind, importer, resolveDir, pluginData: RESOLVING_SELF });
      const found = installed.errors.length === 0 ? installed : await b.resolve(path, { kind, resolveDir: OWN_ROOT, pluginData: RESOLVING_SELF });
      return found.errors.length === 0 ? { path: found.path, namespace: found.namespace } : { errors: found.errors };
    });
  },
};
const SELF = 'embedflow';
const RESOLVING_SELF = Symbol('resolving embedflow');
const OWN_ROOT = fileURLToPath(new URL('..', import.meta.url));

function packageName(specifier: string): string {
  const segs = specifier.split('/');
  return specifier.startsWith('@') ? segs.slice(0, 2).join('/') : (segs[0] ?? specifier);
}

async function packageVersion(pkg: string, from: string): Promise<string> {
  for (let dir = from; ; dir = dirname(dir)) {
    try {
      const json = JSON.parse(await readFile(join(dir, 'node_modules', pkg, 'package.json'), 'utf8')) as { version?: string };
      return json.version ?? 'unknown';
    } catch {
      if (dirname(dir) === dir) return 'builtin-or-missing';
    }
  }
}
