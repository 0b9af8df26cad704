import { mkdir, mkdtemp, readFile, rm, stat, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CorruptInputError } from '../../core/errors.ts';
import { LocalStore } from '../../artifacts/store.ts';
import type { RunView } from '../../cli/runs.ts';
import { PROJECT_ROOT } from '../../workers/config.ts';
import { combine } from '../fixtures/pipelines/words.ts';
import { type TestEnv, cli, testEnv } from '../support/cli.ts';
import { runStage } from '../support/runStage.ts';

// The stage cache through real runs of the CLI: what invalidates a cached stage (a code edit nobody
// versioned) and what a damaged cached artifact leads to (a rebuild, never its use).

const WORDS = 'test/fixtures/pipelines/words.ts';

type Summary = { stages: Array<{ id: string; status: string; artifact: string; stats: Record<string, unknown> }> };
const statusOf = (json: Summary) => Object.fromEntries(json.stages.map((s) => [s.id, s.status]));
const stageOf = (json: Summary, id: string) => json.stages.find((s) => s.id === id)!;
const artifactFile = (env: TestEnv, digest: string, rel: string) => join(env.EMBEDFLOW_STORE, 'artifacts', digest, 'data', rel);

async function envWithLog() {
  const env = await testEnv();
  return { ...env, EMBEDFLOW_TEST_LOG: join(env.EMBEDFLOW_STORE, 'stage.log') };
}

async function logLines(env: Record<string, string>): Promise<string[]> {
  return (await readFile(env.EMBEDFLOW_TEST_LOG!, 'utf8').catch(() => '')).split('\n').filter(Boolean);
}

const scratch: string[] = [];
afterEach(async () => {
  for (const dir of scratch.splice(0)) await rm(dir, { recursive: true, force: true });
});

// A data engineer's own stage kind in its own module: the chars branch of the words fixture, counting
// characters the way `countExpr` says. Built-in kinds are one per module too; the fingerprint covers
// the defining module and what it imports.
const charsModule = (countExpr: string) => `import { readFile, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { listFiles } from '${PROJECT_ROOT}/artifacts/fsutil.ts';
import { defineStage } from '${PROJECT_ROOT}/dsl/stage.ts';

export const countChars = defineStage({
  kind: 'scratch.countChars',
  params: z.object({}),
  inputs: { corpus: 'files' },
  output: 'counts',
  async run(ctx) {
    let chars = 0;
    for (const f of await listFiles(ctx.inputs.corpus.dir)) {
      const text = await readFile(\`\${ctx.inputs.corpus.dir}/\${f}\`, 'utf8');
      chars += ${countExpr};
    }
    await writeFile(await ctx.out.file('count.json'), JSON.stringify({ chars }));
    return { stats: { chars } };
  },
});
`;

const pipelineFile = `import { definePipeline, stage } from '${PROJECT_ROOT}/dsl/dsl.ts';
import { combine, countWords } from '${PROJECT_ROOT}/${WORDS}';
import { countChars } from './chars.ts';

export default definePipeline({
  name: 'codechange',
  inputs: { corpus: { type: 'directory', default: '${PROJECT_ROOT}/test/fixtures/smallcorpus' } },
  stages: [
    stage({ id: 'words', kind: countWords, inputs: { corpus: 'corpus' } }),
    stage({ id: 'chars', kind: countChars, inputs: { corpus: 'corpus' } }),
    stage({ id: 'summary', kind: combine, inputs: { words: 'words', chars: 'chars' } }),
  ],
});
`;

describe('stage cache through runs', () => {
  it("editing a stage kind's code reruns exactly that stage and its descendants, with no version bumped", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ef-codechange-'));
    scratch.push(dir);
    // A data engineer's own folder: no package.json (so nothing says "type": "module"), its packages
    // resolving from its own node_modules.
    await symlink(join(PROJECT_ROOT, 'node_modules'), join(dir, 'node_modules'));
    await writeFile(join(dir, 'chars.ts'), charsModule('text.length'));
    const pipeline = join(dir, 'pipeline.ts');
    await writeFile(pipeline, pipelineFile);
    const env = await testEnv();

    const first = await cli(['run', pipeline, '--json'], env);
    expect(first.code, first.stderr).toBe(0);
    expect(statusOf(first.json)).toEqual({ words: 'ran', chars: 'ran', summary: 'ran' });
    expect(stageOf(first.json, 'summary').stats).toEqual({ words: 12, chars: 83, workerPeakRssMB: expect.any(Number) });

    const again = await cli(['run', pipeline, '--json'], env);
    expect(again.code, again.stderr).toBe(0);
    expect(statusOf(again.json)).toEqual({ words: 'cached', chars: 'cached', summary: 'cached' });

    // Same params, same inputs, same kind name, no `version`: only the code differs.
    await writeFile(join(dir, 'chars.ts'), charsModule("text.replace(/\\s/g, '').length"));
    const edited = await cli(['run', pipeline, '--json'], env);
    expect(edited.code, edited.stderr).toBe(0);
    expect(statusOf(edited.json)).toEqual({ words: 'cached', chars: 'ran', summary: 'ran' });
    // The new code's result, not the old cached one, reaches the end of the pipeline.
    const chars = stageOf(edited.json, 'summary').stats.chars as number;
    expect(chars).toBeLessThan(83);
    expect(stageOf(edited.json, 'chars').stats).toEqual({ chars, workerPeakRssMB: expect.any(Number) });
    expect(stageOf(edited.json, 'words').artifact).toBe(stageOf(first.json, 'words').artifact);
  });

  it('a pipeline file in a folder with no package.json, importing embedflow by package name, runs to completion', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ef-nopkg-'));
    scratch.push(dir);
    // Where a user keeps pipelines: their own repo, embedflow installed (here linked) under node_modules.
    await mkdir(join(dir, 'node_modules'));
    await symlink(PROJECT_ROOT, join(dir, 'node_modules', 'embedflow'));
    const pipeline = join(dir, 'my-pipeline.ts');
    await writeFile(
      pipeline,
      `import { definePipeline, stage } from 'embedflow/dsl/dsl.ts';
import { combine, countChars, countWords } from 'embedflow/${WORDS}';

export default definePipeline({
  name: 'nopkg',
  inputs: { corpus: { type: 'directory', default: '${PROJECT_ROOT}/test/fixtures/smallcorpus' } },
  stages: [
    stage({ id: 'words', kind: countWords, inputs: { corpus: 'corpus' } }),
    stage({ id: 'chars', kind: countChars, inputs: { corpus: 'corpus' } }),
    stage({ id: 'summary', kind: combine, inputs: { words: 'words', chars: 'chars' } }),
  ],
});
`,
    );
    const run = await cli(['run', pipeline, '--json'], await testEnv());
    expect(run.code, run.stderr).toBe(0);
    expect(statusOf(run.json)).toEqual({ words: 'ran', chars: 'ran', summary: 'ran' });
    expect(stageOf(run.json, 'summary').stats).toEqual({ words: 12, chars: 83, workerPeakRssMB: expect.any(Number) });
  });

  it('a cached artifact whose file was truncated or rewritten is rebuilt on the next run, not served', async () => {
    const env = await envWithLog();
    const first = await cli(['run', WORDS, '--json'], env);
    expect(first.code, first.stderr).toBe(0);
    const words = stageOf(first.json, 'words').artifact;
    const file = artifactFile(env, words, 'count.json');
    const intact = await readFile(file, 'utf8');

    // A hit checks every file's size: a truncated output is caught without reading it.
    await truncate(file, 5);
    const afterTruncation = await cli(['run', WORDS, '--json'], env);
    expect(afterTruncation.code, afterTruncation.stderr).toBe(0);
    // Rebuilt to the same content, hence the same digest: the summary built on it stays valid.
    expect(statusOf(afterTruncation.json)).toEqual({ words: 'ran', chars: 'cached', summary: 'cached' });
    expect(stageOf(afterTruncation.json, 'words').artifact).toBe(words);
    expect(await readFile(file, 'utf8')).toBe(intact);

    // Same size, but written after publishing (as any edit leaves it): the hit hashes the files.
    await writeFile(file, intact.replace('12', '99'));
    const afterRewrite = await cli(['run', WORDS, '--json'], env);
    expect(afterRewrite.code, afterRewrite.stderr).toBe(0);
    expect(statusOf(afterRewrite.json)).toEqual({ words: 'ran', chars: 'cached', summary: 'cached' });
    expect(await readFile(file, 'utf8')).toBe(intact);
    expect(JSON.parse(await readFile(artifactFile(env, stageOf(afterRewrite.json, 'summary').artifact, 'summary.json'), 'utf8'))).toEqual({
      words: 12,
      salt: '',
      chars: 83,
    });
    expect((await logLines(env)).filter((l) => l === 'words end')).toHaveLength(3);
  });

  it('a corrupt input is never read by the stage that needs it; resuming rebuilds it', async () => {
    const env = await envWithLog();
    const first = await cli(['run', WORDS, '--json'], env);
    expect(first.code, first.stderr).toBe(0);
    const file = artifactFile(env, stageOf(first.json, 'words').artifact, 'count.json');
    const intact = await readFile(file, 'utf8');
    // Same size and the original mtime: only hashing the file can tell.
    const { atime, mtime } = await stat(file);
    await writeFile(file, intact.replace('12', '99'));
    await utimes(file, atime, mtime);

    const failed = await cli(['run', WORDS, '--json', '--set', 'summary.salt=x'], env);
    expect(failed.code).toBe(1);
    expect(statusOf(failed.json)).toEqual({ words: 'cached', chars: 'cached', summary: 'failed' });
    // What on-call reads: the corruption, where the input came from, and the command that rebuilds it.
    const { runId } = failed.json;
    const words = stageOf(first.json, 'words').artifact;
    expect(failed.json.error).toMatchObject({ stage: 'summary', type: 'CorruptInputError' });
    for (const part of [`input artifact ${words}`, 'of stage "summary"', 'produced by stage "words"', 'corrupt', 'quarantined', `embedflow resume ${runId}`]) {
      expect(failed.json.error.message).toContain(part);
    }
    // Not retried: no attempt of this run can rebuild its input, and a retry would only find it gone.
    const view = (await cli(['status', runId, '--json'], env)).json as RunView;
    const summary = view.stages.find((s) => s.id === 'summary');
    expect(summary?.error).toMatchObject({ type: 'CorruptInputError', attempt: 1, message: failed.json.error.message });
    // An attempt that finds the input already quarantined (a lost attempt's retry, or a parallel stage
    // needing it too) says the same, not a bare "not in the store".
    const gone = runStage(combine, { store: new LocalStore(env.EMBEDFLOW_STORE), inputs: { words, chars: stageOf(first.json, 'chars').artifact } });
    await expect(gone).rejects.toThrow(CorruptInputError);
    await expect(gone).rejects.toThrow(`the input artifact ${words} ("words") of stage "test.combine" (produced by stage "words") was corrupt and has been quarantined`);
    // Its inputs are hashed before the stage's code runs: it started only in the first run.
    expect((await logLines(env)).filter((l) => l === 'summary start')).toHaveLength(1);

    const resumed = await cli(['resume', failed.json.runId, '--json'], env);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(statusOf(resumed.json)).toEqual({ words: 'ran', chars: 'cached', summary: 'ran' });
    expect(stageOf(resumed.json, 'summary').stats).toEqual({ words: 12, chars: 83, workerPeakRssMB: expect.any(Number) });
    expect(await readFile(file, 'utf8')).toBe(intact);
  });
});
