import { type OverlapName, createSchedule, describeSchedule, listSchedules, scheduleAction } from '../schedules.ts';
import { cliConfig, withRuntime } from '../runtime.ts';
import { type PlanFlags, planFromFlags } from './run.ts';

// `schedule create|list|describe|pause|unpause|trigger|delete`.

export interface CreateFlags extends PlanFlags {
  cron?: string;
  every?: string;
  overlap: OverlapName;
  catchupWindow: string;
  paused?: boolean;
}

export async function cmdScheduleCreate(name: string, file: string, flags: CreateFlags): Promise<number> {
  const cfg = await cliConfig();
  const plan = await planFromFlags(file, flags, cfg);
  return withRuntime(async (rt) => {
    await createSchedule(rt, {
      name,
      plan,
      cron: flags.cron,
      every: flags.every,
      overlap: flags.overlap,
      catchupWindow: flags.catchupWindow,
      paused: flags.paused,
    });
    process.stderr.write(`schedule ${name} created; runs are served by \`embedflow worker\` processes\n`);
    return 0;
  }, cfg);
}

export async function cmdScheduleList(flags: { json?: boolean }): Promise<number> {
  return withRuntime(async (rt) => {
    const schedules = await listSchedules(rt);
    if (flags.json) process.stdout.write(`${JSON.stringify(schedules)}\n`);
    else for (const s of schedules) process.stdout.write(`${s.name.padEnd(24)} ${s.paused ? 'paused ' : 'active '} ${s.spec}  next: ${s.nextRuns[0] ?? '-'}\n`);
    return 0;
  });
}

export async function cmdScheduleDescribe(name: string, flags: { json?: boolean }): Promise<number> {
  return withRuntime(async (rt) => {
    const view = await describeSchedule(rt, name);
    // Without --json too it is JSON, indented for people (scripts have read it so).
    process.stdout.write(`${flags.json ? JSON.stringify(view) : JSON.stringify(view, null, 2)}\n`);
    return 0;
  });
}

export async function cmdScheduleAction(name: string, action: 'pause' | 'unpause' | 'trigger' | 'delete'): Promise<number> {
  return withRuntime(async (rt) => {
    await scheduleAction(rt, name, action);
    process.stderr.write(`schedule ${name}: ${action}\n`);
    return 0;
  });
}
