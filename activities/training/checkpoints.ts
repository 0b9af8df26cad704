import { readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

// The kernel's checkpoints (trainer/checkpoints.py): `<dir>/checkpoint-<step>/`, complete only once
// it holds the marker file, which the kernel writes after fsyncing everything else. A directory
// without the marker is what a kill during a save leaves behind: never resumed from.

export const CHECKPOINT_MARKER = 'embedflow-checkpoint.json';
const DIR_RE = /^checkpoint-(\d+)$/;

export interface Checkpoint {
  step: number;
  path: string;
}

async function checkpointDirs(dir: string): Promise<Array<Checkpoint & { complete: boolean }>> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: Array<Checkpoint & { complete: boolean }> = [];
  for (const name of names) {
    const m = DIR_RE.exec(name);
    if (!m) continue;
    const path = join(dir, name);
    out.push({ step: Number(m[1]), path, complete: await markerSays(path, Number(m[1])) });
  }
  return out.sort((a, b) => a.step - b.step);
}

async function markerSays(path: string, step: number): Promise<boolean> {
  try {
    return (JSON.parse(await readFile(join(path, CHECKPOINT_MARKER), 'utf8')) as { step?: unknown }).step === step;
  } catch {
    return false;
  }
}

/** The newest complete checkpoint in `dir`, if any. */
export async function latestCheckpoint(dir: string): Promise<Checkpoint | undefined> {
  const done = (await checkpointDirs(dir)).filter((c) => c.complete);
  const last = done[done.length - 1];
  return last && { step: last.step, path: last.path };
}

/** Delete half-written checkpoints, so a later save of the same step starts from an empty directory. */
export async function removeIncompleteCheckpoints(dir: string): Promise<string[]> {
  const partial = (await checkpointDirs(dir)).filter((c) => !c.complete);
  for (const c of partial) await rm(c.path, { recursive: true, force: true });
  return partial.map((c) => c.path);
}
