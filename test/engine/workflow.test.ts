import { appendFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type CliResult, cli, testEnv } from '../support/cli.ts';

// The generic workflow against the real Temporal dev server, driven through the CLI as a user would.

const PIPELINE = 'test/fixtures/pipelines/words.ts';

async function logLines(env: Record<string, string>): Promise<string[]> {
  return (await readFile(env.EMBEDFLOW_TEST_LOG!, 'utf8').catch(() => '')).split('\n').filter(Boolean);
}

async function envWithLog() {
  const env = await testEnv();
  return { ...env, EMBEDFLOW_TEST_LOG: join(env.EMBEDFLOW_STORE, 'stage.log'), EMBEDFLOW_TEST_FAULTS: join(env.EMBEDFLOW_STORE, 'faults') };
}

const statusOf = (json: { stages: Array<{ id: string; status: string }> }) => Object.fromEntries(json.stages.map((s) => [s.id, s.status]));

describe('pipeline workflow', () => {
  it('caches: a rerun runs nothing; a param change reruns exactly that stage and its descendants', async () => {
    const env = await envWithLog();
    const first = await cli(['run', PIPELINE, '--json'], env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.json.status).toBe('completed');
    expect(statusOf(first.json)).toEqual({ words: 'ran', chars: 'ran', summary: 'ran' });
    expect(first.json.stages.find((s: { id: string }) => s.id === 'summary').stats).toEqual({ words: 12, chars: 83, workerPeakRssMB: expect.any(Number) });
    expect(first.stderr).toMatch(/^run words-[0-9a-f]{12}/m);

    const second = await cli(['run', PIPELINE, '--json'], env);
    expect(second.code, second.stderr).toBe(0);
    expect(statusOf(second.json)).toEqual({ words: 'cached', chars: 'cached', summary: 'cached' });

    const changed = await cli(['run', PIPELINE, '--json', '--set', 'chars.salt=v2'], env);
    expect(changed.code, changed.stderr).toBe(0);
    expect(statusOf(changed.json)).toEqual({ words: 'cached', chars: 'ran', summary: 'ran' });
    // Same artifact for the unchanged branch, a new one for the changed one.
    const art = (j: typeof first.json, id: string) => j.stages.find((s: { id: string }) => s.id === id).artifact;
    expect(art(changed.json, 'words')).toBe(art(first.json, 'words'));
    expect(art(changed.json, 'chars')).not.toBe(art(first.json, 'chars'));
    expect((await logLines(env)).filter((l) => l.endsWith('end'))).toHaveLength(5);
  });

  it('a volatile stage that hands back its earlier artifact counts as cached on a rerun', async () => {
    const env = await envWithLog();
    const first = await cli(['run', 'test/fixtures/pipelines/volatile.ts', '--json'], env);
    expect(first.code, first.stderr).toBe(0);
    expect(statusOf(first.json)).toEqual({ snapshot: 'ran', words: 'ran' });

    const second = await cli(['run', 'test/fixtures/pipelines/volatile.ts', '--json'], env);
    expect(second.code, second.stderr).toBe(0);
    expect(statusOf(second.json)).toEqual({ snapshot: 'cached', words: 'cached' });
    const snapshot = second.json.stages.find((s: { id: string }) => s.id === 'snapshot');
    expect(snapshot.stats).toMatchObject({ reused: true });
    expect(snapshot.artifact).toBe(first.json.stages.find((s: { id: string }) => s.id === 'snapshot').artifact);
    expect(second.stderr).toContain('0 stage(s) ran, 2 cached');

    const status = await cli(['status', second.json.runId], env);
    expect(status.stdout).toMatch(/snapshot\s+cached/);
  });

  it('two runs started together that share a volatile stage run it once: the other waits and reuses it', async () => {
    const env = await envWithLog();
    const [a, b] = (await Promise.all(
      [0, 1].map((i) => cli(['run', 'test/fixtures/pipelines/volatile.ts', '--json', '--set', 'snapshot.sleepMs=4000', '--set', `words.sleepMs=${i}`], env)),
    )) as [CliResult, CliResult];
    for (const r of [a, b]) expect(r.code, r.stderr).toBe(0);
    expect([statusOf(a.json).snapshot, statusOf(b.json).snapshot].sort()).toEqual(['cached', 'ran']);
  });

  it('runs independent branches in parallel', async () => {
    const env = await envWithLog();
    const res = await cli(['run', PIPELINE, '--json', '--set', 'words.sleepMs=2000', '--set', 'chars.sleepMs=2000'], env);
    expect(res.code, res.stderr).toBe(0);
    const lines = await logLines(env);
    // Both branches started before either ended.
    const firstEnd = lines.findIndex((l) => l.endsWith(' end'));
    expect(lines.slice(0, firstEnd).sort()).toEqual(['chars start', 'words start']);
  });

  it('retries a transient failure and completes', async () => {
    const env = await envWithLog();
    const res = await cli(['run', PIPELINE, '--json', '--set', 'words.failAttempts=2'], env);
    expect(res.code, res.stderr).toBe(0);
    const lines = await logLines(env);
    expect(lines.filter((l) => l === 'words start')).toHaveLength(3);
    expect(lines.filter((l) => l === 'words end')).toHaveLength(1);
  });

  it('a stage failing every attempt: `status` names the attempt it failed on and how long it was retried', async () => {
    const env = await envWithLog();
    // The kind allows 4 attempts, 200 ms apart at first, doubling: at least 0.2 + 0.4 + 0.8 s of retrying.
    const res = await cli(['run', PIPELINE, '--json', '--set', 'words.failAttempts=100'], env);
    expect(res.code).toBe(1);
    expect(res.json.error).toMatchObject({ type: 'Error', stage: 'words' });
    expect((await logLines(env)).filter((l) => l === 'words start')).toHaveLength(4);

    const status = await cli(['status', res.json.runId], env);
    expect(status.stdout).toContain('failed stage: words (test.countWords) — Error: transient failure 4 of words');
    const retried = /failed on attempt 4, retried for (\d+(?:\.\d)?)s \(first attempt started (\S+), failed (\S+)\)/.exec(status.stdout);
    expect(retried, status.stdout).not.toBeNull();
    expect(Number(retried![1])).toBeGreaterThanOrEqual(1.4);
    expect(Date.parse(retried![3]!) - Date.parse(retried![2]!)).toBeGreaterThanOrEqual(1400);
    expect(status.stdout).toContain(`embedflow resume ${res.json.runId}`);
    const view = (await cli(['status', res.json.runId, '--json'], env)).json;
    expect(view.stages.find((s: { id: string }) => s.id === 'words').error).toMatchObject({ type: 'Error', attempt: 4 });
  });

  it('surfaces a non-retryable failure with its type, without retrying, and `status` says how to resume', async () => {
    const env = await envWithLog();
    const res = await cli(['run', PIPELINE, '--json', '--set', 'words.badInput=true'], env);
    expect(res.code).toBe(1);
    expect(res.json.status).toBe('failed');
    expect(res.json.error).toMatchObject({ type: 'InvalidInputError', stage: 'words' });
    expect(statusOf(res.json).words).toBe('failed');
    expect(statusOf(res.json).summary).toBe('skipped');
    expect((await logLines(env)).filter((l) => l === 'words start')).toHaveLength(1);

    const status = await cli(['status', res.json.runId], env);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('FAILED');
    // What the person paged reads: the stage, the error's type and message (with its fix), the attempt,
    // how long it ran, its last progress (none: it failed before reporting any), and the command to resume.
    expect(status.stdout).toContain(
      'failed stage: words (test.countWords) — InvalidInputError: stage words was told its input is bad (fix: set badInput=false)',
    );
    expect(status.stdout).toMatch(/failed on attempt 1 after \d+(\.\d)?s \(first attempt started \S+, failed \S+\)/);
    expect(status.stdout).toContain('last progress: none reported');
    expect(status.stdout).toContain(`resume with: embedflow resume ${res.json.runId}`);
    const view = (await cli(['status', res.json.runId, '--json'], env)).json;
    expect(view.stages.find((s: { id: string }) => s.id === 'words').error).toMatchObject({ type: 'InvalidInputError', attempt: 1 });
  });

  it('resume after a failure reruns only the failed stage onward', async () => {
    const env = await envWithLog();
    await writeFile(env.EMBEDFLOW_TEST_FAULTS, 'summary\n');
    const failed = await cli(['run', PIPELINE, '--json'], env);
    expect(failed.code).toBe(1);
    expect(statusOf(failed.json)).toEqual({ words: 'ran', chars: 'ran', summary: 'failed' });

    await writeFile(env.EMBEDFLOW_TEST_FAULTS, '');
    const resumed = await cli(['resume', failed.json.runId, '--json'], env);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.json.runId).toBe(failed.json.runId);
    expect(statusOf(resumed.json)).toEqual({ words: 'cached', chars: 'cached', summary: 'ran' });
    const lines = await logLines(env);
    expect(lines.filter((l) => l === 'words end')).toHaveLength(1);
    expect(lines.filter((l) => l === 'summary end')).toHaveLength(1);
    await appendFile(env.EMBEDFLOW_TEST_LOG, '');
  });

  it('starting the same run twice at once runs it once', async () => {
    const env = await envWithLog();
    const [a, b] = await Promise.all([
      cli(['run', PIPELINE, '--json', '--set', 'words.sleepMs=1500'], env),
      cli(['run', PIPELINE, '--json', '--set', 'words.sleepMs=1500'], env),
    ]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(a.json.runId).toBe(b.json.runId);
    expect((await logLines(env)).filter((l) => l === 'words end')).toHaveLength(1);
  });
});
