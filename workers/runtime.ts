import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { Client, Connection, type TLSConfig } from '@temporalio/client';
import { NativeConnection, type NativeConnectionOptions, Runtime as CoreRuntime, Worker, bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { createActivities } from '../engine/engine.ts';
import { ConfigError } from '../core/errors.ts';
import { writeFileAtomic } from '../artifacts/fsutil.ts';
import { sha256 } from '../artifacts/hash.ts';
import type { ArtifactStore } from '../artifacts/store.ts';
import { openStoreUrl } from '../artifacts/storeUrl.ts';
import { codeFingerprint } from '../dsl/fingerprint.ts';
import { loadPipeline } from '../dsl/load.ts';
import { type Config, PROJECT_ROOT, loadConfig, stageEnv, taskQueues } from './config.ts';
import { ensureDevServer } from './devServer.ts';
import type { PemSource } from './temporalSettings.ts';
import '../activities/builtin.ts';

export interface Runtime {
  cfg: Config;
  store: ArtifactStore;
  client: Client;
  address: string;
  namespace: string;
  /** Web UI base URL: the embedded dev server's, TEMPORAL_UI_URL, or Temporal Cloud's; undefined if unknown. */
  uiUrl?: string;
  close(): Promise<void>;
}

const WORKFLOWS = join(PROJECT_ROOT, 'workflows', 'index.ts');

/** The configured store: openStoreUrl with this process's environment and home. */
export function openStore(url: string, home: string = loadConfig().home): ArtifactStore {
  return openStoreUrl(url, { env: process.env, home });
}

async function tlsOptions(cfg: Config): Promise<TLSConfig | undefined> {
  const tls = cfg.temporal?.tls;
  if (!tls) return undefined;
  const read = async (source: PemSource | undefined, what: string) => {
    if (!source) return undefined;
    if ('data' in source) return Buffer.from(source.data);
    try {
      return await readFile(source.path);
    } catch (err) {
      throw new ConfigError(`cannot read the TLS ${what} file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, {
        where: source.path,
        hint: `check ${source.setting}`,
      });
    }
  };
  const [crt, key, ca] = await Promise.all([read(tls.cert, 'client certificate'), read(tls.key, 'client key'), read(tls.ca, 'server CA')]);
  return {
    serverNameOverride: tls.serverName,
    serverRootCACertificate: ca,
    clientCertPair: crt && key ? { crt, key } : undefined,
  };
}

/**
 * gRPC reports a failed TLS handshake only as a missed connect deadline. One plain handshake with the
 * same settings says why: an untrusted server certificate, a name it was not issued for, or a server
 * that wants a client certificate (refused right after the handshake, hence the short wait for it).
 */
async function tlsProblem(address: string, tls: TLSConfig, timeoutMs = 5000): Promise<string | undefined> {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port)) return undefined;
  return new Promise((resolve) => {
    const socket = tlsConnect({
      host,
      port,
      servername: tls.serverNameOverride ?? (isIP(host) ? undefined : host),
      ca: tls.serverRootCACertificate ? Buffer.from(tls.serverRootCACertificate) : undefined,
      cert: tls.clientCertPair ? Buffer.from(tls.clientCertPair.crt) : undefined,
      key: tls.clientCertPair ? Buffer.from(tls.clientCertPair.key) : undefined,
      ALPNProtocols: ['h2'],
    });
    let handshaken = false;
    // The first event decides; the ones after it (a close after an error) change nothing.
    const done = (problem: string | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(problem);
    };
    const timer = setTimeout(() => done(handshaken ? undefined : `no TLS handshake within ${timeoutMs / 1000} s`), timeoutMs);
    // Refused after the handshake: most likely for want of a client certificate.
    const afterHandshake = () => (handshaken && !tls.clientCertPair ? ' (no client certificate was sent: TEMPORAL_TLS_CLIENT_CERT_PATH / TEMPORAL_TLS_CLIENT_KEY_PATH)' : '');
    // An OpenSSL error's `reason` is the readable part of its message.
    socket.on('error', (e: Error & { code?: string; reason?: string }) =>
      done(`${(e.code?.startsWith('ERR_SSL_') && e.reason) || e.message}${afterHandshake()}`),
    );
    socket.on('secureConnect', () => {
      handshaken = true;
      setTimeout(() => done(undefined), 1000);
    });
    socket.on('close', () => done(`the server closed the connection ${handshaken ? 'after' : 'during'} the TLS handshake${afterHandshake()}`));
  });
}

/** Connect to the configured cluster, or start/reuse the embedded dev server. */
export async function connectRuntime(cfg: Config): Promise<Runtime> {
  let address: string;
  let uiUrl: string | undefined;
  if (cfg.temporal) {
    address = cfg.temporal.address;
    uiUrl = cfg.temporal.uiUrl;
  } else {
    const dev = await ensureDevServer(cfg);
    address = dev.address;
    uiUrl = dev.uiUrl;
  }
  const tls = await tlsOptions(cfg);
  let connection: Connection;
  try {
    connection = await Connection.connect({ address, tls, apiKey: cfg.temporal?.apiKey, connectTimeout: '15s' });
  } catch (err) {
    const handshake = tls ? await tlsProblem(address, tls) : undefined;
    throw new ConfigError(`cannot reach Temporal at ${address}: ${(err as Error).message}${handshake ? `; TLS: ${handshake}` : ''}`, {
      hint: cfg.temporal
        ? `check ${cfg.temporal.profile ? `the profile "${cfg.temporal.profile}" in the Temporal config file, ` : ''}TEMPORAL_ADDRESS and the TEMPORAL_TLS_* settings`
        : 'run `embedflow dev stop` and try again',
      cause: err,
    });
  }
  const client = new Client({ connection, namespace: cfg.namespace });
  return {
    cfg,
    store: openStore(cfg.storeUrl),
    client,
    address,
    namespace: cfg.namespace,
    uiUrl,
    close: () => connection.close(),
  };
}

let coreRuntimeInstalled = false;
function quietCoreRuntime(): void {
  if (coreRuntimeInstalled) return;
  coreRuntimeInstalled = true;
  try {
    // The native core prints its own warnings straight to stdout unless forwarded ("Workflow task
    // duration exceeded 5 seconds" on a loaded machine), which broke `run --json` for a script reading
    // stdout. Forwarded, they go through the logger, which writes to stderr.
    CoreRuntime.install({
      logger: new DefaultLogger('ERROR'),
      telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' }, forward: {} } },
    });
  } catch {
    // Already installed by the embedding process.
  }
}

/** The workflow bundle, built once per version of the workflow code and kept in EMBEDFLOW_HOME. */
export async function workflowBundlePath(cfg: Config): Promise<string> {
  const sdk = JSON.parse(await readFile(join(PROJECT_ROOT, 'node_modules', '@temporalio', 'worker', 'package.json'), 'utf8')) as { version: string };
  const key = sha256(`${await codeFingerprint({ module: WORKFLOWS })}:${sdk.version}`).slice(0, 16);
  const path = join(cfg.home, 'cache', `workflow-bundle-${key}.js`);
  if (!existsSync(path)) {
    const { code } = await bundleWorkflowCode({ workflowsPath: WORKFLOWS, logger: new DefaultLogger('WARN') });
    await writeFileAtomic(path, code);
  }
  return path;
}

export type QueueName = 'workflow' | 'cpu' | 'gpu';

export interface WorkerOptions {
  queues: QueueName[];
  /** Pipeline files whose own stage kinds this worker must know. */
  pipelines?: string[];
  cpuConcurrency?: number;
  gpuConcurrency?: number;
  shutdownGraceTime?: string;
}

export interface RunningWorkers {
  /** Resolves when every worker has stopped. */
  done: Promise<void>;
  shutdown(): Promise<void>;
}

/** Start workers for the given queues in this process. */
export async function startWorkers(rt: Runtime, opts: WorkerOptions): Promise<RunningWorkers> {
  quietCoreRuntime();
  for (const file of opts.pipelines ?? []) await loadPipeline(file);
  const native: NativeConnectionOptions = {
    address: rt.address,
    tls: await tlsOptions(rt.cfg),
    apiKey: rt.cfg.temporal?.apiKey,
  };
  const connection = await NativeConnection.connect(native);
  const activities = createActivities({ store: rt.store, env: stageEnv(rt.cfg) });
  const queues = taskQueues(rt.cfg);
  // Short: a long stage is cancelled promptly on shutdown and continues elsewhere from its checkpoint.
  const grace = opts.shutdownGraceTime ?? '2s';
  const workers: Worker[] = [];
  if (opts.queues.includes('workflow')) {
    workers.push(
      await Worker.create({
        connection,
        namespace: rt.namespace,
        taskQueue: queues.workflow,
        workflowBundle: { codePath: await workflowBundlePath(rt.cfg) },
        activities: { resolveStage: activities.resolveStage },
        shutdownGraceTime: grace,
      }),
    );
  }
  const stageActivities = { executeStage: activities.executeStage, snapshotInput: activities.snapshotInput };
  const concurrency = { cpu: opts.cpuConcurrency ?? 4, gpu: opts.gpuConcurrency ?? 1 };
  for (const q of ['cpu', 'gpu'] as const) {
    if (!opts.queues.includes(q)) continue;
    workers.push(
      await Worker.create({
        connection,
        namespace: rt.namespace,
        taskQueue: queues[q],
        activities: stageActivities,
        maxConcurrentActivityTaskExecutions: concurrency[q],
        // Progress reaches the server within seconds: by default a stage with a 10-minute heartbeat
        // timeout is throttled to one heartbeat a minute, and `status` lags that far behind its work.
        maxHeartbeatThrottleInterval: '2s',
        shutdownGraceTime: grace,
      }),
    );
  }
  const done = Promise.all(workers.map((w) => w.run())).then(
    () => connection.close(),
    async (err) => {
      await connection.close();
      throw err;
    },
  );
  return {
    done,
    async shutdown() {
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      await done;
    },
  };
}
