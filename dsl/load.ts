import { stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { EmbedflowError, PipelineLoadError } from '../core/errors.ts';
import { type Pipeline, isPipeline } from './dsl.ts';

/**
 * Import a pipeline file (TypeScript runs through tsx) and return its default export. Syntax errors,
 * failing imports and validation errors all surface here, before anything runs.
 */
export async function loadPipeline(file: string): Promise<Pipeline> {
  const abs = resolve(file);
  try {
    if (!(await stat(abs)).isFile()) throw new Error('not a file');
  } catch {
    throw new PipelineLoadError(`pipeline file not found: ${file}`, { where: abs, hint: 'pass the path of a .ts pipeline file, e.g. pipelines/quickstart.ts' });
  }
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(abs).href)) as { default?: unknown };
  } catch (err) {
    if (err instanceof EmbedflowError) throw err;
    const missing = /Cannot find package '([^']+)'/.exec((err as Error).message ?? '')?.[1];
    throw new PipelineLoadError(`cannot load the pipeline file: ${firstLines((err as Error).message ?? String(err))}`, {
      where: abs,
      hint: missing
        ? `install ${missing} where the pipeline can import it: \`npm install ${missing}\` in ${dirname(abs)} or a folder above it`
        : 'fix the error in the file (run `npx tsc --noEmit` for all type errors)',
      cause: err,
    });
  }
  if (!isPipeline(mod.default)) {
    throw new PipelineLoadError('the pipeline file has no `export default definePipeline({...})`', { where: abs });
  }
  return mod.default;
}

function firstLines(text: string): string {
  return text.split('\n').slice(0, 6).join('\n');
}
