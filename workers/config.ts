import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ConfigError } from '../core/errors.ts';
import type { StageEnv } from '../dsl/stage.ts';
import { type TemporalSettings, TemporalEnvSchema, temporalSettings } from './temporalSettings.ts';

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Everything the CLI and workers read from the environment, parsed once, at the edge. */
const EnvSchema = z
  .object({
    EMBEDFLOW_HOME: z.string().optional().describe('state folder (default ./.embedflow)'),
    EMBEDFLOW_STORE: z.string().optional().describe('artifact store: a folder or s3://bucket/prefix'),
    EMBEDFLOW_PYTHON: z.string().optional().describe('the Python with torch (default .venv/bin/python)'),
    EMBEDFLOW_TEMPORAL_BIN: z.string().optional().describe('the temporal CLI for the embedded dev server'),
    EMBEDFLOW_QUEUE_PREFIX: z
      .string()
      .regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, ".", "_" and "-" only')
      .optional()
      .describe('task queue name prefix (default "embedflow")'),
    EMBEDFLOW_DEV_PORT: z.coerce.number().int().min(1).max(65535).optional().describe('the embedded dev server port'),
  })
  .extend(TemporalEnvSchema.shape);

export interface Config {
  home: string;
  storeUrl: string;
  python: string;
  temporalBin: string;
  queuePrefix: string;
  devPort?: number;
  /** Remote cluster (TEMPORAL_* variables or a profile); undefined means the embedded dev server. */
  temporal?: TemporalSettings;
  namespace: string;
}

export function loadConfig(vars: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable is an unset one, as `EMBEDFLOW_HOME= embedflow runs` means in a shell: an empty
  // EMBEDFLOW_HOME made the current folder the home, and the dev server's database landed in it.
  const set = Object.fromEntries(Object.entries(vars).filter(([k, v]) => !(k.startsWith('EMBEDFLOW_') && v === '')));
  const parsed = EnvSchema.safeParse(set);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    // The variable's name only: its value may be a secret.
    throw new ConfigError(`environment variable ${issue.path.join('.')}: ${issue.message}`, { hint: 'fix or unset it' });
  }
  const e = parsed.data;
  const home = resolve(e.EMBEDFLOW_HOME ?? '.embedflow');
  const venvPython = join(PROJECT_ROOT, '.venv', 'bin', 'python');
  const venvTemporal = join(PROJECT_ROOT, '.venv', 'bin', 'temporal');
  const { namespace, remote } = temporalSettings(e, vars);
  return {
    home,
    storeUrl: e.EMBEDFLOW_STORE ?? join(home, 'store'),
    python: e.EMBEDFLOW_PYTHON ?? (existsSync(venvPython) ? venvPython : 'python3'),
    temporalBin: e.EMBEDFLOW_TEMPORAL_BIN ?? (existsSync(venvTemporal) ? venvTemporal : 'temporal'),
    queuePrefix: e.EMBEDFLOW_QUEUE_PREFIX ?? 'embedflow',
    devPort: e.EMBEDFLOW_DEV_PORT,
    namespace,
    temporal: remote,
  };
}

export function taskQueues(cfg: Config) {
  return { workflow: cfg.queuePrefix, cpu: `${cfg.queuePrefix}-cpu`, gpu: `${cfg.queuePrefix}-gpu` };
}

export function stageEnv(cfg: Config, vars: NodeJS.ProcessEnv = process.env): StageEnv {
  return { home: cfg.home, python: cfg.python, projectRoot: PROJECT_ROOT, vars: { ...vars } };
}
