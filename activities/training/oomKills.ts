import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

// A trainer that dies of SIGKILL it did not ask for was, almost always, shot by Linux's OOM killer;
// the evidence is a counter Linux keeps of such kills (`oom_kill N`): per cgroup (v2 memory.events,
// v1 memory.oom_control: a container's or a systemd unit's memory limit) and for the whole machine
// (/proc/vmstat). A counter that moved while the trainer ran turns "killed by SIGKILL" into "out of memory".

/** Files holding an `oom_kill N` line, this process's cgroup first (children inherit it). */
export async function oomCounterFiles(): Promise<string[]> {
  const files: string[] = [];
  const cgroups = await readFile('/proc/self/cgroup', 'utf8').catch(() => '');
  for (const line of cgroups.split('\n')) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (path === undefined) continue;
    if (controllers === '') files.push(join('/sys/fs/cgroup', path, 'memory.events'));
    if (controllers?.split(',').includes('memory')) files.push(join('/sys/fs/cgroup/memory', path, 'memory.oom_control'));
  }
  // Inside a cgroup namespace the path above may not exist: the mount's root is the container's cgroup.
  files.push('/sys/fs/cgroup/memory.events', '/sys/fs/cgroup/memory/memory.oom_control', '/proc/vmstat');
  return [...new Set(files)];
}

export type OomCounts = Map<string, number>;

/** The `oom_kill` count of each file that has one (unreadable files are skipped). */
export async function readOomKills(files: string[]): Promise<OomCounts> {
  const counts: OomCounts = new Map();
  for (const file of files) {
    const text = await readFile(file, 'utf8').catch(() => '');
    const m = /^oom_kill (\d+)$/m.exec(text);
    if (m) counts.set(file, Number(m[1]));
  }
  return counts;
}

/** The counters as a trainer starts, to compare with once it has died. */
export interface OomWatch {
  files: string[];
  before: OomCounts;
}

export async function watchOomKills(files?: string[]): Promise<OomWatch> {
  const paths = files ?? (await oomCounterFiles());
  return { files: paths, before: await readOomKills(paths) };
}

// Out of memory as a trainer's stderr shows it when the trainer could not report it itself: Python's
// MemoryError, torch's CPU allocator, Rust's tokenizers aborting, C++'s bad_alloc, a thread without a stack.
const OOM_LINE = /^MemoryError\b|memory allocation of \d+ bytes failed|std::bad_alloc|can(no|')t allocate memory|out of memory/i;

/**
 * Why a trainer that died without reporting it looks out of memory ("ran out of memory (...)", "was
 * killed by Linux's OOM killer (...)"), or undefined.
 */
export async function outOfMemoryCause(signal: NodeJS.Signals | null, stderrTail: string, watch: OomWatch): Promise<string | undefined> {
  const line = stderrTail.split('\n').find((l) => OOM_LINE.test(l.trim()));
  if (line) return `ran out of memory ("${line.trim().slice(0, 200)}")`;
  if (signal !== 'SIGKILL') return undefined;
  const moved = oomKillEvidence(watch.before, await readOomKills(watch.files));
  return moved && `was killed by Linux's OOM killer (${moved})`;
}

/** "oom_kill in /proc/vmstat went 3 → 4", or undefined when no counter moved. */
export function oomKillEvidence(before: OomCounts, after: OomCounts): string | undefined {
  for (const [file, n] of after) {
    const was = before.get(file);
    if (was !== undefined && n > was) return `oom_kill in ${file} went ${was} → ${n}`;
  }
  return undefined;
}
