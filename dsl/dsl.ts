import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { PipelineValidationError, StageParamsError } from '../core/errors.ts';
import { callerModule } from './callsite.ts';
import { codeFingerprint } from './fingerprint.ts';
import type { ActivityPlan, Plan, PlannedInput, PlannedStage } from './plan.ts';
import { type ActivitySpec, type StageKind, inputArtifactKind, isOptionalInput } from './stage.ts';

// The pipeline DSL a data engineer writes in a pipeline file:
//
//   export default definePipeline({
//     name: 'quickstart',
//     inputs: { corpus: { type: 'directory', default: '../examples/corpus' } },
//     stages: [
//       stage({ id: 'documents', kind: ingest, inputs: { corpus: 'corpus' } }),
//       stage({ id: 'chunks', kind: chunk, params: { maxTokens: 256 }, inputs: { documents: 'documents' } }),
//     ],
//   });
//
// The wiring is checked when the file loads (unknown ids, cycles, artifact kinds); parameters are
// checked by each kind's zod schema when the plan is built, after `--set` overrides.

/* eslint-disable @typescript-eslint/no-explicit-any -- inference helpers only; nothing `any` escapes */
type AnyKind = StageKind<any, any, any>;
type ParamsOf<K> = K extends StageKind<infer P, any, any> ? z.input<P> : never;
type InputsOf<K> = K extends StageKind<any, infer I, any> ? { [N in keyof I]?: string } : never;
/* eslint-enable @typescript-eslint/no-explicit-any */

export interface StageDecl<K extends AnyKind = AnyKind> extends ActivitySpec {
  /** The stage's name: a noun for what its artifact holds (`chunks`, `queries`, `model`). */
  id: string;
  kind: K;
  params?: ParamsOf<K>;
  /** Input name → the id of the stage (or pipeline input) whose artifact feeds it. */
  inputs?: InputsOf<K>;
}

/** Declare a stage: typed parameters and input names for its kind. */
export function stage<K extends AnyKind>(decl: StageDecl<K>): StageDecl<K> {
  return decl;
}

export const PipelineInputDecl = z
  .object({
    type: z.enum(['directory', 'file']).describe('"directory" (a folder, e.g. a corpus) or "file" (e.g. a JSONL of questions)'),
    default: z.string().min(1).optional().describe('used when the command line gives none; relative to the pipeline file'),
    optional: z.boolean().optional().describe('a run may leave it out: the stages that need it are left out too'),
    pairedWith: z
      .string()
      .optional()
      .describe(
        "another input whose default this default belongs to (questions written for the example corpus): a run that gives that input its own value and this one none leaves this one out, rather than pairing the user's data with the example's",
      ),
    description: z.string().optional().describe('what it holds, in a few words (said when it is left out)'),
  })
  .strict();
export type PipelineInputDecl = z.infer<typeof PipelineInputDecl>;

/** A paired default the run left out because the input it belongs with was given (see `pairedWith`). */
export interface DroppedDefault {
  input: string;
  /** The input the run gave its own value. */
  pairedWith: string;
  /** The default that was not used, absolute. */
  default: string;
  description?: string;
}

export interface PipelineDef {
  name: string;
  description?: string;
  inputs?: Record<string, PipelineInputDecl>;
  stages: StageDecl[];
}

export interface Pipeline {
  readonly embedflowPipeline: true;
  readonly name: string;
  readonly file: string;
  readonly def: PipelineDef;
}

/** Artifact kind of a pipeline input: a snapshot of the files. */
export const FILES_KIND = 'files';

const ID_RE = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

export function definePipeline(def: PipelineDef): Pipeline {
  const file = callerModule([import.meta.url]) ?? '<unknown pipeline file>';
  validateStructure(def, file);
  return { embedflowPipeline: true, name: def.name, file, def };
}

/**
 * A variant of a pipeline: another name, parameter overrides per stage, activity options per stage,
 * input wiring per stage (merged: name only the inputs that change), and stages added (`add`).
 */
export function extendPipeline(
  base: Pipeline,
  change: {
    name: string;
    description?: string;
    inputs?: Record<string, Partial<PipelineInputDecl>>;
    stages?: Record<string, { params?: Record<string, unknown>; inputs?: Record<string, string> } & ActivitySpec>;
    add?: StageDecl[];
  },
): Pipeline {
  const file = callerModule([import.meta.url]) ?? base.file;
  const unknown = Object.keys(change.stages ?? {}).filter((id) => !base.def.stages.some((s) => s.id === id));
  if (unknown.length) {
    throw new PipelineValidationError(`extendPipeline: no stage ${unknown.map((u) => `"${u}"`).join(', ')} in "${base.name}"`, {
      where: file,
      hint: `stages of "${base.name}": ${base.def.stages.map((s) => s.id).join(', ')}`,
    });
  }
  const inputs: Record<string, PipelineInputDecl> = { ...base.def.inputs };
  for (const [name, patch] of Object.entries(change.inputs ?? {})) {
    const prev = inputs[name];
    const type = patch.type ?? prev?.type;
    if (!type) throw new PipelineValidationError(`extendPipeline: new input "${name}" needs a type`, { where: file });
    inputs[name] = { ...prev, ...patch, type };
    // Defaults given by the variant are relative to the variant's file.
    if (patch.default !== undefined) inputs[name].default = resolve(dirname(file), patch.default);
  }
  for (const [name, decl] of Object.entries(base.def.inputs ?? {})) {
    if (decl.default !== undefined && change.inputs?.[name]?.default === undefined) {
      inputs[name] = { ...inputs[name]!, default: resolve(dirname(base.file), decl.default) };
    }
  }
  // Defaults that belong together are replaced together: a variant giving an input its own default
  // drops the base's defaults paired with it, unless it sets those too.
  for (const [name, decl] of Object.entries(inputs)) {
    const partner = decl.pairedWith;
    if (partner !== undefined && change.inputs?.[partner]?.default !== undefined && change.inputs?.[name]?.default === undefined) {
      const { default: _dropped, pairedWith: _unpaired, ...rest } = decl;
      inputs[name] = rest;
    }
  }
  const stages = base.def.stages.map((s) => {
    const patch = change.stages?.[s.id];
    if (!patch) return s;
    const { params, inputs: wiring, ...activity } = patch;
    const merged = { ...s, ...activity, params: deepMerge((s.params ?? {}) as Record<string, unknown>, params ?? {}) };
    return wiring ? { ...merged, inputs: { ...(s.inputs as Record<string, string> | undefined), ...wiring } } : merged;
  });
  const def: PipelineDef = {
    name: change.name,
    description: change.description ?? base.def.description,
    inputs,
    stages: [...stages, ...(change.add ?? [])],
  };
  validateStructure(def, file);
  return { embedflowPipeline: true, name: def.name, file, def };
}

export function isPipeline(value: unknown): value is Pipeline {
  return typeof value === 'object' && value !== null && (value as Pipeline).embedflowPipeline === true;
}

function fail(file: string, message: string, hint?: string, stageId?: string): never {
  throw new PipelineValidationError(message, { where: stageId ? `${file}: stage "${stageId}"` : file, hint });
}

/** Everything that can be checked without running anything: names, wiring, artifact kinds, cycles. */
function validateStructure(def: PipelineDef, file: string): void {
  if (!def || typeof def !== 'object') fail(file, 'definePipeline needs an object { name, stages }');
  if (typeof def.name !== 'string' || !ID_RE.test(def.name)) {
    fail(file, `pipeline name ${JSON.stringify(def.name)} is invalid`, 'use letters, digits, "-" and "_", starting with a letter');
  }
  if (!Array.isArray(def.stages) || def.stages.length === 0) fail(file, 'the pipeline has no stages', 'list them in `stages: [...]`');
  const inputs = def.inputs ?? {};
  for (const [name, decl] of Object.entries(inputs)) {
    if (!ID_RE.test(name)) fail(file, `pipeline input name ${JSON.stringify(name)} is invalid`);
    const parsed = PipelineInputDecl.safeParse(decl);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = issue?.path.length ? `.${issue.path.join('.')}` : '';
      fail(file, `pipeline input "${name}"${field}: ${issue?.message ?? 'invalid'}`, 'declare it as { type: "directory" | "file", default?, optional?, pairedWith?, description? }');
    }
    validatePairing(name, decl, inputs, file);
  }
  const producers = new Map<string, string>(Object.keys(inputs).map((n) => [n, FILES_KIND]));
  const ids = new Set<string>();
  for (const [i, s] of def.stages.entries()) {
    if (!s || typeof s !== 'object') fail(file, `stages[${i}] is not a stage declaration`, 'use stage({ id, kind, ... })');
    if (typeof s.id !== 'string' || !ID_RE.test(s.id)) {
      fail(file, `stages[${i}] has an invalid id ${JSON.stringify(s.id)}`, 'ids use letters, digits, "-" and "_", starting with a letter');
    }
    if (ids.has(s.id)) fail(file, `duplicate stage id "${s.id}"`, 'give each stage its own id', s.id);
    if (inputs[s.id]) fail(file, `stage id "${s.id}" is also a pipeline input name`, 'rename one of them', s.id);
    ids.add(s.id);
    if (!s.kind || typeof s.kind.run !== 'function' || typeof s.kind.kind !== 'string') {
      fail(file, `stage "${s.id}" has no valid kind`, 'set `kind` to a stage kind imported from activities/ or defined with defineStage', s.id);
    }
    producers.set(s.id, s.kind.output);
  }
  findCycle(def, file);
  for (const s of def.stages) {
    const declared = s.kind.inputs as Record<string, string>;
    const wired = (s.inputs ?? {}) as Record<string, string | undefined>;
    for (const name of Object.keys(wired)) {
      if (!(name in declared)) {
        fail(file, `stage "${s.id}" wires unknown input "${name}"`, `kind "${s.kind.kind}" takes: ${Object.keys(declared).join(', ') || 'no inputs'}`, s.id);
      }
    }
    for (const [name, want] of Object.entries(declared)) {
      const source = wired[name];
      if (source === undefined) {
        if (!isOptionalInput(want)) {
          fail(file, `stage "${s.id}": input "${name}" (${want}) is not wired`, `add inputs: { ${name}: '<stage id>' }`, s.id);
        }
        continue;
      }
      const got = producers.get(source);
      if (got === undefined) {
        fail(file, `stage "${s.id}": input "${name}" names unknown stage "${source}"`, `known: ${[...producers.keys()].join(', ')}`, s.id);
      }
      if (got !== inputArtifactKind(want)) {
        fail(
          file,
          `stage "${s.id}": input "${name}" needs a "${inputArtifactKind(want)}" artifact but "${source}" produces "${got}"`,
          'wire it to a stage whose kind produces that artifact',
          s.id,
        );
      }
    }
  }
}

function validatePairing(name: string, decl: PipelineInputDecl, inputs: Record<string, PipelineInputDecl>, file: string): void {
  const partner = decl.pairedWith;
  if (partner === undefined) return;
  const known = Object.keys(inputs).filter((n) => n !== name);
  if (partner === name || !inputs[partner]) {
    fail(file, `pipeline input "${name}" is paired with "${partner}", which is not another input of this pipeline`, `pairedWith names one of: ${known.join(', ') || 'none'}`);
  }
  if (decl.default === undefined) {
    fail(file, `pipeline input "${name}" is paired with "${partner}" but has no default`, `pairedWith ties a default to "${partner}"'s default: give "${name}" a default, or drop pairedWith`);
  }
  if (inputs[partner]!.default === undefined) {
    fail(file, `pipeline input "${name}" is paired with "${partner}", which has no default for it to belong to`, `give "${partner}" a default, or drop pairedWith`);
  }
}

function findCycle(def: PipelineDef, file: string): void {
  const deps = new Map(def.stages.map((s) => [s.id, Object.values((s.inputs ?? {}) as Record<string, string>).filter((d) => d !== undefined)]));
  const state = new Map<string, 'visiting' | 'done'>();
  const path: string[] = [];
  const visit = (id: string): void => {
    if (state.get(id) === 'done' || !deps.has(id)) return;
    if (state.get(id) === 'visiting') {
      const cycle = [...path.slice(path.indexOf(id)), id];
      fail(file, `stages form a cycle: ${cycle.join(' → ')}`, 'a stage cannot depend on its own output, directly or not', id);
    }
    state.set(id, 'visiting');
    path.push(id);
    for (const d of deps.get(id) ?? []) visit(d);
    path.pop();
    state.set(id, 'done');
  };
  for (const s of def.stages) visit(s.id);
}

/** Stages in an order where every stage comes after its inputs. */
function topoOrder(def: PipelineDef): StageDecl[] {
  const byId = new Map(def.stages.map((s) => [s.id, s]));
  const out: StageDecl[] = [];
  const seen = new Set<string>();
  const visit = (s: StageDecl): void => {
    if (seen.has(s.id)) return;
    seen.add(s.id);
    for (const src of Object.values((s.inputs ?? {}) as Record<string, string>)) {
      const dep = byId.get(src);
      if (dep) visit(dep);
    }
    out.push(s);
  };
  def.stages.forEach(visit);
  return out;
}

export interface PlanOptions {
  /** `--set stage.param.sub=value` overrides, already split. */
  overrides?: Array<{ path: string; value: unknown }>;
  /** Pipeline input values (absolute or cwd-relative paths), e.g. { corpus: './docs' }. */
  inputs?: Record<string, string | undefined>;
  taskQueues: Plan['taskQueues'];
  /** Told of each paired default the run leaves out (its partner input was given), so the user hears it. */
  onDroppedDefault?: (d: DroppedDefault) => void;
}

export const DEFAULT_ACTIVITY: ActivityPlan = {
  queue: 'cpu',
  startToCloseTimeout: '24h',
  heartbeatTimeout: '5m',
  retry: { maximumAttempts: 5, initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '2m' },
};

/** Parse `stage.param.sub=value` (value as JSON when it parses, else a string). */
export function parseOverride(text: string): { path: string; value: unknown } {
  const eq = text.indexOf('=');
  if (eq <= 0) {
    throw new StageParamsError(`--set ${JSON.stringify(text)} is not stage.param=value`, { hint: 'e.g. --set chunks.maxTokens=256' });
  }
  const raw = text.slice(eq + 1);
  let value: unknown = raw;
  try {
    value = JSON.parse(raw);
  } catch {
    // A bare word is a string.
  }
  return { path: text.slice(0, eq).trim(), value };
}

/** Resolve overrides, inputs, parameters, activity options and fingerprints into the workflow's plan. */
export async function buildPlan(pipeline: Pipeline, opts: PlanOptions): Promise<Plan> {
  const { def, file } = pipeline;
  const stageParams = new Map(def.stages.map((s) => [s.id, structuredClone((s.params ?? {}) as Record<string, unknown>)]));
  for (const { path, value } of opts.overrides ?? []) {
    const [stageId, ...rest] = path.split('.');
    const params = stageId === undefined ? undefined : stageParams.get(stageId);
    if (!params || rest.length === 0) {
      throw new StageParamsError(`--set ${path}: no stage "${stageId}"`, {
        where: file,
        hint: `use --set <stage>.<param>=<value>; stages: ${def.stages.map((s) => s.id).join(', ')}`,
      });
    }
    setPath(params, rest, value);
  }

  const inputs: PlannedInput[] = [];
  const provided = new Set<string>();
  const declared = def.inputs ?? {};
  const defaultOf = (decl: PipelineInputDecl | undefined) => (decl?.default === undefined ? undefined : resolve(dirname(file), decl.default));
  for (const [name, decl] of Object.entries(declared)) {
    const given = opts.inputs?.[name];
    // A default written for its partner's default (questions about the example corpus) is no use with
    // the user's own data: leave the input out rather than fail on the mismatch stages later.
    const partner = decl.pairedWith;
    const partnerGiven = partner === undefined ? undefined : opts.inputs?.[partner];
    const unpaired = partnerGiven !== undefined && resolve(partnerGiven) !== defaultOf(declared[partner!]);
    const path = given !== undefined ? resolve(given) : unpaired ? undefined : defaultOf(decl);
    if (path === undefined) {
      if (!decl.optional) {
        const why = unpaired ? `: its default belongs with the default "${partner}", and this run gives its own` : '';
        throw new PipelineValidationError(`pipeline input "${name}" has no value${why}`, { where: file, hint: `pass --input ${name}=PATH` });
      }
      if (unpaired && decl.default !== undefined) {
        opts.onDroppedDefault?.({ input: name, pairedWith: partner!, default: defaultOf(decl)!, ...(decl.description ? { description: decl.description } : {}) });
      }
      continue;
    }
    inputs.push({ name, type: decl.type, path });
    provided.add(name);
  }
  for (const name of Object.keys(opts.inputs ?? {})) {
    if (opts.inputs?.[name] !== undefined && !(def.inputs ?? {})[name]) {
      throw new PipelineValidationError(`pipeline "${def.name}" has no input "${name}"`, {
        where: file,
        hint: `its inputs: ${Object.keys(def.inputs ?? {}).join(', ') || 'none'}`,
      });
    }
  }

  const stages: PlannedStage[] = [];
  const present = new Set<string>(provided);
  // A stage that needs an optional pipeline input the run does not give (or a stage dropped for that
  // reason) is left out of the plan: e.g. the human-question branch without --eval-questions.
  const absent = new Set<string>(Object.entries(def.inputs ?? {}).filter(([n, d]) => d.optional && !provided.has(n)).map(([n]) => n));
  for (const s of topoOrder(def)) {
    const requiredSources = Object.entries((s.inputs ?? {}) as Record<string, string | undefined>)
      .filter(([name, src]) => src !== undefined && !isOptionalInput((s.kind.inputs as Record<string, string>)[name] ?? ''))
      .map(([, src]) => src as string);
    if (requiredSources.some((src) => absent.has(src))) {
      absent.add(s.id);
      continue;
    }
    const schema = strictParams(s.kind.params);
    const parsed = schema.safeParse(stageParams.get(s.id));
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = issue && issue.path.length ? `params.${issue.path.join('.')}` : 'params';
      throw new StageParamsError(`${field}: ${issue?.message ?? 'invalid'}`, {
        where: `${file}: stage "${s.id}" (${s.kind.kind})`,
        hint: 'fix the value in the pipeline file or the --set override',
      });
    }
    const wired: Record<string, string> = {};
    for (const [name, source] of Object.entries((s.inputs ?? {}) as Record<string, string | undefined>)) {
      if (source === undefined) continue;
      if (!present.has(source)) {
        const want = (s.kind.inputs as Record<string, string>)[name] ?? '';
        if (isOptionalInput(want)) continue;
        throw new PipelineValidationError(`stage "${s.id}": input "${name}" comes from "${source}", which has no value in this run`, {
          where: file,
          hint: `pass --input ${source}=PATH`,
        });
      }
      wired[name] = source;
    }
    present.add(s.id);
    const kind = s.kind;
    stages.push({
      id: s.id,
      kind: kind.kind,
      output: kind.output,
      params: JSON.parse(JSON.stringify(parsed.data ?? {})) as unknown,
      inputs: wired,
      fingerprint: await codeFingerprint({ module: kind.module, codeFiles: kind.codeFiles, version: kind.version }),
      volatile: kind.volatile ?? false,
      module: kind.module,
      activity: activityPlan(kind.defaults, s),
    });
  }
  return { version: 1, pipeline: def.name, file, inputs, stages, taskQueues: opts.taskQueues };
}

function activityPlan(defaults: ActivitySpec | undefined, decl: ActivitySpec): ActivityPlan {
  return {
    queue: decl.queue ?? defaults?.queue ?? DEFAULT_ACTIVITY.queue,
    startToCloseTimeout: decl.startToCloseTimeout ?? defaults?.startToCloseTimeout ?? DEFAULT_ACTIVITY.startToCloseTimeout,
    heartbeatTimeout: decl.heartbeatTimeout ?? defaults?.heartbeatTimeout ?? DEFAULT_ACTIVITY.heartbeatTimeout,
    retry: { ...DEFAULT_ACTIVITY.retry, ...defaults?.retry, ...decl.retry },
  };
}

/** Object schemas reject unknown keys, so a misspelt parameter is an error, not silently ignored. */
function strictParams(schema: z.ZodType): z.ZodType {
  return schema instanceof z.ZodObject ? schema.strict() : schema;
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let obj = target;
  for (const key of path.slice(0, -1)) {
    const next = obj[key];
    if (next === undefined || next === null || typeof next !== 'object') obj[key] = {};
    obj = obj[key] as Record<string, unknown>;
  }
  obj[path[path.length - 1]!] = value;
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && prev && typeof prev === 'object' && !Array.isArray(prev)
        ? deepMerge(prev as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}
