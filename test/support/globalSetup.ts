import { mkdir, rm } from 'node:fs/promises';
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

export async function setup(project: TestProject) {
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
  };
}
