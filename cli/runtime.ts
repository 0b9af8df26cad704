import { constants } from 'node:fs';
import { access, mkdir, stat } from 'node:fs/promises';
import { ConfigError } from '../core/errors.ts';
import type { ArtifactStore } from '../artifacts/store.ts';
import { type Config, loadConfig } from '../workers/config.ts';
import { type Runtime, connectRuntime, openStore } from '../workers/runtime.ts';

// The one place commands get their configuration, store and Temporal connection.

/** EMBEDFLOW_HOME cannot hold the CLI's state: it is a file, cannot be created, or is not writable. */
export class HomeNotUsableError extends ConfigError {}

/** Makes sure the state folder exists and is writable, before anything writes into it. */
async function ensureHome(home: string): Promise<void> {
  const where = `EMBEDFLOW_HOME=${home}`;
  const fix = 'point EMBEDFLOW_HOME at a folder you can write to (it is created if missing), or unset it to use ./.embedflow';
  const info = await stat(home).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    const why = err.code === 'ENOTDIR' ? 'a part of its path is a file' : (err.code ?? err.message);
    throw new HomeNotUsableError(`the state folder ${home} cannot be used: ${why}`, { where, hint: fix });
  });
  if (info && !info.isDirectory()) throw new HomeNotUsableError(`the state folder ${home} is a file, not a folder`, { where, hint: fix });
  if (!info) {
    await mkdir(home, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
      const why = err.code === 'ENOTDIR' ? 'a part of its path is a file' : err.code === 'EACCES' ? 'permission denied' : (err.code ?? err.message);
      throw new HomeNotUsableError(`the state folder ${home} cannot be created: ${why}`, { where, hint: fix });
    });
  }
  await access(home, constants.W_OK).catch(() => {
    throw new HomeNotUsableError(`the state folder ${home} is not writable by this user`, { where, hint: fix });
  });
}

/** The configuration from the environment, its state folder checked. */
export async function cliConfig(): Promise<Config> {
  const cfg = loadConfig();
  await ensureHome(cfg.home);
  return cfg;
}

/** The artifact store alone (no Temporal), for commands that only read or maintain the store. */
export async function cliStore(): Promise<ArtifactStore> {
  const cfg = await cliConfig();
  return openStore(cfg.storeUrl, cfg.home);
}

/** Opens the runtime (starting the embedded dev server when no cluster is configured), runs `fn`, closes it. */
export async function withRuntime<T>(fn: (rt: Runtime) => Promise<T>, cfg?: Config): Promise<T> {
  const rt = await connectRuntime(cfg ?? (await cliConfig()));
  try {
    return await fn(rt);
  } finally {
    await rt.close();
  }
}
