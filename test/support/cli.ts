import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, inject } from 'vitest';
import { PROJECT_ROOT } from '../../workers/config.ts';
import { randomId } from '../../artifacts/fsutil.ts';

const BIN = join(PROJECT_ROOT, 'bin', 'embedflow.js');

export interface TestEnv extends Record<string, string> {
  EMBEDFLOW_HOME: string;
  EMBEDFLOW_STORE: string;
  EMBEDFLOW_QUEUE_PREFIX: string;
}

/**
 * An isolated environment on the shared test dev server: its own store and its own task queues, so
 * parallel test files never run each other's activities.
 */
export async function testEnv(extra: Record<string, string> = {}): Promise<TestEnv> {
  const store = await mkdtemp(join(tmpdir(), 'ef-test-store-'));
  return {
    EMBEDFLOW_HOME: inject('testHome'),
    EMBEDFLOW_STORE: store,
    EMBEDFLOW_QUEUE_PREFIX: `t-${randomId(4)}`,
    // The workers of one test share a budget; test files running side by side do not wait for each other.
    EMBEDFLOW_BUDGET_DIR: `${store}-budget`,
    ...extra,
  };
}

/** The same environment, but talking to the dev server as a remote cluster: the CLI starts no worker. */
export function remote(env: TestEnv): TestEnv {
  return { ...env, TEMPORAL_ADDRESS: inject('temporalAddress') };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The last stdout line parsed as JSON, when there is one. */
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-only convenience
}

export function spawnCli(args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [BIN, ...args], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

export function collect(child: ChildProcess, timeoutMs = 170_000): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => (stdout += d));
  child.stderr?.on('data', (d) => (stderr += d));
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, json: lastJsonLine(stdout) });
    });
  });
}

export function cli(args: string[], env: Record<string, string>, timeoutMs?: number): Promise<CliResult> {
  return collect(spawnCli(args, env), timeoutMs);
}

/** Wait until `check` returns a truthy value (polling), or fail after `ms`. */
export async function until<T>(check: () => Promise<T | undefined | false> | T | undefined | false, ms = 60_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Run the CLI in this process (the same entry point the binary calls), capturing its output: for
 * suites of many short cases, where spawning a process per case costs more than the case.
 */
export async function cliInProcess(args: string[], env: Record<string, string>): Promise<CliResult> {
  const { runCli } = await import('../../cli/main.ts');
  const saved = { ...process.env };
  Object.assign(process.env, env);
  let stdout = '';
  let stderr = '';
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string | Uint8Array) => ((stdout += String(chunk)), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => ((stderr += String(chunk)), true)) as typeof process.stderr.write;
  let code: number;
  try {
    code = await runCli(args);
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
  return { code, stdout, stderr, json: lastJsonLine(stdout) };
}

/** The CLI's --json summary: its last stdout line, when that parses. */
function lastJsonLine(stdout: string): unknown {
  try {
    return JSON.parse(stdout.trim().split('\n').pop() ?? '');
  } catch {
    return undefined;
  }
}

/**
 * `spawnCli` for tests that start workers and runs and kill some of them: every child it started that
 * is still alive is SIGKILLed after each test, so none outlives the test that made it.
 */
export function spawnCliKilledAfterEach(): (args: string[], env: Record<string, string>) => ChildProcess {
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });
  return (args, env) => {
    const c = spawnCli(args, env);
    children.push(c);
    return c;
  };
}

/** Where caches that outlive a test run live (globalSetup points TMPDIR at a per-run folder). */
export function testCacheDir(): string {
  return process.env.EMBEDFLOW_TEST_CACHE ?? tmpdir();
}
