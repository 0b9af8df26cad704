import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ConfigError } from '../activities/errors.ts';
import type { StageEnv } from '../pipelines/stage.ts';

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Everything the CLI and workers read from the environment, parsed once, at the edge. */
const EnvSchema = z.object({
  EMBEDFLOW_HOME: z.string().optional(),
  EMBEDFLOW_STORE: z.string().optional(),
  EMBEDFLOW_PYTHON: z.string().optional(),
  EMBEDFLOW_TEMPORAL_BIN: z.string().optional(),
  EMBEDFLOW_QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, ".", "_" and "-" only').optional(),
  EMBEDFLOW_DEV_PORT: z.coerce.number().int().min(1).max(65535).optional(),
  TEMPORAL_ADDRESS: z.string().optional(),
  TEMPORAL_NAMESPACE: z.string().optional(),
  TEMPORAL_TLS_CERT: z.string().optional(),
  TEMPORAL_TLS_KEY: z.string().optional(),
  TEMPORAL_TLS_CA: z.string().optional(),
  TEMPORAL_TLS_SERVER_NAME: z.string().optional(),
  TEMPORAL_TLS: z.enum(['true', 'false', '1', '0']).optional(),
  TEMPORAL_API_KEY_ENV: z.string().optional(),
});

export interface Config {
  home: string;
  storeUrl: string;
  python: string;
  temporalBin: string;
  queuePrefix: string;
  devPort?: number;
  /** Remote cluster; undefined means the embedded dev server. */
  temporal?: {
    address: string;
    namespace: string;
    tls?: { certPath?: string; keyPath?: string; caPath?: string; serverName?: string };
    /** Name of the environment variable holding an API key (Temporal Cloud), never the key itself. */
    apiKeyEnv?: string;
  };
  namespace: string;
}

export function loadConfig(vars: NodeJS.ProcessEnv = process.env): Config {
  const parsed = EnvSchema.safeParse(vars);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(`environment variable ${issue.path.join('.')}: ${issue.message}`, { hint: 'fix or unset it' });
  }
  const e = parsed.data;
  const home = resolve(e.EMBEDFLOW_HOME ?? '.embedflow');
  const venvPython = join(PROJECT_ROOT, '.venv', 'bin', 'python');
  const venvTemporal = join(PROJECT_ROOT, '.venv', 'bin', 'temporal');
  const namespace = e.TEMPORAL_NAMESPACE ?? 'default';
  const tlsOn = e.TEMPORAL_TLS === 'true' || e.TEMPORAL_TLS === '1' || !!(e.TEMPORAL_TLS_CERT || e.TEMPORAL_TLS_CA);
  return {
    home,
    storeUrl: e.EMBEDFLOW_STORE ?? join(home, 'store'),
    python: e.EMBEDFLOW_PYTHON ?? (existsSync(venvPython) ? venvPython : 'python3'),
    temporalBin: e.EMBEDFLOW_TEMPORAL_BIN ?? (existsSync(venvTemporal) ? venvTemporal : 'temporal'),
    queuePrefix: e.EMBEDFLOW_QUEUE_PREFIX ?? 'embedflow',
    devPort: e.EMBEDFLOW_DEV_PORT,
    namespace,
    temporal: e.TEMPORAL_ADDRESS
      ? {
          address: e.TEMPORAL_ADDRESS,
          namespace,
          tls: tlsOn
            ? { certPath: e.TEMPORAL_TLS_CERT, keyPath: e.TEMPORAL_TLS_KEY, caPath: e.TEMPORAL_TLS_CA, serverName: e.TEMPORAL_TLS_SERVER_NAME }
            : undefined,
          apiKeyEnv: e.TEMPORAL_API_KEY_ENV,
        }
      : undefined,
  };
}

export function taskQueues(cfg: Config) {
  return { workflow: cfg.queuePrefix, cpu: `${cfg.queuePrefix}-cpu`, gpu: `${cfg.queuePrefix}-gpu` };
}

export function stageEnv(cfg: Config, vars: NodeJS.ProcessEnv = process.env): StageEnv {
  return { home: cfg.home, python: cfg.python, projectRoot: PROJECT_ROOT, vars: { ...vars } };
}
