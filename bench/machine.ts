// The machine a bench ran on, printed by every bench: its figures depend on the CPU's vector
// instructions (VNNI for int8, AVX512-BF16/AMX for bf16 training) and on what else shared the cores.
import { readFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';

/** The CPU flags the benches' figures depend on. */
const FLAGS = ['avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_bf16', 'amx_int8'] as const;
export type CpuFlag = (typeof FLAGS)[number];

export interface Cpu {
  model: string;
  cores: number;
  memoryGiB: number;
  flags: Record<CpuFlag, boolean>;
  /** False where the OS does not list them (no /proc/cpuinfo): every flag then reads false. */
  flagsKnown: boolean;
}

export interface Machine {
  cpu: Cpu;
  /** 1, 5 and 15-minute load averages when the bench started and when it ended. */
  loadBefore: number[];
  loadAfter: number[];
}

function cpuFlags(): Set<string> | undefined {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    return line ? new Set(line.slice(line.indexOf(':') + 1).trim().split(/\s+/)) : undefined;
  } catch {
    return undefined;
  }
}

export function cpuInfo(): Cpu {
  const have = cpuFlags();
  return {
    model: cpus()[0]?.model.trim() ?? 'unknown CPU',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    flags: Object.fromEntries(FLAGS.map((f) => [f, have?.has(f) ?? false])) as Record<CpuFlag, boolean>,
    flagsKnown: have !== undefined,
  };
}

const loads = () => loadavg().map((x) => +x.toFixed(2));

/** "AMD EPYC 7B13, 2 cores, 24 GiB; avx2 yes, avx512f no, ..." */
export function describeCpu(cpu: Cpu): string {
  const flags = cpu.flagsKnown ? FLAGS.map((f) => `${f} ${cpu.flags[f] ? 'yes' : 'no'}`).join(', ') : 'flags unknown';
  return `${cpu.model}, ${cpu.cores} cores, ${cpu.memoryGiB} GiB; ${flags}`;
}

/**
 * Call when a bench starts: prints the machine and the load average. `finish()` prints the load at
 * the end and returns the whole record, for the bench's JSON output.
 */
export function benchMachine(log: (line: string) => void = console.log): { cpu: Cpu; finish(): Machine } {
  const cpu = cpuInfo();
  const loadBefore = loads();
  log(`machine: ${describeCpu(cpu)}; load average ${loadBefore.join(' ')}`);
  return {
    cpu,
    finish() {
      const loadAfter = loads();
      log(`machine: load average at the end ${loadAfter.join(' ')} (at the start ${loadBefore.join(' ')})`);
      return { cpu, loadBefore, loadAfter };
    },
  };
}
