import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, testEnv } from '../support/cli.ts';

// A real full disk: the store on a small tmpfs. The run fails with a clear DiskFullError, publishes
// nothing partial, and resumes once space is freed.

const mountPoint = mkdtempSync(join(tmpdir(), 'ef-tinyfs-'));
let mounted = false;
try {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mountPoint], { stdio: 'ignore' });
  mounted = true;
} catch {
  console.warn('diskFull.test: cannot mount a tmpfs here (needs root); the disk-full case is not exercised');
}
afterAll(() => {
  if (mounted) execFileSync('umount', [mountPoint]);
});

describe.skipIf(!mounted)('disk full while publishing', () => {
  it('fails clearly, leaves no partial artifact, and resumes after space is freed', async () => {
    const env = { ...(await testEnv()), EMBEDFLOW_STORE: join(mountPoint, 'store') };
    const failed = await cli(['run', 'test/fixtures/pipelines/words.ts', '--json', '--set', 'words.fillBytes=2000000'], env);
    expect(failed.code).toBe(1);
    expect(failed.json.error).toMatchObject({ type: 'DiskFullError', stage: 'words' });
    expect(failed.json.error.message).toMatch(/no space left/);
    // Nothing half-written: no staging leftovers, every published artifact intact.
    expect(readdirSync(join(env.EMBEDFLOW_STORE, 'tmp'))).toEqual([]);
    const verify = await cli(['store', 'verify'], env);
    expect(verify.code, verify.stderr).toBe(0);

    execFileSync('mount', ['-o', 'remount,size=16m', mountPoint]);
    const resumed = await cli(['resume', failed.json.runId, '--json'], env);
    expect(resumed.code, resumed.stderr).toBe(0);
    type StageStatus = { id: string; status: string };
    const status = Object.fromEntries(resumed.json.stages.map((s: StageStatus) => [s.id, s.status]));
    // chars runs beside words: it finished before the disk filled (then it is not redone), or it
    // met the full disk too (then it runs again).
    const finishedBefore = (failed.json.stages as StageStatus[]).filter((s) => s.status === 'ran').map((s) => s.id);
    expect(status).toEqual({ words: 'ran', chars: finishedBefore.includes('chars') ? 'cached' : 'ran', summary: 'ran' });
  });
});
