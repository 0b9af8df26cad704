import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { describe, expect, it, inject } from 'vitest';
import { PROJECT_ROOT, loadConfig } from '../../workers/config.ts';
import { workflowBundlePath } from '../../workers/runtime.ts';
import { cli, testEnv } from '../support/cli.ts';

// Determinism: a recorded history replays with the current workflow code.

// Histories recorded once, by the workflow code of commit 1995546, from real runs of the words fixture
// (fetchHistory, saved with History.toObject) and kept: a later workflow change that would break runs
// already in flight fails to replay them, which histories recorded moments earlier by the same code
// cannot show. A mixed run (words cached, chars ran after a retry, summary ran) and a failed one
// (summary.badInput=true). Re-record only with a deliberate, patched workflow change.
// Not the `temporal workflow show` JSON: the SDK's historyFromJSON fails here ("type must be a Type")
// because npm gave @temporalio/common and @temporalio/proto separate copies of protobufjs.
const RECORDED = join(PROJECT_ROOT, 'test', 'fixtures', 'histories');
const { History } = proto.temporal.api.history.v1;

describe('workflow determinism', () => {
  it('replays recorded histories of a completed and a failed run', async () => {
    const env = await testEnv();
    const ok = await cli(['run', 'test/fixtures/pipelines/words.ts', '--json', '--set', 'chars.failAttempts=1'], env);
    expect(ok.code, ok.stderr).toBe(0);
    const bad = await cli(['run', 'test/fixtures/pipelines/words.ts', '--json', '--set', 'summary.badInput=true'], env);
    expect(bad.code).toBe(1);

    const connection = await Connection.connect({ address: inject('temporalAddress') });
    try {
      const client = new Client({ connection });
      const codePath = await workflowBundlePath(loadConfig(env));
      for (const runId of [ok.json.runId, bad.json.runId]) {
        const history = await client.workflow.getHandle(runId).fetchHistory();
        expect(history.events?.length).toBeGreaterThan(10);
        await expect(Worker.runReplayHistory({ workflowBundle: { codePath } }, history, runId)).resolves.toBeUndefined();
      }
    } finally {
      await connection.close();
    }
  });

  it('replays histories recorded by earlier workflow code', async () => {
    const codePath = await workflowBundlePath(loadConfig(await testEnv()));
    for (const name of ['words-completed', 'words-failed']) {
      const history = History.fromObject(JSON.parse(await readFile(join(RECORDED, `${name}.json`), 'utf8')) as Record<string, unknown>);
      expect(history.events.length).toBeGreaterThan(15);
      await expect(Worker.runReplayHistory({ workflowBundle: { codePath } }, history, name)).resolves.toBeUndefined();
    }
  });
});
