import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { colorWanted } from '../../cli/render.ts';
import { PROJECT_ROOT, loadConfig } from '../../workers/config.ts';
import { cli, cliInProcess, testEnv, type TestEnv } from '../support/cli.ts';

// The CLI's front door as a new user meets it: help everywhere without starting anything, one-line
// usage errors, environment problems named, paired defaults, and progress in a log.

const COMMANDS = [
  'run',
  'resume',
  'status',
  'runs',
  'cancel',
  'artifacts',
  'artifacts show',
  'artifacts export',
  'schedule',
  'schedule create',
  'schedule list',
  'schedule describe',
  'schedule pause',
  'schedule unpause',
  'schedule trigger',
  'schedule delete',
  'gc',
  'store',
  'store verify',
  'worker',
  'dev',
  'dev stop',
];

const oneLine = (text: string) => text.trimEnd().split('\n');

describe('the command line', () => {
  it('has --help on every command and subcommand: exit 0, usage on stdout, nothing started', async () => {
    // A state folder that does not exist: any command that got as far as the runtime would create it.
    const home = join(await mkdtemp(join(tmpdir(), 'ef-help-')), 'home');
    for (const command of COMMANDS) {
      const res = await cliInProcess([...command.split(' '), '--help'], { EMBEDFLOW_HOME: home });
      expect(res.code, `${command} --help: ${res.stderr}`).toBe(0);
      expect(res.stdout, command).toMatch(new RegExp(`^Usage: embedflow ${command} `));
    }
    expect(existsSync(home), 'no state folder, so no dev server').toBe(false);
  });

  it('answers --help, --version and usage errors from the binary, with exit 0 or 2 and one line', async () => {
    const home = join(await mkdtemp(join(tmpdir(), 'ef-usage-')), 'home');
    const env = { EMBEDFLOW_HOME: home };
    const [help, version, unknownOption, missing, unknownCommand] = await Promise.all([
      cli(['cancel', '--help'], env),
      cli(['--version'], env),
      cli(['run', 'pipelines/quickstart.ts', '--corpse', './docs'], env),
      cli(['resume'], env),
      cli(['statsu'], env),
    ]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: embedflow cancel \[options\] <runId>/);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toBe((JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version);
    expect(unknownOption.code).toBe(2);
    expect(oneLine(unknownOption.stderr)).toEqual(["error: unknown option '--corpse' (Did you mean --corpus?)"]);
    expect(missing.code).toBe(2);
    expect(oneLine(missing.stderr)).toEqual(["error: missing required argument 'runId'"]);
    expect(unknownCommand.code).toBe(2);
    expect(oneLine(unknownCommand.stderr)).toHaveLength(1);
    expect(unknownCommand.stderr).toContain("unknown command 'statsu'");
    expect(existsSync(home)).toBe(false);
  });

  it('names an unusable EMBEDFLOW_HOME with the fix, without a stack', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'ef-homefile-')), 'home');
    await writeFile(file, 'not a folder');
    for (const home of [file, join(file, 'below')]) {
      const res = await cli(['runs'], { EMBEDFLOW_HOME: home });
      expect(res.code).toBe(1);
      expect(res.stderr).toMatch(/^HomeNotUsableError: the state folder .* (is a file, not a folder|cannot be used: a part of its path is a file)/);
      expect(res.stderr).toContain(`at: EMBEDFLOW_HOME=${home}`);
      expect(res.stderr).toContain('fix: point EMBEDFLOW_HOME at a folder');
      expect(res.stderr).not.toMatch(/^\s+at .*:\d+:\d+\)?$/m);
    }
  });

  it('an empty EMBEDFLOW_HOME or EMBEDFLOW_STORE is an unset one, not the current folder', () => {
    const cfg = loadConfig({ EMBEDFLOW_HOME: '', EMBEDFLOW_STORE: '', EMBEDFLOW_QUEUE_PREFIX: '' });
    expect(cfg.home).toBe(resolve('.embedflow'));
    expect(cfg.storeUrl).toBe(join(resolve('.embedflow'), 'store'));
    expect(cfg.queuePrefix).toBe('embedflow');
  });

  it('colours only a terminal, and never with NO_COLOR', () => {
    expect(colorWanted({ isTTY: true }, {})).toBe(true);
    expect(colorWanted({ isTTY: true }, { NO_COLOR: '1' })).toBe(false);
    expect(colorWanted({ isTTY: false }, {})).toBe(false);
  });
});

describe('runs from the command line', () => {
  const PAIRED = 'test/fixtures/pipelines/frontPaired.ts';
  let env: TestEnv;
  let corpus: string;
  let badQuestions: string;

  beforeAll(async () => {
    env = await testEnv();
    corpus = await mkdtemp(join(tmpdir(), 'ef-own-docs-'));
    await writeFile(join(corpus, 'a.md'), '# 見出し\n\nこれは利用者自身の文書です。内容があります。\n');
    badQuestions = join(await mkdtemp(join(tmpdir(), 'ef-own-questions-')), 'questions.jsonl');
    await writeFile(badQuestions, `${JSON.stringify({ id: 'q1', question: 'x?', doc: 'missing.md', start: 0, end: 1 })}\n`);
  });

  it('--corpus alone replaces the default questions too: the run completes without them, and says so once', async () => {
    const res = await cli(['run', PAIRED, '--corpus', corpus, '--json'], env);
    expect(res.code, res.stderr).toBe(0);
    expect(res.json.stages.map((s: { id: string }) => s.id)).toEqual(['documents', 'chunks', 'queries']);
    const notes = res.stderr.split('\n').filter((l) => l.startsWith('note:'));
    expect(notes).toEqual([
      'note: no human-written eval set: its default (examples/questions.jsonl) belongs with the default corpus, which this run replaces; add --eval-questions PATH to use one',
    ]);
  });

  it('a failure in the run’s own input never suggests resume: it says what to change and how to start the corrected run', async () => {
    const res = await cli(['run', PAIRED, '--corpus', corpus, '--eval-questions', badQuestions], env);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('EvalQuestionsError');
    const command = `embedflow run ${PAIRED} --corpus ${corpus} --eval-questions ${badQuestions}`;
    expect(res.stderr).toContain(`start the corrected run:\n  ${command}\n`);
    expect(res.stderr).not.toMatch(/resume/);
    const runId = /^run (\S+)/m.exec(res.stderr)?.[1];
    const status = await cli(['status', runId!], env);
    expect(status.stdout).toContain(`start the corrected run:\n  ${command} [--set ...]`);
    expect(status.stdout).not.toContain('resume with');
  });

  it('prints a progress line per running stage at a steady interval when stderr is not a terminal, with rate and ETA', async () => {
    // A stage with the LLM stages' 10-minute heartbeat timeout: its progress must still arrive as it goes.
    const res = await cli(['run', 'test/fixtures/pipelines/wordsSlowHeartbeat.ts', '--set', 'words.sleepMs=6000', '--progress-interval', '1s'], env);
    expect(res.code, res.stderr).toBe(0);
    const lines = res.stderr.split('\n').filter((l) => /^▶ words\s+running/.test(l));
    // The state change, then one a second for ~6 s.
    expect(lines.length, res.stderr).toBeGreaterThanOrEqual(4);
    const done = lines.map((l) => Number(/ (\d+)\/10 steps/.exec(l)?.[1] ?? -1)).filter((n) => n >= 0);
    expect(new Set(done.filter((n) => n < 10)).size, res.stderr).toBeGreaterThanOrEqual(2);
    expect(lines.some((l) => /\d+(\.\d)? steps\/(s|min) ETA \d/.test(l)), res.stderr).toBe(true);
    // Stages that are not running get no periodic lines: chars and summary appear only when their state changes.
    expect(res.stderr.split('\n').filter((l) => /^✔ chars/.test(l))).toHaveLength(1);
  });
});
