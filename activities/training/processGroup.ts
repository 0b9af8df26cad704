import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { isErrno } from '../../artifacts/fsutil.ts';

/**
 * A child process started as the leader of its own process group, so everything it starts (threads
 * are free; data-loader workers, compilers, helpers are not) can be stopped with one signal.
 *
 * Three ways it is stopped: `terminate()` (cancellation, worker shutdown), this process exiting
 * (an exit hook SIGKILLs every live group), and this process dying without running any hook
 * (SIGKILL, OOM killer): the child must then notice itself; the training kernel does, through
 * end-of-file on its stdin (`--exit-with-stdin`), which is why stdin is a pipe that is never closed.
 */
export interface GroupChild {
  readonly child: ChildProcessWithoutNullStreams;
  readonly pid: number;
  /** Settles when the leader has exited and its output is drained. */
  readonly exited: Promise<ExitInfo>;
  /** SIGTERM to the group, SIGKILL after `graceMs`; resolves once the leader is gone. */
  terminate(graceMs?: number): Promise<ExitInfo>;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const liveGroups = new Set<number>();
let exitHookInstalled = false;

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch (err) {
    if (!isErrno(err, 'ESRCH')) throw err;
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers must be synchronous: a signal is all there is time for.
  process.on('exit', () => {
    for (const pgid of liveGroups) killGroup(pgid, 'SIGKILL');
  });
}

export async function spawnGroup(
  command: string,
  args: string[],
  opts: { cwd: string; env: NodeJS.ProcessEnv },
): Promise<GroupChild> {
  installExitHook();
  const child = spawn(command, args, { cwd: opts.cwd, env: opts.env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  const pid = child.pid!;
  liveGroups.add(pid);
  // EPIPE on stdin when the child has gone is expected; stdin only exists to signal our own death.
  child.stdin.on('error', () => {});
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('close', (code, signal) => {
      liveGroups.delete(pid);
      resolve({ code, signal });
    });
  });
  return {
    child,
    pid,
    exited,
    async terminate(graceMs = 5000) {
      if (!liveGroups.has(pid)) return exited;
      killGroup(pid, 'SIGTERM');
      const timer = setTimeout(() => killGroup(pid, 'SIGKILL'), graceMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
        // The leader is gone; anything it left in the group goes with it.
        killGroup(pid, 'SIGKILL');
      }
    },
  };
}
