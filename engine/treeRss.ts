import { readFileSync, readdirSync } from 'node:fs';

// Resident memory of this process and every process below it (a stage's Python kernel, a llama.cpp
// or ONNX thread pool lives in one of them). What the machine pays while a stage runs, as the
// budget estimates it; stages running beside it in the same worker share the figure.

const PAGE_BYTES = 4096;

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tasks) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ')) if (c.trim()) out.push(Number(c));
    } catch {
      // The thread or process ended while we looked.
    }
  }
  return out;
}

function rssOf(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * PAGE_BYTES || 0;
  } catch {
    return 0;
  }
}

/** Bytes resident in this process and its descendants now (this process only where /proc is missing). */
export function treeRssBytes(): number {
  let total = process.memoryUsage.rss();
  const seen = new Set<number>([process.pid]);
  const todo = childrenOf(process.pid);
  while (todo.length) {
    const pid = todo.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    total += rssOf(pid);
    todo.push(...childrenOf(pid));
  }
  return total;
}

/** Samples the tree's resident memory until `stop()`, which returns the peak in MB. */
export function sampleTreeRss(everyMs = 500): { stop(): number } {
  let peak = treeRssBytes();
  const timer = setInterval(() => (peak = Math.max(peak, treeRssBytes())), everyMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      peak = Math.max(peak, treeRssBytes());
      return Math.round(peak / 2 ** 20);
    },
  };
}
