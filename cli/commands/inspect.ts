import { fixedByNewRun } from '../../core/errors.ts';
import { runCommandOf } from '../nextStep.ts';
import { onCallReport } from '../render.ts';
import { describeRun, listRuns, planOfRun } from '../runs.ts';
import { withRuntime } from '../runtime.ts';

// Reading runs: `status`, `runs`, and `cancel`.

export async function cmdStatus(runIdArg: string | undefined, flags: { json?: boolean }): Promise<number> {
  return withRuntime(async (rt) => {
    let runId = runIdArg;
    if (!runId) {
      const [latest] = await listRuns(rt, 1);
      if (!latest) {
        process.stderr.write('no runs yet\n');
        return 1;
      }
      runId = latest.runId;
    }
    const view = await describeRun(rt, runId);
    if (flags.json) {
      process.stdout.write(`${JSON.stringify(view)}\n`);
      return 0;
    }
    const failedType = view.stages.find((s) => s.status === 'failed')?.error?.type;
    const startCommand = fixedByNewRun(failedType) ? await runCommandOf(await planOfRun(rt, runId), rt.store).catch(() => undefined) : undefined;
    process.stdout.write(`${onCallReport(view, rt.uiUrl, rt.namespace, startCommand)}\n`);
    return 0;
  });
}

export async function cmdRuns(flags: { json?: boolean; limit: number }): Promise<number> {
  return withRuntime(async (rt) => {
    const runs = await listRuns(rt, flags.limit);
    if (flags.json) process.stdout.write(`${JSON.stringify(runs)}\n`);
    else for (const r of runs) process.stdout.write(`${r.runId.padEnd(40)} ${r.status.padEnd(10)} ${r.startTime ?? ''}\n`);
    return 0;
  });
}

export async function cmdCancel(runId: string): Promise<number> {
  return withRuntime(async (rt) => {
    await describeRun(rt, runId);
    await rt.client.workflow.getHandle(runId).cancel();
    process.stderr.write(`cancellation requested for ${runId}\n`);
    return 0;
  });
}
