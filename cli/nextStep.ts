import { relative } from 'node:path';
import { fixedByNewRun } from '../core/errors.ts';
import type { Plan } from '../dsl/plan.ts';
import type { ArtifactStore } from '../artifacts/store.ts';

// What to tell a person after a run that did not complete: resume it, or change something and start
// a corrected run. `resume` replays the run's own inputs and parameters, so it cannot fix them.

/** The lines that end a failed or cancelled run's report. `startCommand` starts the run anew. */
export function nextStepLines(runId: string, errorType: string | undefined, startCommand: string | undefined): string[] {
  // Causes inside the run (core/errors.ts marks them) need a new run; `resume` replays them.
  if (!fixedByNewRun(errorType)) return [`resume with: embedflow resume ${runId}`];
  return [
    `${errorType} comes from the run's own inputs or settings: the same run again fails the same way.`,
    'change what the error names (its "fix:"), then start the corrected run:',
    `  ${startCommand ?? 'embedflow run <pipeline.ts> ...'}`,
  ];
}

/** A command line a shell reads back as the same words. */
export function shellCommand(words: string[]): string {
  return words.map((w) => (/^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replaceAll("'", `'\\''`)}'`)).join(' ');
}

/** `--corpus` and `--eval-questions` are the flags users know; any other input goes through `--input`. */
export function inputFlag(name: string, path: string): string[] {
  if (name === 'corpus') return ['--corpus', path];
  if (name === 'evalQuestions') return ['--eval-questions', path];
  return ['--input', `${name}=${path}`];
}

/**
 * The `embedflow run` command for a recorded plan, with each input at the path it was read from
 * (snapshots keep their source); parameters were set in the file or with --set, which the plan keeps
 * only resolved, so the user adds their own.
 */
export async function runCommandOf(plan: Plan, store: ArtifactStore): Promise<string> {
  const words = ['embedflow', 'run', relative(process.cwd(), plan.file) || plan.file];
  for (const input of plan.inputs) {
    let path = input.path;
    if (!path && input.digest) {
      const source = (await store.readManifest(input.digest).catch(() => undefined))?.meta.source;
      if (typeof source === 'string') path = source;
    }
    if (path) words.push(...inputFlag(input.name, path));
  }
  return `${shellCommand(words)} [--set ...]`;
}
