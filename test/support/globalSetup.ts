import { chmod, mkdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { loadConfig } from '../../workers/config.ts';
import { ensureDevServer, stopDevServer } from '../../workers/devServer.ts';
import { workflowBundlePath } from '../../workers/runtime.ts';

// One real Temporal dev server for the whole test run, in its own EMBEDFLOW_HOME and ports, so a
// developer's own dev server is never touched. Tests isolate themselves with their own store and
// task-queue prefix (test/support/cli.ts).

// Per test run: several runs (developers, CI) may share a checkout.
export const TEST_HOME = join(import.meta.dirname, '..', '.output', `home-${process.pid}`);

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    testHome: string;
  }
}

// Tests and the processes they start make their scratch folders (stores, checkpoints, corpora) with
// os.tmpdir(): pointing TMPDIR at one folder per run lets teardown remove gigabytes in one go.
const TEST_TMP = join(tmpdir(), `embedflow-test-${process.pid}`);

export async function setup(project: TestProject) {
  await mkdir(TEST_TMP, { recursive: true });
  // Like /tmp: the unprivileged-user tests write here too.
  await chmod(TEST_TMP, 0o1777);
  // tsx keeps its transpile cache in the temporary folder: share the usual one, or every CLI the
  // tests start would transpile the whole project again.
  const uid = process.getuid?.() ?? 0;
  await mkdir(join(tmpdir(), `tsx-${uid}`), { recursive: true });
  await symlink(join(tmpdir(), `tsx-${uid}`), join(TEST_TMP, `tsx-${uid}`)).catch(() => {});
  // Caches worth keeping between runs (assembled GGUF, exported test models) stay in the usual one.
  process.env.EMBEDFLOW_TEST_CACHE ??= tmpdir();
  process.env.TMPDIR = TEST_TMP;
  await rm(TEST_HOME, { recursive: true, force: true });
  await mkdir(TEST_HOME, { recursive: true });
  const cfg = loadConfig({ EMBEDFLOW_HOME: TEST_HOME, EMBEDFLOW_DEV_PORT: String(17233 + (process.pid % 1000)) });
  const dev = await ensureDevServer(cfg);
  // Build the workflow bundle once, before test files race to build it.
  await workflowBundlePath(cfg);
  project.provide('temporalAddress', dev.address);
  project.provide('testHome', TEST_HOME);
  return async () => {
    await stopDevServer(TEST_HOME);
    await rm(TEST_HOME, { recursive: true, force: true });
    await rm(TEST_TMP, { recursive: true, force: true }).catch((err: unknown) => console.warn(`could not remove ${TEST_TMP}: ${String(err)}`));
  };
}
