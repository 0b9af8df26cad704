import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { kindsMarkdown } from '../../cli/commands/kinds.ts';
import * as builtinKinds from '../../kinds.ts';
import { clearFingerprintCache, codeFingerprint } from '../../dsl/fingerprint.ts';
import { registeredStageKinds } from '../../dsl/stage.ts';
import { PROJECT_ROOT } from '../../workers/config.ts';
import { cli, testEnv } from '../support/cli.ts';

// What a data engineer outside this repo sees: `from 'embedflow'`, `from 'embedflow/kinds'`, and
// `embedflow kinds` describing the built-in kinds from their schemas.

const scratch: string[] = [];
afterEach(async () => {
  for (const dir of scratch.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function scratchDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  scratch.push(dir);
  return dir;
}

type Summary = { stages: Array<{ id: string; status: string; stats: Record<string, unknown> }> };

describe('the public entry points', () => {
  it("a pipeline outside the repo (no package.json) imports 'embedflow' and 'embedflow/kinds' and runs", async () => {
    const dir = await scratchDir('ef-public-');
    await mkdir(join(dir, 'node_modules'));
    await symlink(PROJECT_ROOT, join(dir, 'node_modules', 'embedflow'));
    // Their own kind's schema library, installed beside embedflow.
    await symlink(join(PROJECT_ROOT, 'node_modules', 'zod'), join(dir, 'node_modules', 'zod'));
    // The user's own kind in its own module, defined with the public API.
    await writeFile(
      join(dir, 'docCount.ts'),
      `import { defineStage, InvalidInputError } from 'embedflow';
import { z } from 'zod';

export const docCount = defineStage({
  kind: 'scratch.docCount',
  params: z.object({}),
  inputs: { documents: 'documents' },
  output: 'docCount',
  async run(ctx) {
    const rows = ctx.inputs.documents.manifest.rows['documents.parquet'];
    if (rows === undefined) throw new InvalidInputError('no documents table');
    return { stats: { documents: rows } };
  },
});
`,
    );
    const pipeline = join(dir, 'pipeline.ts');
    await writeFile(
      pipeline,
      `import { definePipeline, stage } from 'embedflow';
import { ingest } from 'embedflow/kinds';
import { docCount } from './docCount.ts';

export default definePipeline({
  name: 'public-entry',
  inputs: { corpus: { type: 'directory', default: '${PROJECT_ROOT}/test/fixtures/smallcorpus' } },
  stages: [
    stage({ id: 'documents', kind: ingest, inputs: { corpus: 'corpus' } }),
    stage({ id: 'count', kind: docCount, inputs: { documents: 'documents' } }),
  ],
});
`,
    );
    const run = await cli(['run', pipeline, '--json'], await testEnv());
    expect(run.code, run.stderr).toBe(0);
    const json = run.json as Summary;
    expect(json.stages.map((s) => [s.id, s.status])).toEqual([['documents', 'ran'], ['count', 'ran']]);
    expect(json.stages.find((s) => s.id === 'count')!.stats).toEqual({ documents: 2, workerPeakRssMB: expect.any(Number) });
  });

  it("a pipeline in a folder without embedflow installed imports the embedflow that runs it", async () => {
    const dir = await scratchDir('ef-bare-');
    // A helper of the user's that imports embedflow itself: the fingerprint must follow it there too.
    await writeFile(join(dir, 'names.ts'), "import { FILES_KIND } from 'embedflow';\nexport const corpusKind = FILES_KIND;\n");
    const pipeline = join(dir, 'pipeline.ts');
    await writeFile(
      pipeline,
      `import { definePipeline, stage } from 'embedflow';
import { ingest } from 'embedflow/kinds';
import { corpusKind } from './names.ts';

export default definePipeline({
  name: 'bare-folder',
  description: corpusKind,
  inputs: { corpus: { type: 'directory', default: '${PROJECT_ROOT}/test/fixtures/smallcorpus' } },
  stages: [stage({ id: 'documents', kind: ingest, inputs: { corpus: 'corpus' } })],
});
`,
    );
    const run = await cli(['run', pipeline, '--json'], await testEnv());
    expect(run.code, run.stderr).toBe(0);
    expect((run.json as Summary).stages.map((s) => [s.id, s.status])).toEqual([['documents', 'ran']]);

    clearFingerprintCache();
    const fingerprinted = await codeFingerprint({ module: join(dir, 'names.ts') });
    expect(fingerprinted).toMatch(/^[0-9a-f]{64}$/);

    // Any other package still has to be installed, and the error says where.
    await writeFile(join(dir, 'other.ts'), "import { thing } from 'not-installed-anywhere';\nexport default thing;\n");
    const missing = await cli(['run', join(dir, 'other.ts')], await testEnv());
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain(`npm install not-installed-anywhere\` in ${dir}`);
  });

  it("'embedflow/lexical' fuses a model's scores with BM25 as the README shows", async () => {
    const { Bm25Index, fuseStandardized } = await import('embedflow/lexical');
    const chunks = ['奈良の大仏は高さ約15メートル。', '東京は日本の首都。', '京都には金閣寺がある。'];
    const question = '大仏の高さは?';
    const cosines = Float32Array.from([0.80, 0.82, 0.79]); // a model that ranks the wrong chunk first
    // The README's snippet:
    const bm25 = new Bm25Index(chunks);
    const scores = fuseStandardized(cosines, bm25.scores(question));
    const best = [...scores.keys()].sort((a, b) => scores[b]! - scores[a]!).slice(0, 10);
    expect(best[0]).toBe(0);
  });

  it("the code fingerprint follows imports through 'embedflow' into its source", async () => {
    // A stand-in package named embedflow, so the test can edit its source without touching the repo.
    const pkg = await scratchDir('ef-pkg-');
    await writeFile(join(pkg, 'package.json'), JSON.stringify({ name: 'embedflow', version: '0.1.0', type: 'module', exports: { '.': './index.ts', './*': './*' } }));
    await writeFile(join(pkg, 'index.ts'), "export { helper } from './helper.ts';\n");
    await writeFile(join(pkg, 'helper.ts'), 'export const helper = (s: string) => s.length;\n');
    const user = await scratchDir('ef-user-');
    await mkdir(join(user, 'node_modules'));
    await symlink(pkg, join(user, 'node_modules', 'embedflow'));
    const kindModule = join(user, 'kind.ts');
    await writeFile(kindModule, "import { helper } from 'embedflow';\nexport const n = helper('x');\n");

    clearFingerprintCache();
    const before = await codeFingerprint({ module: kindModule });
    // Same package version: only the helper two imports away changed.
    await writeFile(join(pkg, 'helper.ts'), 'export const helper = (s: string) => s.length + 1;\n');
    clearFingerprintCache();
    expect(await codeFingerprint({ module: kindModule })).not.toBe(before);
  });

  it("'embedflow/kinds' exports every built-in kind, and `embedflow kinds` lists each parameter from its schema", async () => {
    await import('../../activities/builtin.ts');
    expect(Object.keys(builtinKinds).sort()).toEqual(registeredStageKinds().map((k) => k.kind).sort());

    const all = await cli(['kinds', '--json'], await testEnv());
    expect(all.code, all.stderr).toBe(0);
    const chunk = (all.json as Array<{ kind: string; inputs: unknown; output: string; params: Array<Record<string, unknown>> }>).find((k) => k.kind === 'chunk')!;
    expect(chunk.inputs).toEqual([{ name: 'documents', artifact: 'documents', optional: false }]);
    expect(chunk.output).toBe('chunks');
    expect(chunk.params.find((p) => p.name === 'maxTokens')).toMatchObject({ type: expect.stringMatching(/^integer/), default: 256, description: expect.any(String) });

    const one = await cli(['kinds', 'ingest'], await testEnv());
    expect(one.code, one.stderr).toBe(0);
    expect(one.stdout).toMatch(/^ingest \(corpus: files\) → documents/);
    expect(one.stdout).toMatch(/normalize: "NFKC" \| "NFC" \| "none" = "NFKC"/);

    const unknown = await cli(['kinds', 'chunkz'], await testEnv());
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/no built-in stage kind "chunkz"[\s\S]*one of: .*chunk/);
  });

  it('docs/KINDS.md is the reference the schemas generate (run scripts/kinds-reference.ts after changing a parameter)', async () => {
    expect(await readFile(join(PROJECT_ROOT, 'docs', 'KINDS.md'), 'utf8')).toBe(kindsMarkdown());
  });
});
