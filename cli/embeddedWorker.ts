import { EmbedflowError } from '../core/errors.ts';
import { type Runtime, type RunningWorkers, startWorkers } from '../workers/runtime.ts';

// `run` and `resume` against the embedded dev server: the CLI is the run's worker while it follows it.

function isEmbedded(rt: Runtime): boolean {
  return rt.cfg.temporal === undefined;
}

/** Ctrl-C (or SIGTERM) while the CLI served and followed a run: the run itself stays open. */
export class RunDetachedError extends EmbedflowError {}
export const INTERRUPTED_EXIT = 130;

/**
 * In embedded mode the CLI is its own worker for the run's lifetime. Ctrl-C stops that worker (its
 * running stages are cancelled and keep their checkpoints) and returns at once: following a run that
 * nothing serves any more would wait forever. A second Ctrl-C quits without waiting for the stages.
 */
export async function withWorkers<T>(rt: Runtime, pipelines: string[], runId: string, fn: () => Promise<T>): Promise<T> {
  if (!isEmbedded(rt)) return fn();
  const workers: RunningWorkers = await startWorkers(rt, { queues: ['workflow', 'cpu', 'gpu'], pipelines });
  let signals = 0;
  const onSignal = () => {
    if (++signals > 1) process.exit(INTERRUPTED_EXIT);
    process.stderr.write('\ninterrupted: stopping the worker in this process (Ctrl-C again to quit at once)\n');
    void workers.shutdown();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const stopped = workers.done.then(
    () => {
      throw new RunDetachedError(`the worker in this process stopped; run ${runId} stays open on the Temporal server, its finished stages kept`, {
        hint: `\`embedflow resume ${runId}\` continues it, \`embedflow status ${runId}\` shows where it is, \`embedflow cancel ${runId}\` ends it`,
      });
    },
    (err: unknown) => {
      throw new RunDetachedError(`the worker in this process failed; run ${runId} stays open on the Temporal server`, {
        hint: `\`embedflow resume ${runId}\` continues it`,
        cause: err,
      });
    },
  );
  // Once the run is followed to its end, the workers stopping is the expected epilogue.
  stopped.catch(() => {});
  try {
    return await Promise.race([fn(), stopped]);
  } catch (err) {
    // Interrupted: whatever following the run threw as the worker went away, the user is told the
    // run is still open and how to go on.
    if (signals > 0 && !(err instanceof RunDetachedError)) throw await stopped.catch((e: unknown) => e);
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await workers.shutdown();
  }
}
