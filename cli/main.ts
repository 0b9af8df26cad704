import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { EmbedflowError } from '../activities/errors.ts';
import { EVAL_SETS } from '../activities/evaluation/metricsJson.ts';
import { buildPlan, parseOverride } from '../pipelines/dsl.ts';
import { loadPipeline } from '../pipelines/load.ts';
import type { Plan, StageState } from '../pipelines/plan.ts';
import { loadConfig, taskQueues } from '../workers/config.ts';
import { stopDevServer } from '../workers/devServer.ts';
import { connectRuntime, openStore, type Runtime, type RunningWorkers, startWorkers } from '../workers/runtime.ts';
import { type OverlapName, OVERLAP, createSchedule, describeSchedule, listSchedules, scheduleAction } from './schedules.ts';
import { exportArtifact, gc, verifyStore } from './storeOps.ts';
import { ProgressPrinter, onCallReport } from './render.ts';
import { RunStillOpenError, STILL_OPEN_EXIT } from './patience.ts';
import { type RunOutcome, describeRun, followRun, listRuns, planOfRun, runIdFor, snapshotPlanInputs, startRun } from './runs.ts';

const USAGE = `embedflow — domain-specific embedding models as durable pipelines

  embedflow run <pipeline.ts> [--corpus DIR] [--eval-questions FILE] [--input NAME=PATH]
                [--set STAGE.PARAM=VALUE ...] [--json]
  embedflow status [runId] [--json]      stages, progress, failures, how to resume
  embedflow resume <runId> [--json]      continue a failed or cancelled run
  embedflow runs [--json]                list runs
  embedflow cancel <runId>
  embedflow artifacts show <digest>      manifest and lineage
  embedflow artifacts export <digest> <dir>
  embedflow schedule create <name> <pipeline.ts> [--corpus DIR ...] (--cron EXPR | --every DURATION)
                [--overlap skip|buffer-one|allow-all|cancel-other] [--catchup-window 1h]
  embedflow schedule list | describe <name> | pause <name> | unpause <name> | trigger <name> | delete <name>
  embedflow gc [--keep N] [--apply]      free artifacts and memo unreachable from the last N runs of each
                                         pipeline on this store (runs started with this EMBEDFLOW_STORE)
  embedflow store verify                 re-hash every artifact, report corrupt or orphaned ones
  embedflow worker [--queue cpu|gpu|workflow ...] [--pipeline FILE ...] [--concurrency N] [--grace 2s]
  embedflow dev stop                     stop the embedded Temporal dev server

Environment: EMBEDFLOW_HOME (state folder, default ./.embedflow), EMBEDFLOW_STORE,
TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE / TEMPORAL_TLS_* (a remote cluster instead of the embedded one).`;

/** The --json summary: the last line of stdout. */
interface JsonSummary {
  runId: string;
  status: RunOutcome['status'];
  stages: Array<{ id: string; kind: string; status: string; artifact: string | null; seconds: number | null; stats: Record<string, unknown> }>;
  metrics: Record<string, unknown>;
  report: string | null;
  error?: RunOutcome['error'];
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'run':
      return cmdRun(rest);
    case 'resume':
      return cmdResume(rest);
    case 'status':
      return cmdStatus(rest);
    case 'runs':
      return cmdRuns(rest);
    case 'cancel':
      return cmdCancel(rest);
    case 'artifacts':
      return cmdArtifacts(rest);
    case 'worker':
      return cmdWorker(rest);
    case 'schedule':
      return cmdSchedule(rest);
    case 'gc':
      return cmdGc(rest);
    case 'store':
      return cmdStore(rest);
    case 'dev':
      return cmdDev(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`unknown command "${command}"\n\n${USAGE}\n`);
      return 2;
  }
}

function isEmbedded(rt: Runtime): boolean {
  return rt.cfg.temporal === undefined;
}

/** Ctrl-C (or SIGTERM) while the CLI served and followed a run: the run itself stays open. */
export class RunDetachedError extends EmbedflowError {}
const INTERRUPTED_EXIT = 130;

/**
 * In embedded mode the CLI is its own worker for the run's lifetime. Ctrl-C stops that worker (its
 * running stages are cancelled and keep their checkpoints) and returns at once: following a run that
 * nothing serves any more would wait forever. A second Ctrl-C quits without waiting for the stages.
 */
async function withWorkers<T>(rt: Runtime, pipelines: string[], runId: string, fn: () => Promise<T>): Promise<T> {
  if (!isEmbedded(rt)) return fn();
  const workers: RunningWorkers = await startWorkers(rt, { queues: ['workflow', 'cpu', 'gpu'], pipelines });
  let signals = 0;
  const onSignal = () => {
    if (++signals > 1) process.exit(INTERRUPTED_EXIT);
    process.stderr.write('\ninterrupted: stopping the worker in this process (Ctrl-C again to quit at once)\n');
    void workers.shutdown();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const stopped = workers.done.then(
    () => {
      throw new RunDetachedError(`the worker in this process stopped; run ${runId} stays open on the Temporal server, its finished stages kept`, {
        hint: `\`embedflow resume ${runId}\` continues it, \`embedflow status ${runId}\` shows where it is, \`embedflow cancel ${runId}\` ends it`,
      });
    },
    (err: unknown) => {
      throw new RunDetachedError(`the worker in this process failed; run ${runId} stays open on the Temporal server`, {
        hint: `\`embedflow resume ${runId}\` continues it`,
        cause: err,
      });
    },
  );
  // Once the run is followed to its end, the workers stopping is the expected epilogue.
  stopped.catch(() => {});
  try {
    return await Promise.race([fn(), stopped]);
  } catch (err) {
    // Interrupted: whatever following the run threw as the worker went away, the user is told the
    // run is still open and how to go on.
    if (signals > 0 && !(err instanceof RunDetachedError)) throw await stopped.catch((e: unknown) => e);
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await workers.shutdown();
  }
}

const PLAN_OPTIONS = {
  corpus: { type: 'string' },
  'eval-questions': { type: 'string' },
  input: { type: 'string', multiple: true },
  set: { type: 'string', multiple: true },
  json: { type: 'boolean' },
} as const;

/** The plan for a pipeline file and the run options shared by `run` and `schedule create`. */
async function planFromArgs(
  file: string | undefined,
  values: { corpus?: string; 'eval-questions'?: string; input?: string[]; set?: string[] },
  cfg: ReturnType<typeof loadConfig>,
): Promise<Plan> {
  if (!file) throw new EmbedflowError('a pipeline file is needed', { hint: 'e.g. pipelines/quickstart.ts' });
  const pipeline = await loadPipeline(file);
  const inputs: Record<string, string> = {};
  if (values.corpus) inputs.corpus = values.corpus;
  if (values['eval-questions']) inputs.evalQuestions = values['eval-questions'];
  for (const kv of values.input ?? []) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new EmbedflowError(`--input ${kv} is not NAME=PATH`);
    inputs[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return buildPlan(pipeline, { overrides: (values.set ?? []).map(parseOverride), inputs, taskQueues: taskQueues(cfg) });
}

async function cmdRun(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: PLAN_OPTIONS });
  const cfg = loadConfig();
  const plan = await planFromArgs(positionals[0], values, cfg);
  const rt = await connectRuntime(cfg);
  try {
    const snapped = await snapshotPlanInputs(rt, plan);
    return await execute(rt, snapped, runIdFor(snapped), values.json ?? false);
  } finally {
    await rt.close();
  }
}

async function execute(rt: Runtime, plan: Plan, runId: string, json: boolean): Promise<number> {
  return withWorkers(rt, [plan.file], runId, async () => {
    await startRun(rt, plan, runId);
    process.stderr.write(`run ${runId}${rt.uiUrl ? `  (web UI: ${rt.uiUrl}/namespaces/${rt.namespace}/workflows/${runId})` : ''}\n`);
    const printer = new ProgressPrinter();
    const outcome = await followRun(rt, runId, (v) => printer.update(v));
    printer.update({ ...(await describeRun(rt, runId)), pending: [] });
    return finish(rt, runId, outcome, json);
  });
}

async function finish(rt: Runtime, runId: string, outcome: RunOutcome, json: boolean): Promise<number> {
  const { metrics, report, summaryMd } = await reportOf(rt, outcome.stages);
  await printSkipped(rt, outcome.stages);
  const ran = outcome.stages.filter((s) => s.status === 'ran').length;
  const cached = outcome.stages.filter((s) => s.status === 'cached').length;
  process.stderr.write(`\n${outcome.status.toUpperCase()}: ${ran} stage(s) ran, ${cached} cached\n`);
  if (outcome.error) {
    process.stderr.write(`${outcome.error.type}: ${outcome.error.message}\nresume with: embedflow resume ${runId}\n`);
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

/** Headline metrics, the report path and its Markdown summary, from the run's `report` (or `evaluation`) artifact. */
async function reportOf(rt: Runtime, stages: StageState[]): Promise<{ metrics: Record<string, unknown>; report: string | null; summaryMd: string | null }> {
  let metrics: Record<string, unknown> = {};
  let report: string | null = null;
  let summaryMd: string | null = null;
  for (const s of stages) {
    if (!s.artifact) continue;
    let manifest;
    try {
      manifest = await rt.store.readManifest(s.artifact);
    } catch {
      continue;
    }
    const files = new Set(manifest.files.map((f) => f.path));
    const reader = await rt.store.open(s.artifact).catch(() => undefined);
    if (!reader) continue;
    if (files.has('metrics.json') && (manifest.kind === 'report' || manifest.kind === 'evaluation')) {
      const parsed = JSON.parse(await readFile(reader.file('metrics.json'), 'utf8')) as Record<string, unknown>;
      // The summary's `metrics` holds the eval sets only; paired tests, latency and the rest stay in the file.
      metrics = Object.fromEntries(Object.entries(parsed).filter(([k]) => EVAL_SETS.includes(k as (typeof EVAL_SETS)[number])));
    }
    if (files.has('report.html')) report = reader.file('report.html');
    if (manifest.kind === 'report' && files.has('summary.md')) summaryMd = await readFile(reader.file('summary.md'), 'utf8');
  }
  return { metrics, report, summaryMd };
}

/** Files a stage could not use, with the reason (e.g. a scanned PDF without a text layer). */
async function printSkipped(rt: Runtime, stages: StageState[]): Promise<void> {
  for (const s of stages) {
    if (!s.artifact) continue;
    const manifest = await rt.store.readManifest(s.artifact).catch(() => undefined);
    const skipped = manifest?.meta.skipped;
    if (!Array.isArray(skipped) || skipped.length === 0) continue;
    process.stderr.write(`${s.id}: skipped ${skipped.length} file(s):\n`);
    for (const item of skipped.slice(0, 50) as Array<{ path?: string; reason?: string }>) {
      process.stderr.write(`  ${item.path ?? '?'}: ${item.reason ?? 'unreadable'}\n`);
    }
    if (skipped.length > 50) process.stderr.write(`  ... and ${skipped.length - 50} more (embedflow artifacts show ${s.artifact})\n`);
  }
}

async function cmdResume(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
  const runId = positionals[0];
  if (!runId) throw new EmbedflowError('resume needs a run id', { hint: '`embedflow runs` lists them' });
  const rt = await connectRuntime(loadConfig());
  try {
    const view = await describeRun(rt, runId);
    const plan = await planOfRun(rt, runId);
    if (view.status === 'completed') {
      process.stderr.write(`run ${runId} already completed\n`);
      return finish(rt, runId, { status: 'completed', stages: view.stages }, values.json ?? false);
    }
    if (view.status === 'running') {
      // Still open on the server (its worker died): serve it and follow it.
      return await withWorkers(rt, [plan.file], runId, async () => {
        process.stderr.write(`run ${runId} is still open; continuing it\n`);
        const printer = new ProgressPrinter();
        const outcome = await followRun(rt, runId, (v) => printer.update(v));
        return finish(rt, runId, outcome, values.json ?? false);
      });
    }
    // Failed or cancelled: a new execution of the same plan. Finished stages are cache hits, a long
    // stage continues from the checkpoints in its work directory.
    return await execute(rt, plan, runId, values.json ?? false);
  } finally {
    await rt.close();
  }
}

async function cmdStatus(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
  const rt = await connectRuntime(loadConfig());
  try {
    let runId = positionals[0];
    if (!runId) {
      const [latest] = await listRuns(rt, 1);
      if (!latest) {
        process.stderr.write('no runs yet\n');
        return 1;
      }
      runId = latest.runId;
    }
    const view = await describeRun(rt, runId);
    if (values.json) process.stdout.write(`${JSON.stringify(view)}\n`);
    else process.stdout.write(`${onCallReport(view, rt.uiUrl, rt.namespace)}\n`);
    return 0;
  } finally {
    await rt.close();
  }
}

async function cmdRuns(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { json: { type: 'boolean' } } });
  const rt = await connectRuntime(loadConfig());
  try {
    const runs = await listRuns(rt);
    if (values.json) process.stdout.write(`${JSON.stringify(runs)}\n`);
    else for (const r of runs) process.stdout.write(`${r.runId.padEnd(40)} ${r.status.padEnd(10)} ${r.startTime ?? ''}\n`);
    return 0;
  } finally {
    await rt.close();
  }
}

async function cmdCancel(args: string[]): Promise<number> {
  const runId = args[0];
  if (!runId) throw new EmbedflowError('cancel needs a run id');
  const rt = await connectRuntime(loadConfig());
  try {
    await describeRun(rt, runId);
    await rt.client.workflow.getHandle(runId).cancel();
    process.stderr.write(`cancellation requested for ${runId}\n`);
    return 0;
  } finally {
    await rt.close();
  }
}

async function cmdArtifacts(args: string[]): Promise<number> {
  const [sub, digest, dest] = args;
  const store = openStore(loadConfig().storeUrl);
  if (sub === 'export' && digest && dest) {
    const n = await exportArtifact(store, digest, dest);
    process.stderr.write(`exported ${n} file(s) of ${digest} to ${dest}\n`);
    return 0;
  }
  if (sub !== 'show' || !digest) throw new EmbedflowError('usage: embedflow artifacts show <digest> | artifacts export <digest> <dir>');
  const manifest = await store.readManifest(digest);
  const lineage: string[] = [];
  const walk = async (d: string, depth: number): Promise<void> => {
    const m = await store.readManifest(d).catch(() => undefined);
    lineage.push(`${'  '.repeat(depth)}${d.slice(0, 12)} ${m?.kind ?? '(missing)'}${m?.lineage.stageId ? ` ← stage ${m.lineage.stageId} (${m.lineage.stageKind})` : ''}`);
    if (!m || depth > 12) return;
    for (const [name, input] of Object.entries(m.lineage.inputs)) {
      lineage.push(`${'  '.repeat(depth + 1)}${name}:`);
      await walk(input, depth + 2);
    }
  };
  await walk(digest, 0);
  process.stdout.write(`${JSON.stringify(manifest, null, 2)}\n\nlineage:\n${lineage.join('\n')}\n`);
  return 0;
}

async function cmdWorker(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      queue: { type: 'string', multiple: true },
      pipeline: { type: 'string', multiple: true },
      concurrency: { type: 'string' },
      grace: { type: 'string', default: '2s' },
    },
  });
  const queues = (values.queue ?? ['workflow', 'cpu']).map((q) => {
    if (q !== 'cpu' && q !== 'gpu' && q !== 'workflow') throw new EmbedflowError(`--queue ${q}: use cpu, gpu or workflow`);
    return q;
  });
  const rt = await connectRuntime(loadConfig());
  const concurrency = values.concurrency ? Number(values.concurrency) : undefined;
  const workers = await startWorkers(rt, {
    queues,
    pipelines: values.pipeline,
    cpuConcurrency: concurrency,
    gpuConcurrency: concurrency,
    shutdownGraceTime: values.grace,
  });
  process.stderr.write(`worker polling ${queues.join(', ')} on ${rt.address} (store ${rt.store.location})\n`);
  const stop = () => {
    process.stderr.write('shutting down: cancelling running activities so they are retried elsewhere\n');
    void workers.shutdown();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  await workers.done;
  await rt.close();
  return 0;
}

async function cmdSchedule(args: string[]): Promise<number> {
  const [sub, name, ...rest] = args;
  const cfg = loadConfig();
  if (sub === 'create') {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        ...PLAN_OPTIONS,
        cron: { type: 'string' },
        every: { type: 'string' },
        overlap: { type: 'string', default: 'skip' },
        'catchup-window': { type: 'string', default: '1h' },
        paused: { type: 'boolean' },
      },
    });
    if (!name) throw new EmbedflowError('schedule create needs a name and a pipeline file');
    if (!(values.overlap in OVERLAP)) throw new EmbedflowError(`--overlap ${values.overlap}: use ${Object.keys(OVERLAP).join(', ')}`);
    const plan = await planFromArgs(positionals[0], values, cfg);
    const rt = await connectRuntime(cfg);
    try {
      await createSchedule(rt, {
        name,
        plan,
        cron: values.cron,
        every: values.every,
        overlap: values.overlap as OverlapName,
        catchupWindow: values['catchup-window'],
        paused: values.paused,
      });
      process.stderr.write(`schedule ${name} created; runs are served by \`embedflow worker\` processes\n`);
      return 0;
    } finally {
      await rt.close();
    }
  }
  const rt = await connectRuntime(cfg);
  try {
    if (sub === 'list') {
      for (const s of await listSchedules(rt)) {
        process.stdout.write(`${s.name.padEnd(24)} ${s.paused ? 'paused ' : 'active '} ${s.spec}  next: ${s.nextRuns[0] ?? '-'}\n`);
      }
      return 0;
    }
    if (!name) throw new EmbedflowError(`usage: embedflow schedule ${sub ?? '<list|describe|pause|unpause|trigger|delete>'} <name>`);
    if (sub === 'describe') {
      process.stdout.write(`${JSON.stringify(await describeSchedule(rt, name), null, 2)}\n`);
      return 0;
    }
    if (sub === 'pause' || sub === 'unpause' || sub === 'trigger' || sub === 'delete') {
      await scheduleAction(rt, name, sub);
      process.stderr.write(`schedule ${name}: ${sub}\n`);
      return 0;
    }
    throw new EmbedflowError(`unknown schedule command "${sub}"`);
  } finally {
    await rt.close();
  }
}

async function cmdGc(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { keep: { type: 'string', default: '3' }, apply: { type: 'boolean' }, json: { type: 'boolean' } } });
  const keep = Number(values.keep);
  if (!Number.isInteger(keep) || keep < 1) throw new EmbedflowError(`--keep ${values.keep}: a whole number ≥ 1`);
  const rt = await connectRuntime(loadConfig());
  try {
    const report = await gc(rt, { keep, apply: values.apply ?? false });
    if (values.json) process.stdout.write(`${JSON.stringify(report)}\n`);
    const mb = (report.bytes / 1e6).toFixed(1);
    process.stderr.write(
      `${report.applied ? 'freed' : 'would free'} ${mb} MB: ${report.deleteArtifacts.length} artifact(s), ${report.deleteMemo.length} memo namespace(s), ` +
        `${report.staleStaging} stale staging folder(s); keeping ${report.keptArtifacts} artifact(s) of ${report.keptRuns.length} run(s)\n` +
        (report.applied ? '' : 'dry run: add --apply to delete\n'),
    );
    return 0;
  } finally {
    await rt.close();
  }
}

async function cmdStore(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
  if (positionals[0] !== 'verify') throw new EmbedflowError('usage: embedflow store verify [--json]');
  const report = await verifyStore(openStore(loadConfig().storeUrl));
  if (values.json) process.stdout.write(`${JSON.stringify(report)}\n`);
  for (const c of report.corrupt) process.stderr.write(`CORRUPT ${c.digest}: ${c.problems.join('; ')}\n`);
  for (const k of report.danglingCache) process.stderr.write(`DANGLING cache entry ${k}\n`);
  for (const p of report.staleStaging) process.stderr.write(`STALE staging folder ${p}\n`);
  const bad = report.corrupt.length + report.danglingCache.length;
  process.stderr.write(`${report.artifacts} artifact(s) checked, ${report.corrupt.length} corrupt, ${report.danglingCache.length} dangling cache entr(ies)\n`);
  return bad ? 1 : 0;
}

async function cmdDev(args: string[]): Promise<number> {
  if (args[0] !== 'stop') throw new EmbedflowError('usage: embedflow dev stop');
  const cfg = loadConfig();
  const stopped = await stopDevServer(cfg.home);
  process.stderr.write(stopped ? `stopped the dev server of ${join(cfg.home)}\n` : 'no dev server was running\n');
  return 0;
}

export async function runCli(argv: string[]): Promise<number> {
  try {
    return await main(argv);
  } catch (err) {
    if (err instanceof EmbedflowError) {
      process.stderr.write(`${err.describe()}\n`);
      if (err instanceof RunStillOpenError) return STILL_OPEN_EXIT;
      return err instanceof RunDetachedError ? INTERRUPTED_EXIT : 1;
    }
    const e = err as Error;
    process.stderr.write(`error: ${e?.stack ?? String(err)}\n`);
    return 1;
  }
}
