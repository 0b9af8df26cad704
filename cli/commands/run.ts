import { fixedByNewRun } from '../../core/errors.ts';
import { relative } from 'node:path';
import { buildPlan, type DroppedDefault, parseOverride } from '../../dsl/dsl.ts';
import { loadPipeline } from '../../dsl/load.ts';
import type { Plan, StageState } from '../../dsl/plan.ts';
import { type Config, taskQueues } from '../../workers/config.ts';
import type { Runtime } from '../../workers/runtime.ts';
import { withWorkers } from '../embeddedWorker.ts';
import { inputFlag, nextStepLines, runCommandOf, shellCommand } from '../nextStep.ts';
import { ProgressPrinter, progressIntervalMs } from '../progress.ts';
import { type RunOutcome, describeRun, followRun, planOfRun, runIdFor, snapshotPlanInputs, startRun } from '../runs.ts';
import { cliConfig, withRuntime } from '../runtime.ts';
import { printSkipped, reportOf } from '../summary.ts';

// `run` and `resume`: start (or continue) a run, follow it with progress, and end with its verdict.

/** The options that shape a plan, shared by `run` and `schedule create`. */
export interface PlanFlags {
  corpus?: string;
  evalQuestions?: string;
  /** NAME=PATH pairs, split by the option parser. */
  input?: Array<[string, string]>;
  set?: string[];
}

export interface FollowFlags {
  json?: boolean;
  /** Milliseconds, parsed by the option parser. */
  progressInterval?: number;
}

/** The --json summary: the last line of stdout. */
interface JsonSummary {
  runId: string;
  status: RunOutcome['status'];
  stages: Array<{ id: string; kind: string; status: string; artifact: string | null; seconds: number | null; stats: Record<string, unknown> }>;
  metrics: Record<string, unknown>;
  report: string | null;
  error?: RunOutcome['error'];
}

/** Said once, when the run starts: an input left out because its default belongs with a default the run replaced. */
function droppedDefaultText(d: DroppedDefault): string {
  const what = d.description ?? `input "${d.input}"`;
  const flag = inputFlag(d.input, 'PATH').join(' ');
  return `note: no ${what}: its default (${relative(process.cwd(), d.default)}) belongs with the default ${d.pairedWith}, which this run replaces; add ${flag} to use one\n`;
}

/** The plan for a pipeline file and the run options. */
export async function planFromFlags(file: string, flags: PlanFlags, cfg: Config): Promise<Plan> {
  const pipeline = await loadPipeline(file);
  const inputs: Record<string, string> = Object.fromEntries(flags.input ?? []);
  if (flags.corpus) inputs.corpus = flags.corpus;
  if (flags.evalQuestions) inputs.evalQuestions = flags.evalQuestions;
  return buildPlan(pipeline, {
    overrides: (flags.set ?? []).map(parseOverride),
    inputs,
    taskQueues: taskQueues(cfg),
    onDroppedDefault: (d) => process.stderr.write(droppedDefaultText(d)),
  });
}

export async function cmdRun(file: string, flags: PlanFlags & FollowFlags, argv: string[]): Promise<number> {
  const cfg = await cliConfig();
  const plan = await planFromFlags(file, flags, cfg);
  return withRuntime(async (rt) => {
    const snapped = await snapshotPlanInputs(rt, plan);
    // The same words start the corrected run once the user has fixed what the error names.
    return execute(rt, snapped, runIdFor(snapped), flags, async () => shellCommand(['embedflow', ...argv]));
  }, cfg);
}

export async function cmdResume(runId: string, flags: FollowFlags): Promise<number> {
  return withRuntime(async (rt) => {
    const view = await describeRun(rt, runId);
    const plan = await planOfRun(rt, runId);
    const startCommand = () => runCommandOf(plan, rt.store);
    if (view.status === 'completed') {
      process.stderr.write(`run ${runId} already completed\n`);
      return finish(rt, runId, { status: 'completed', stages: view.stages }, flags, startCommand);
    }
    if (view.status === 'running') {
      // Still open on the server (its worker died): serve it and follow it.
      return withWorkers(rt, [plan.file], runId, async () => {
        process.stderr.write(`run ${runId} is still open; continuing it\n`);
        return follow(rt, runId, flags, startCommand);
      });
    }
    // Failed or cancelled: a new execution of the same plan. Finished stages are cache hits, a long
    // stage continues from the checkpoints in its work directory.
    return execute(rt, plan, runId, flags, startCommand);
  });
}

async function execute(rt: Runtime, plan: Plan, runId: string, flags: FollowFlags, startCommand: () => Promise<string>): Promise<number> {
  return withWorkers(rt, [plan.file], runId, async () => {
    await startRun(rt, plan, runId);
    process.stderr.write(`run ${runId}${rt.uiUrl ? `  (web UI: ${rt.uiUrl}/namespaces/${rt.namespace}/workflows/${runId})` : ''}\n`);
    return follow(rt, runId, flags, startCommand);
  });
}

async function follow(rt: Runtime, runId: string, flags: FollowFlags, startCommand: () => Promise<string>): Promise<number> {
  const printer = new ProgressPrinter({ intervalMs: progressIntervalMs(flags.progressInterval) });
  const outcome = await followRun(rt, runId, (v) => printer.update(v));
  printer.update({ ...(await describeRun(rt, runId)), pending: [] });
  return finish(rt, runId, outcome, flags, startCommand);
}

async function finish(rt: Runtime, runId: string, outcome: RunOutcome, flags: FollowFlags, startCommand: () => Promise<string>): Promise<number> {
  const json = flags.json ?? false;
  const { metrics, report, summaryMd } = await reportOf(rt, outcome.stages);
  await printSkipped(rt, outcome.stages);
  const ran = outcome.stages.filter((s) => s.status === 'ran').length;
  const cached = outcome.stages.filter((s) => s.status === 'cached').length;
  process.stderr.write(`\n${outcome.status.toUpperCase()}: ${ran} stage(s) ran, ${cached} cached\n`);
  if (outcome.error) {
    const command = fixedByNewRun(outcome.error.type) ? await startCommand() : undefined;
    process.stderr.write(`${outcome.error.type}: ${outcome.error.message}\n${nextStepLines(runId, outcome.error.type, command).join('\n')}\n`);
  }
  if (report) process.stderr.write(`report: ${report}\n`);
  // The verdict for people, on stdout. Not with --json: there stdout is the JSON object alone (it carries the metrics).
  if (!json && outcome.status === 'completed' && summaryMd) process.stdout.write(`\n${summaryMd}`);
  if (json) {
    const summary: JsonSummary = {
      runId,
      status: outcome.status,
      stages: outcome.stages.map((s: StageState) => ({
        id: s.id,
        kind: s.kind,
        status: s.status,
        artifact: s.artifact ?? null,
        seconds: s.seconds ?? null,
        stats: s.stats ?? {},
      })),
      metrics,
      report,
      ...(outcome.error ? { error: outcome.error } : {}),
    };
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  }
  return outcome.status === 'completed' ? 0 : 1;
}
