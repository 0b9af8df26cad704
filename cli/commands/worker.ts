import { stopDevServer } from '../../workers/devServer.ts';
import { startWorkers } from '../../workers/runtime.ts';
import { cliConfig, withRuntime } from '../runtime.ts';

// `worker` (a long-lived worker for a cluster) and `dev stop` (the embedded dev server).

export type Queue = 'cpu' | 'gpu' | 'workflow';

export async function cmdWorker(flags: { queue?: Queue[]; pipeline?: string[]; concurrency?: number; grace: string }): Promise<number> {
  const queues = flags.queue ?? ['workflow', 'cpu'];
  return withRuntime(async (rt) => {
    const workers = await startWorkers(rt, {
      queues,
      pipelines: flags.pipeline,
      cpuConcurrency: flags.concurrency,
      gpuConcurrency: flags.concurrency,
      shutdownGraceTime: flags.grace,
    });
    process.stderr.write(`worker polling ${queues.join(', ')} on ${rt.address} (store ${rt.store.location})\n`);
    const stop = () => {
      process.stderr.write('shutting down: cancelling running activities so they are retried elsewhere\n');
      void workers.shutdown();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    await workers.done;
    return 0;
  });
}

export async function cmdDevStop(): Promise<number> {
  const cfg = await cliConfig();
  const stopped = await stopDevServer(cfg.home);
  process.stderr.write(stopped ? `stopped the dev server of ${cfg.home}\n` : 'no dev server was running\n');
  return 0;
}
