import { Client, Connection } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { describe, expect, it, inject } from 'vitest';
import { loadConfig } from '../../workers/config.ts';
import { workflowBundlePath } from '../../workers/runtime.ts';
import { cli, testEnv } from '../support/cli.ts';

// Determinism: a recorded history replays with the current workflow code.

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
});
