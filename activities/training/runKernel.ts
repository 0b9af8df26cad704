import { join } from 'node:path';
import { OutOfMemoryError, TrainerConfigError, TrainerFailedError } from '../../core/errors.ts';
import { type DoneLine, type ErrorLine, type KernelLine, LineSplitter, TailBuffer, parseKernelLine } from './kernelLines.ts';
import { outOfMemoryCause, watchOomKills } from './oomKills.ts';
import { spawnGroup } from './processGroup.ts';

export interface KernelRun {
  python: string;
  projectRoot: string;
  /** Flags for trainer/train.py (see `python trainer/train.py --help`). */
  args: string[];
  env: NodeJS.ProcessEnv;
  signal: AbortSignal;
  onLine(line: KernelLine): void;
  /** Called once the kernel is running (tests and logs want its pid). */
  onSpawn?(pid: number): void;
  /** Files with Linux's `oom_kill N` counters (default: this process's cgroup and /proc/vmstat; see oomKills.ts). */
  oomCounters?: string[];
}

export const KERNEL_SCRIPT = join('trainer', 'train.py');

/**
 * Run the training kernel to completion and return its `done` line. Its stdout JSON lines go to
 * `onLine` as they arrive; a failure becomes a named error: the kernel's own error line when it wrote
 * one (TrainerConfigError, OutOfMemoryError), otherwise TrainerFailedError with the last lines of
 * its stderr. An abort of `signal` kills the kernel's whole process group and rethrows the abort.
 */
export async function runKernel(run: KernelRun): Promise<DoneLine> {
  run.signal.throwIfAborted();
  const oomWatch = await watchOomKills(run.oomCounters);
  let proc;
  try {
    proc = await spawnGroup(run.python, [join(run.projectRoot, KERNEL_SCRIPT), ...run.args, '--exit-with-stdin'], {
      cwd: run.projectRoot,
      env: { ...run.env, PYTHONUNBUFFERED: '1' },
    });
  } catch (err) {
    throw new TrainerFailedError(`could not start the training kernel with ${run.python}: ${(err as Error).message}`, {
      hint: 'run `npm run setup` to create the Python environment, or set the worker\'s python',
      cause: err,
    });
  }
  run.onSpawn?.(proc.pid);
  const onAbort = () => void proc.terminate();
  run.signal.addEventListener('abort', onAbort, { once: true });

  let done: DoneLine | undefined;
  let failure: ErrorLine | undefined;
  let lineError: unknown;
  const stdout = new LineSplitter();
  const stderr = new TailBuffer(40);
  const handle = (text: string) => {
    const line = parseKernelLine(text);
    if (!line) return;
    if (line.type === 'done') done = line;
    if (line.type === 'error') failure = line;
    try {
      run.onLine(line);
    } catch (err) {
      // A failing consumer (e.g. a heartbeat that throws) must not leave the kernel running unseen.
      lineError ??= err;
      void proc.terminate();
    }
  };
  proc.child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk).forEach(handle));
  proc.child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));

  const exit = await proc.exited;
  run.signal.removeEventListener('abort', onAbort);
  stdout.end().forEach(handle);

  if (run.signal.aborted) throw run.signal.reason;
  if (lineError) throw lineError;
  if (done && exit.code === 0) return done;
  const tail = stderr.text();
  if (failure) throw kernelError(failure, tail);
  const oom = await outOfMemoryCause(exit.signal, tail, oomWatch);
  if (oom) throw outOfMemory(`the training kernel ${oom}`, run.args);
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
  const oomKiller =
    exit.signal === 'SIGKILL'
      ? 'SIGKILL from outside usually means the machine ran out of memory (OOM killer): try a smaller batchSize or miniBatchSize'
      : undefined;
  const what = `the training kernel ${how}${done ? ' after finishing' : ''}${oomKiller ? ` (${oomKiller})` : ''}`;
  throw new TrainerFailedError(withTail(what, tail), {
    where: KERNEL_SCRIPT,
    hint: oomKiller ?? 'see its stderr above; a retry resumes from the last checkpoint',
  });
}

/** Out of memory where the kernel could not say so itself; the advice is the kernel's own (trainer/failures.py). */
function outOfMemory(what: string, args: string[]): OutOfMemoryError {
  const flag = (name: string) => Number(new RegExp(`^--${name}=(\\d+)$`).exec(args.find((a) => a.startsWith(`--${name}=`)) ?? '')?.[1] ?? Number.NaN);
  const batch = flag('batch-size');
  const mini = flag('mini-batch-size');
  const grad = `miniBatchSize ${Number.isFinite(mini) ? Math.max(1, Math.floor(mini / 2)) : 8} (GradCache: the same loss, memory bounded by the mini-batch)`;
  const hint = Number.isFinite(batch) ? `try batchSize ${Math.max(1, Math.floor(batch / 2))} or ${grad}` : `try a smaller batchSize or ${grad}`;
  const at = Number.isFinite(batch) ? ` at batch size ${batch}` : '';
  return new OutOfMemoryError(`out of memory${at}: ${what} (fix: ${hint})`, {
    where: 'batchSize',
    hint,
  });
}

// `status` shows a failure's type and message only, so the message carries what to do and, for a
// crash, what the kernel said last.
function withTail(message: string, tail: string): string {
  const lines = tail.split('\n').slice(-15).join('\n');
  return lines ? `${message}; its last stderr lines:\n${lines}` : message;
}

function kernelError(line: ErrorLine, stderrTail: string): Error {
  const opts = { where: line.where, hint: line.hint };
  const full = line.hint ? `${line.message} (fix: ${line.hint})` : line.message;
  switch (line.error) {
    case 'TrainerConfigError':
      return new TrainerConfigError(full, opts);
    case 'OutOfMemoryError':
      return new OutOfMemoryError(full, opts);
    default:
      return new TrainerFailedError(withTail(line.message, stderrTail), { where: line.where ?? KERNEL_SCRIPT, hint: line.hint });
  }
}
