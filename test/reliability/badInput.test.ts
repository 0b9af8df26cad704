import { mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { Client, Connection } from '@temporalio/client';
import { listFiles } from '../../artifacts/fsutil.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { LocalStore } from '../../artifacts/store.ts';
import { cliInProcess as cli, testEnv, type TestEnv } from '../support/cli.ts';
import { LlmServer } from '../support/llmServer.ts';
import { llmEnv } from '../llm/fixtures.ts';

// Bad input, through the CLI as a user meets it: every case exits non-zero with a message naming the
// culprit, publishes nothing half-written, and leaves the store consistent. One store for all cases,
// so damage from one would show in the next check.

const RECIPE = 'pipelines/domain-embedding.ts';
const FRONT = 'test/fixtures/pipelines/front.ts';
const KEY = 'sk-test-canary-0123456789';

let env: TestEnv;
let dirs: Record<string, string>;
let server: LlmServer;

async function dir(name: string, files: Record<string, string | Buffer> = {}): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `ef-bad-${name}-`));
  for (const [p, content] of Object.entries(files)) await writeFile(join(d, p), content);
  return d;
}

beforeAll(async () => {
  env = await testEnv();
  const good = await dir('good', { 'a.md': '# 見出し\n\nこれは正しい文書です。内容があります。\n' });
  const loop = await dir('loop', { 'a.md': '# a\n\ntext.\n' });
  await symlink(loop, join(loop, 'again'));
  const escape = await dir('escape', { 'a.md': '# a\n\ntext.\n' });
  await symlink('/etc/hostname', join(escape, 'outside.txt'));
  const onlyBad = await dir('onlybad', {
    'image.bin.txt': Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256)),
    'broken.pdf': '%PDF-1.4\n1 0 obj\n<< /Type /Catalog',
  });
  const empty0 = await dir('zero', { 'empty.md': '' });
  const latin1 = await dir('latin1', { 'notes.txt': Buffer.from('Le café est très bon. Résumé des événements à Noël.\n'.repeat(5), 'latin1') });
  // 200 MB of text without a newline: a data dump, not a document.
  const huge = await dir('huge', { 'dump.txt': Buffer.alloc(200 * 2 ** 20 - ((200 * 2 ** 20) % 9), 'データ') });
  const noTokenizer = await dir('notok', { 'config.json': '{"model_type":"bert"}' });
  const questions = await dir('questions');
  await writeFile(join(questions, 'outside.jsonl'), `${JSON.stringify({ id: 'q1', question: 'どこ?', doc: 'a.md', start: 5, end: 99999 })}\n`);
  await writeFile(join(questions, 'garbled.jsonl'), '{"id": "q1", "question": \n');
  await writeFile(join(questions, 'nodoc.jsonl'), `${JSON.stringify({ id: 'q1', question: 'x?', doc: 'missing.md', start: 0, end: 1 })}\n`);
  const emptyDir = await dir('emptydir');
  const syntax = join(await dir('syntax'), 'broken.ts');
  await writeFile(syntax, "import { definePipeline } from '../nowhere.ts';\nexport default definePipeline({ name: 'x', stages: [\n");
  dirs = { good, loop, escape, onlyBad, empty0, latin1, huge, noTokenizer, questions, emptyDir, syntax };
  server = await LlmServer.start({ env: llmEnv, servedModel: 'served-model', apiKey: KEY, threads: 1, parallel: 1, templates: 1 });
});

afterAll(async () => {
  await server?.close();
  if (dirs?.huge) await rm(dirs.huge, { recursive: true, force: true });
});

interface Case {
  name: string;
  args: () => string[];
  vars?: () => Record<string, string>;
  /** Fragments the user must see (stderr or the --json error). */
  says: RegExp[];
}

const openai = (baseUrl: string, model: string, timeoutMs = 5000) =>
  `queries.llm=${JSON.stringify({ provider: 'openai', baseUrl, model, maxRetries: 1, backoffInitialMs: 50, backoffMaxMs: 100, timeoutMs })}`;

const cases: Case[] = [
  // The corpus.
  { name: 'corpus folder does not exist', args: () => ['run', FRONT, '--corpus', '/nonexistent/corpus'], says: [/CorpusPathError/, /\/nonexistent\/corpus does not exist/] },
  { name: 'empty corpus folder', args: () => ['run', FRONT, '--corpus', dirs.emptyDir!], says: [/CorpusEmptyError/, /holds no files/] },
  { name: 'only unreadable files (binary, corrupt PDF)', args: () => ['run', FRONT, '--corpus', dirs.onlyBad!], says: [/CorpusEmptyError/] },
  { name: 'a 0-byte document only', args: () => ['run', FRONT, '--corpus', dirs.empty0!], says: [/CorpusEmptyError/] },
  { name: 'a document in an encoding ingest cannot read (Latin-1) only', args: () => ['run', FRONT, '--corpus', dirs.latin1!], says: [/CorpusEmptyError/, /notes\.txt: not text in a supported encoding/] },
  { name: 'a 200 MB single-line document only', args: () => ['run', FRONT, '--corpus', dirs.huge!], says: [/CorpusEmptyError/, /dump\.txt: too large: 200\.0 MB/, /maxDocumentMB/] },
  { name: 'symlink loop in the corpus', args: () => ['run', FRONT, '--corpus', dirs.loop!], says: [/CorpusPathError/, /loop/] },
  { name: 'symlink out of the corpus', args: () => ['run', FRONT, '--corpus', dirs.escape!], says: [/CorpusPathError/, /outside\.txt/, /leaves the corpus/] },
  { name: 'corpus is a file, not a folder', args: () => ['run', FRONT, '--corpus', join(dirs.good!, 'a.md')], says: [/CorpusPathError/, /not a directory/] },
  // The pipeline file and its wiring.
  { name: 'pipeline file with a syntax error', args: () => ['run', dirs.syntax!], says: [/PipelineLoadError/, /broken\.ts/] },
  { name: 'pipeline file that does not exist', args: () => ['run', 'pipelines/nope.ts'], says: [/PipelineLoadError/, /not found/] },
  { name: 'a cycle', args: () => ['run', 'test/fixtures/pipelines/invalid/cycle.ts'], says: [/PipelineValidationError/, /cycle/] },
  { name: 'an unknown stage in the wiring', args: () => ['run', 'test/fixtures/pipelines/invalid/unknownStage.ts'], says: [/PipelineValidationError/, /unknown stage "chunkz"/] },
  { name: 'mismatched stage wiring', args: () => ['run', 'test/fixtures/pipelines/invalid/wrongKind.ts'], says: [/PipelineValidationError/, /needs a "documents" artifact/] },
  { name: 'an unknown stage in --set', args: () => ['run', RECIPE, '--set', 'chunkz.maxTokens=5'], says: [/StageParamsError/, /no stage "chunkz"/] },
  { name: 'a misspelt parameter', args: () => ['run', RECIPE, '--set', 'chunks.maxToken=5'], says: [/StageParamsError/, /maxToken/] },
  { name: 'an unknown pipeline input', args: () => ['run', RECIPE, '--input', 'corpse=/tmp'], says: [/PipelineValidationError/, /no input "corpse"/] },
  // Out-of-range parameters.
  { name: 'negative batch size', args: () => ['run', RECIPE, '--set', 'model.batchSize=-8'], says: [/StageParamsError/, /stage "model"/, /params\.batchSize/] },
  { name: 'top-k 0 negatives', args: () => ['run', RECIPE, '--set', 'negatives.numNegatives=0'], says: [/StageParamsError/, /params\.numNegatives/] },
  { name: 'overlap ≥ chunk size', args: () => ['run', RECIPE, '--set', 'chunks.overlap=256'], says: [/StageParamsError/, /params\.overlap/] },
  { name: 'a learning rate that is not a number', args: () => ['run', RECIPE, '--set', 'model.learningRate=fast'], says: [/StageParamsError/, /params\.learningRate/] },
  // Models.
  { name: 'unknown model path', args: () => ['run', FRONT, '--corpus', dirs.good!, '--set', 'chunks.model=/nonexistent/model'], says: [/ModelNotFoundError/, /\/nonexistent\/model/] },
  { name: 'a model directory without a tokenizer', args: () => ['run', FRONT, '--corpus', dirs.good!, '--set', `chunks.model=${dirs.noTokenizer}`], says: [/tokenizer/i] },
  // Human-written questions.
  {
    name: 'eval questions with a span outside the document',
    args: () => ['run', FRONT, '--corpus', dirs.good!, '--eval-questions', join(dirs.questions!, 'outside.jsonl')],
    says: [/EvalQuestionsError/, /outside\.jsonl:1/],
  },
  { name: 'eval questions that are not JSON', args: () => ['run', FRONT, '--corpus', dirs.good!, '--eval-questions', join(dirs.questions!, 'garbled.jsonl')], says: [/EvalQuestionsError/, /garbled\.jsonl:1/] },
  { name: 'eval questions naming a missing document', args: () => ['run', FRONT, '--corpus', dirs.good!, '--eval-questions', join(dirs.questions!, 'nodoc.jsonl')], says: [/EvalQuestionsError/, /missing\.md/] },
  { name: 'eval questions file does not exist', args: () => ['run', FRONT, '--corpus', dirs.good!, '--eval-questions', '/nonexistent/q.jsonl'], says: [/CorpusPathError/, /q\.jsonl/] },
  // The LLM server.
  {
    name: 'wrong LLM URL',
    args: () => ['run', FRONT, '--corpus', dirs.good!, '--set', openai('http://127.0.0.1:9/v1', 'served-model')],
    vars: () => ({ EMBEDFLOW_LLM_API_KEY: KEY }),
    says: [/Llm\w*Error/, /127\.0\.0\.1:9/],
  },
  {
    name: 'wrong API key',
    args: () => ['run', FRONT, '--corpus', dirs.good!, '--set', openai(server.url, 'served-model')],
    vars: () => ({ EMBEDFLOW_LLM_API_KEY: 'sk-wrong' }),
    says: [/LlmUnauthorizedError/, /EMBEDFLOW_LLM_API_KEY/],
  },
  {
    name: 'a model name the server does not have',
    args: () => ['run', FRONT, '--corpus', dirs.good!, '--set', openai(server.url, 'no-such-model')],
    vars: () => ({ EMBEDFLOW_LLM_API_KEY: KEY }),
    says: [/LlmModelNotFoundError/, /no-such-model/],
  },
];

describe('bad input is refused cleanly', () => {
  it.each(cases)('$name', async (c) => {
    const res = await cli([...c.args(), '--json'], { ...env, ...(c.vars?.() ?? {}) });
    expect(res.code, `${c.name}: should fail`).not.toBe(0);
    const shown = `${res.stderr}\n${res.json ? JSON.stringify(res.json.error ?? {}) : ''}`;
    for (const re of c.says) expect(shown, `${c.name}: message`).toMatch(re);
    if (res.json) expect(res.json.status).toBe('failed');
    // Nothing half-published; everything published intact.
    const store = new LocalStore(env.EMBEDFLOW_STORE);
    expect(await readdir(join(env.EMBEDFLOW_STORE, 'tmp')).catch(() => [])).toEqual([]);
    for (const d of await store.listArtifacts()) expect((await store.verify(d)).ok, `artifact ${d}`).toBe(true);
    // No secret in anything the user sees.
    expect(shown).not.toContain(KEY);
  });

  it('a canary API key appears nowhere: workflow history, store files, CLI output', async () => {
    const res = await cli(['run', FRONT, '--corpus', dirs.good!, '--json', '--set', openai(server.url, 'served-model', 300_000)], {
      ...env,
      EMBEDFLOW_LLM_API_KEY: KEY,
    });
    expect(res.code, res.stderr).toBe(0);
    expect(server.calls.length).toBeGreaterThan(0);
    expect(server.calls.every((c) => c.authorization === `Bearer ${KEY}`)).toBe(true);
    expect(`${res.stdout}${res.stderr}`).not.toContain(KEY);
    const connection = await Connection.connect({ address: inject('temporalAddress') });
    try {
      const history = await new Client({ connection }).workflow.getHandle(res.json.runId).fetchHistory();
      const text = JSON.stringify(history, (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('latin1') : v));
      expect(text.length).toBeGreaterThan(1000);
      expect(text).not.toContain(KEY);
    } finally {
      await connection.close();
    }
    const files = await listFiles(env.EMBEDFLOW_STORE);
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) expect((await readFile(join(env.EMBEDFLOW_STORE, f))).includes(KEY), f).toBe(false);
  });

  it('covers at least 25 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(25);
  });
});
