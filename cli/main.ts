import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { EmbedflowError } from '../core/errors.ts';
import { PROJECT_ROOT } from '../workers/config.ts';
import { cmdCancel, cmdRuns, cmdStatus } from './commands/inspect.ts';
import { cmdKinds } from './commands/kinds.ts';
import { type PlanFlags, cmdResume, cmdRun } from './commands/run.ts';
import { type CreateFlags, cmdScheduleAction, cmdScheduleCreate, cmdScheduleDescribe, cmdScheduleList } from './commands/schedule.ts';
import { cmdArtifactsExport, cmdArtifactsShow, cmdGc, cmdStoreVerify } from './commands/store.ts';
import { cmdSearch } from './commands/search.ts';
import { type ServeFlags, cmdServe } from './commands/serve.ts';
import { type Queue, cmdDevStop, cmdWorker } from './commands/worker.ts';
import { parseMemorySize } from '../engine/resourceBudget.ts';
import { INTERRUPTED_EXIT, RunDetachedError } from './embeddedWorker.ts';
import { RunStillOpenError, STILL_OPEN_EXIT } from './patience.ts';
import { parseProgressInterval } from './progress.ts';
import { OVERLAP, type OverlapName } from './schedules.ts';

// The command table. Parsing, --help, --version and usage errors belong to commander: they never
// open the runtime (no Temporal connection, no dev server). Each action is one call into a module
// under commands/.

/** Usage errors (unknown option, missing argument), as git and the temporal CLI exit on them. */
const USAGE_EXIT = 2;

const ENVIRONMENT_HELP = `
Environment:
  EMBEDFLOW_HOME               state folder (default ./.embedflow)
  EMBEDFLOW_STORE              artifact store: a folder or s3://bucket/prefix (default $EMBEDFLOW_HOME/store)
  EMBEDFLOW_PROGRESS_INTERVAL  progress line interval when stderr is not a terminal (default 30s)
  EMBEDFLOW_WORKER_CPUS, EMBEDFLOW_WORKER_MEMORY
                               the worker's CPU and memory budget (--cpus, --memory win over them)
  TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE,
  TEMPORAL_CONFIG_FILE         a remote cluster instead of the embedded dev server (Temporal's own
                               environment configuration; TEMPORAL_UI_URL for its web UI)
  AWS_ENDPOINT_URL_S3, AWS_*   an S3-compatible store's endpoint and credentials (EMBEDFLOW_S3_PART_SIZE)
  NO_COLOR                     no colour on a terminal`;

const RUN_HELP = `
Examples:
  embedflow run pipelines/quickstart.ts                       the example corpus and its questions
  embedflow run pipelines/quickstart.ts --corpus ./my-docs    your folder (no human eval set unless --eval-questions)
  embedflow run pipelines/domain-embedding.ts --corpus ./docs --set model.epochs=2 --json`;

function version(): string {
  return (JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

function nameEqualsPath(value: string, previous: Array<[string, string]> | undefined): Array<[string, string]> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError('use NAME=PATH, e.g. --input corpus=./docs');
  return [...(previous ?? []), [value.slice(0, eq), value.slice(eq + 1)]];
}

function wholeNumber(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('a whole number ≥ 1');
  return n;
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('a port number, 0 to 65535');
  return n;
}

function milliseconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n > 1000) throw new InvalidArgumentError('milliseconds, 0 to 1000');
  return n;
}

function interval(value: string): number {
  try {
    return parseProgressInterval(value, '--progress-interval');
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message.replace(/^--progress-interval "[^"]*": /, ''));
  }
}

function queue(value: string, previous: Queue[] | undefined): Queue[] {
  if (value !== 'cpu' && value !== 'gpu' && value !== 'workflow') throw new InvalidArgumentError('use cpu, gpu or workflow');
  return [...(previous ?? []), value];
}

function cpus(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('a whole number of cores ≥ 1, e.g. --cpus 2');
  return n;
}

function memory(value: string): number {
  const bytes = parseMemorySize(value);
  if (bytes === undefined) throw new InvalidArgumentError('a size above 0 such as 16GiB or 512MiB, e.g. --memory 16GiB');
  return bytes;
}

/**
 * The worker's CPU and memory budget (engine/resourceBudget.ts). The flags win over
 * EMBEDFLOW_WORKER_CPUS / EMBEDFLOW_WORKER_MEMORY by taking their place before the worker reads them.
 */
function withBudgetOptions(cmd: Command): Command {
  return cmd
    .option('--cpus <n>', "cores this process's worker keeps busy with heavy stages (default: all; EMBEDFLOW_WORKER_CPUS)", cpus)
    .option('--memory <size>', "memory its stages may fill, e.g. 16GiB (default: all of the machine's; EMBEDFLOW_WORKER_MEMORY)", memory)
    .hook('preAction', (c) => {
      const o = c.opts<{ cpus?: number; memory?: number }>();
      if (o.cpus !== undefined) process.env.EMBEDFLOW_WORKER_CPUS = String(o.cpus);
      if (o.memory !== undefined) process.env.EMBEDFLOW_WORKER_MEMORY = String(o.memory);
    });
}

function withPlanOptions(cmd: Command): Command {
  return cmd
    .option('--corpus <dir>', 'the documents (replaces the default corpus, and the defaults paired with it)')
    .option('--eval-questions <file>', 'human-written questions with gold spans (JSONL)')
    .option('--input <name=path>', 'any pipeline input (repeatable)', nameEqualsPath)
    .option('--set <stage.param=value>', 'override a stage parameter; the value is JSON when it parses (repeatable)', collect);
}

function withFollowOptions(cmd: Command): Command {
  return cmd
    .option('--json', 'print the run summary as one JSON line on stdout')
    .option('--progress-interval <duration>', 'progress line interval when stderr is not a terminal (e.g. 30s, 2m)', interval);
}

function buildProgram(argv: string[], done: (code: number) => void): Command {
  const program = new Command('embedflow')
    .description('domain-specific embedding models as durable pipelines')
    .version(version(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => process.stdout.write(s),
      writeErr: (s) => process.stderr.write(s),
      // One line: commander puts its "(Did you mean --corpus?)" on a second one.
      outputError: (s, write) => write(s.replace(/\n(?=\(Did you mean)/, ' ')),
    })
    .addHelpText('after', ENVIRONMENT_HELP);

  withBudgetOptions(withFollowOptions(withPlanOptions(program.command('run').argument('<pipeline>', 'the pipeline file (.ts)'))))
    .description('start a run of a pipeline and follow it to its end')
    .addHelpText('after', RUN_HELP)
    .action(async (file: string, opts: PlanFlags & { json?: boolean; progressInterval?: number }) => done(await cmdRun(file, opts, argv)));

  withBudgetOptions(withFollowOptions(program.command('resume').argument('<runId>', 'a run id (`embedflow runs` lists them)')))
    .description('continue a failed or cancelled run: finished stages are reused, long stages continue from their checkpoints')
    .action(async (runId: string, opts: { json?: boolean; progressInterval?: number }) => done(await cmdResume(runId, opts)));

  program
    .command('status')
    .argument('[runId]', 'a run id (default: the latest run)')
    .description('stages, progress, failures and what to do next')
    .option('--json', 'the run as one JSON line')
    .action(async (runId: string | undefined, opts: { json?: boolean }) => done(await cmdStatus(runId, opts)));

  program
    .command('runs')
    .description('list runs, newest first')
    .option('--json', 'the list as one JSON line')
    .option('--limit <n>', 'at most this many', wholeNumber, 50)
    .action(async (opts: { json?: boolean; limit: number }) => done(await cmdRuns(opts)));

  program
    .command('cancel')
    .argument('<runId>', 'a run id')
    .description('cancel a run (its finished stages stay in the store)')
    .action(async (runId: string) => done(await cmdCancel(runId)));

  const artifacts = program.command('artifacts').description('read artifacts in the store');
  artifacts
    .command('show')
    .argument('<digest>', 'an artifact digest')
    .description('an artifact’s manifest and lineage')
    .option('--json', 'manifest and lineage as one JSON line')
    .action(async (digest: string, opts: { json?: boolean }) => done(await cmdArtifactsShow(digest, opts)));
  artifacts
    .command('export')
    .argument('<digest>', 'an artifact digest')
    .argument('<dir>', 'where to copy its files')
    .description('copy an artifact’s files out of the store')
    .action(async (digest: string, dir: string) => done(await cmdArtifactsExport(digest, dir)));

  program
    .command('search')
    .argument('<target>', 'a run id (its base and fine-tuned models side by side) or a model digest')
    .argument('<question>', 'the question, in quotes')
    .description('the chunks a run\'s models rank first for a question')
    .option('--k <n>', 'chunks per model', wholeNumber, 5)
    .option('--json', 'the hits as one JSON line')
    .option('--lexical', 'also BM25 (no model) and the last model fused with it, as the evaluation scores them')
    .action(async (target: string, question: string, opts: { k: number; json?: boolean; lexical?: boolean }) => done(await cmdSearch(target, question, opts)));
  program
    .command('serve')
    .argument('<target>', 'a model digest, or a run id (its fine-tuned model, else its base model)')
    .description('an OpenAI-compatible embeddings endpoint (POST /v1/embeddings, GET /v1/models) until Ctrl-C')
    .option('--port <n>', 'port (0: any free one)', port, 8080)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--name <id>', 'the model id clients send (default: the model.json name)')
    .addOption(new Option('--variant <variant>', 'ONNX graph').choices(['fp32', 'int8']).default('fp32'))
    .option('--batch-window <ms>', 'how long a request waits for others to share a model call', milliseconds, 2)
    .action(async (target: string, opts: ServeFlags) => done(await cmdServe(target, opts)));

  const schedule = program.command('schedule').description('scheduled runs (Temporal Schedules), served by `embedflow worker`');
  withPlanOptions(schedule.command('create').argument('<name>', 'the schedule’s name').argument('<pipeline>', 'the pipeline file (.ts)'))
    .description('run a pipeline on a schedule; its inputs are read afresh at each run')
    .option('--cron <expr>', 'a cron expression')
    .option('--every <duration>', 'an interval, e.g. 24h')
    .addOption(new Option('--overlap <policy>', 'when the previous run is still going').choices(Object.keys(OVERLAP)).default('skip'))
    .option('--catchup-window <duration>', 'how late a missed run may still start', '1h')
    .option('--paused', 'create it paused')
    .action(async (name: string, file: string, opts: CreateFlags & { overlap: OverlapName }) => done(await cmdScheduleCreate(name, file, opts)));
  schedule
    .command('list')
    .description('list schedules')
    .option('--json', 'the list as one JSON line')
    .action(async (opts: { json?: boolean }) => done(await cmdScheduleList(opts)));
  schedule
    .command('describe')
    .argument('<name>', 'a schedule')
    .description('a schedule’s spec, recent and next runs (JSON)')
    .option('--json', 'one JSON line instead of indented JSON')
    .action(async (name: string, opts: { json?: boolean }) => done(await cmdScheduleDescribe(name, opts)));
  for (const [action, what] of [
    ['pause', 'pause a schedule'],
    ['unpause', 'unpause a schedule'],
    ['trigger', 'start a run of a schedule now'],
    ['delete', 'delete a schedule (its runs are kept)'],
  ] as const) {
    schedule
      .command(action)
      .argument('<name>', 'a schedule')
      .description(what)
      .action(async (name: string) => done(await cmdScheduleAction(name, action)));
  }

  program
    .command('gc')
    .description('free artifacts and memo unreachable from the last N runs of each pipeline on this store')
    .option('--keep <n>', 'runs to keep per pipeline', wholeNumber, 3)
    .option('--apply', 'delete (without it, a dry run)')
    .option('--json', 'the report as one JSON line')
    .action(async (opts: { keep: number; apply?: boolean; json?: boolean }) => done(await cmdGc(opts)));

  program
    .command('store')
    .description('the artifact store')
    .command('verify')
    .description('re-hash every artifact; report corrupt or orphaned ones (exit 1 if any)')
    .option('--json', 'the report as one JSON line')
    .action(async (opts: { json?: boolean }) => done(await cmdStoreVerify(opts)));

  withBudgetOptions(program.command('worker'))
    .description('a worker polling task queues of a cluster (TEMPORAL_ADDRESS)')
    .option('--queue <queue>', 'cpu, gpu or workflow (repeatable; default workflow and cpu)', queue)
    .option('--pipeline <file>', 'a pipeline whose own stage kinds this worker runs (repeatable)', collect)
    .option('--concurrency <n>', 'activities at a time per queue', wholeNumber)
    .option('--grace <duration>', 'time running activities get to stop on shutdown', '2s')
    .action(async (opts: { queue?: Queue[]; pipeline?: string[]; concurrency?: number; grace: string }) => done(await cmdWorker(opts)));

  program
    .command('kinds')
    .argument('[name]', 'one kind (default: all)')
    .description('the built-in stage kinds: inputs, output and every parameter with its type, default and meaning')
    .option('--json', 'the reference as one JSON line')
    .action(async (name: string | undefined, opts: { json?: boolean }) => done(await cmdKinds(name, opts)));

  program
    .command('dev')
    .description('the embedded Temporal dev server')
    .command('stop')
    .description('stop the embedded Temporal dev server')
    .action(async () => done(await cmdDevStop()));

  return program;
}

export async function runCli(argv: string[]): Promise<number> {
  let code = 0;
  const program = buildProgram(argv, (c) => (code = c));
  if (argv.length === 0) {
    program.outputHelp();
    return USAGE_EXIT;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    // Commander has already printed its one line (or the help): only the exit code is left.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : USAGE_EXIT;
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
