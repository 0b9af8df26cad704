import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../core/errors.ts';
import { RunStillOpenError, followPatienceMs } from '../../cli/patience.ts';
import { followRun } from '../../cli/runs.ts';
import { loadConfig } from '../../workers/config.ts';
import { type Runtime, openStore } from '../../workers/runtime.ts';

// A follower told how long to wait (EMBEDFLOW_FOLLOW_PATIENCE) for a Temporal that does not answer
// stops following when that runs out, saying the run goes on and how to get back to it.

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

describe('following a run when Temporal does not answer', () => {
  it('gives up after its patience: the run goes on, with the status and resume commands; said once, not per try', async () => {
    const home = await mkdtemp(join(tmpdir(), 'ef-patience-'));
    // No retries inside the client: the follower's own patience is what is measured.
    const connection = Connection.lazy({ address: `127.0.0.1:${await closedPort()}`, interceptors: [] });
    const rt: Runtime = {
      cfg: loadConfig({ EMBEDFLOW_HOME: home }),
      store: openStore(join(home, 'store'), home),
      client: new Client({ connection }),
      address: 'nowhere',
      namespace: 'default',
      close: () => connection.close(),
    };
    const said: string[] = [];
    const started = Date.now();
    try {
      const err = await followRun(rt, 'words-0123456789ab', () => {}, { patienceMs: 2000, say: (l) => said.push(l) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RunStillOpenError);
      const e = err as RunStillOpenError;
      expect(e.message).toMatch(/stopped following run words-0123456789ab, which goes on/);
      expect(e.hint).toContain('embedflow status words-0123456789ab');
      expect(e.hint).toContain('embedflow resume words-0123456789ab');
      expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
      expect(said).toHaveLength(1);
      expect(said[0]).toMatch(/^Temporal is not answering, retrying/);
    } finally {
      await rt.close();
    }
  });

  it('EMBEDFLOW_FOLLOW_PATIENCE takes durations; anything else is a ConfigError naming it', () => {
    expect(followPatienceMs({})).toBeUndefined();
    expect(followPatienceMs({ EMBEDFLOW_FOLLOW_PATIENCE: '90s' })).toBe(90_000);
    expect(followPatienceMs({ EMBEDFLOW_FOLLOW_PATIENCE: '10m' })).toBe(600_000);
    expect(followPatienceMs({ EMBEDFLOW_FOLLOW_PATIENCE: '45' })).toBe(45_000);
    expect(() => followPatienceMs({ EMBEDFLOW_FOLLOW_PATIENCE: 'soon' })).toThrow(ConfigError);
    expect(() => followPatienceMs({ EMBEDFLOW_FOLLOW_PATIENCE: 'soon' })).toThrow(/EMBEDFLOW_FOLLOW_PATIENCE/);
  });
});
