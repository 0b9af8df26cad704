import { z } from 'zod';
import { UnknownStageKindError } from '../../core/errors.ts';
import * as builtinKinds from '../../kinds.ts';
import { type StageKind, inputArtifactKind, isOptionalInput } from '../../dsl/stage.ts';

// `embedflow kinds [name]`: the built-in stage kinds and their parameters, read from the kinds' own zod
// schemas (z.toJSONSchema), so the reference cannot drift from what a pipeline is validated against.
// docs/KINDS.md is the same reference as Markdown (scripts/kinds-reference.ts writes it).

export interface ParamReference {
  /** Dotted path as `--set <stage>.<path>=` takes it; a variant's own fields carry `when` (e.g. provider "openai"). */
  name: string;
  type: string;
  required: boolean;
  default?: unknown;
  description?: string;
  when?: string;
}

export interface KindReference {
  kind: string;
  description?: string;
  inputs: Array<{ name: string; artifact: string; optional: boolean }>;
  output: string;
  queue: string;
  params: ParamReference[];
}

/** A JSON Schema node as z.toJSONSchema writes it: only the fields the reference reads. */
interface Schema {
  type?: string;
  const?: unknown;
  enum?: unknown[];
  oneOf?: Schema[];
  anyOf?: Schema[];
  items?: Schema;
  properties?: Record<string, Schema>;
  required?: string[];
  default?: unknown;
  description?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  $ref?: string;
}

export function kindReferences(): KindReference[] {
  return Object.values(builtinKinds as Record<string, StageKind>)
    .map(describeKind)
    .sort((a, b) => a.kind.localeCompare(b.kind));
}

export function describeKind(kind: StageKind): KindReference {
  // io 'input': what a pipeline writes, so parameters with defaults are optional.
  const schema = z.toJSONSchema(kind.params, { io: 'input', unrepresentable: 'any' }) as Schema;
  return {
    kind: kind.kind,
    ...(kind.description !== undefined && { description: kind.description }),
    inputs: Object.entries(kind.inputs).map(([name, k]) => ({ name, artifact: inputArtifactKind(k), optional: isOptionalInput(k) })),
    output: kind.output,
    queue: kind.defaults?.queue ?? 'cpu',
    params: paramRows(schema, ''),
  };
}

function paramRows(schema: Schema, prefix: string, when?: string): ParamReference[] {
  const rows: ParamReference[] = [];
  const required = new Set(schema.required ?? []);
  for (const [key, prop] of Object.entries(schema.properties ?? {})) {
    const name = `${prefix}${key}`;
    rows.push({
      name,
      type: typeText(prop),
      required: required.has(key),
      ...(prop.default !== undefined && { default: prop.default }),
      ...(prop.description !== undefined && { description: prop.description }),
      ...(when !== undefined && { when }),
    });
    if (prop.properties) rows.push(...paramRows(prop, `${name}.`, when));
    for (const variant of prop.oneOf ?? prop.anyOf ?? []) {
      const tag = discriminator(variant);
      if (variant.properties && tag) rows.push(...paramRows(withoutKey(variant, tag.key), `${name}.`, `${tag.key} ${JSON.stringify(tag.value)}`));
    }
  }
  return rows;
}

/** The field whose constant tells a union's object variants apart (e.g. an LLM config's `provider`). */
function discriminator(s: Schema): { key: string; value: unknown } | undefined {
  const entry = Object.entries(s.properties ?? {}).find(([, p]) => p.const !== undefined);
  return entry && { key: entry[0], value: entry[1].const };
}

function withoutKey(s: Schema, key: string): Schema {
  const { [key]: _dropped, ...properties } = s.properties ?? {};
  return { ...s, properties };
}

function typeText(s: Schema): string {
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' | ');
  const members = s.oneOf ?? s.anyOf;
  if (members) return members.map(typeText).join(' | ');
  switch (s.type) {
    case 'array': {
      const item = s.items ? typeText(s.items) : 'any';
      return item.includes(' ') ? `(${item})[]` : `${item}[]`;
    }
    case 'object': {
      const tag = discriminator(s);
      return tag ? `{ ${tag.key}: ${JSON.stringify(tag.value)}, … }` : 'object';
    }
    case 'integer':
    case 'number':
      return `${s.type}${range(s)}`;
    case undefined:
      return s.$ref ? 'JSON value' : 'any';
    default:
      return s.type;
  }
}

function range(s: Schema): string {
  // Zod writes the safe-integer limits for .int(): not bounds anyone set.
  const lo = s.minimum !== undefined && s.minimum > Number.MIN_SAFE_INTEGER ? `≥ ${s.minimum}` : s.exclusiveMinimum !== undefined ? `> ${s.exclusiveMinimum}` : '';
  const hi = s.maximum !== undefined && s.maximum < Number.MAX_SAFE_INTEGER ? `≤ ${s.maximum}` : s.exclusiveMaximum !== undefined ? `< ${s.exclusiveMaximum}` : '';
  const parts = [lo, hi].filter(Boolean);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

function selected(name: string | undefined): KindReference[] {
  const all = kindReferences();
  if (name === undefined) return all;
  const one = all.find((k) => k.kind === name);
  if (!one) {
    throw new UnknownStageKindError(`no built-in stage kind "${name}"`, {
      hint: `one of: ${all.map((k) => k.kind).join(', ')}`,
    });
  }
  return [one];
}

export async function cmdKinds(name: string | undefined, opts: { json?: boolean }): Promise<number> {
  const kinds = selected(name);
  process.stdout.write(opts.json ? `${JSON.stringify(name === undefined ? kinds : kinds[0])}\n` : kinds.map(kindText).join('\n'));
  return 0;
}

const signature = (k: KindReference) =>
  `(${k.inputs.map((i) => `${i.name}: ${i.artifact}${i.optional ? '?' : ''}`).join(', ')}) → ${k.output}`;

function kindText(k: KindReference): string {
  const lines = [`${k.kind} ${signature(k)}   [${k.queue} queue]`];
  if (k.description) lines.push(`  ${k.description}`);
  for (const p of k.params) {
    const dflt = p.default !== undefined ? ` = ${JSON.stringify(p.default)}` : p.required ? ' (required)' : '';
    const when = p.when ? ` [${p.when}]` : '';
    lines.push(`  ${p.name}: ${p.type}${dflt}${when}`);
    if (p.description) lines.push(`      ${p.description}`);
  }
  return `${lines.join('\n')}\n`;
}

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** docs/KINDS.md: the same reference as Markdown. */
export function kindsMarkdown(): string {
  const out = [
    '# Built-in stage kinds',
    '',
    '<!-- Generated by `node --import tsx scripts/kinds-reference.ts` from the kinds\' zod schemas; do not edit by hand. -->',
    '',
    "Import them in a pipeline file with `import { ingest, chunk, train } from 'embedflow/kinds'`; set a",
    'parameter in the file (`params`) or per run (`--set <stage id>.<parameter>=<value>`). `embedflow kinds',
    '[name] [--json]` prints the same.',
    '',
  ];
  for (const k of kindReferences()) {
    out.push(`## ${k.kind}`, '', `\`${signature(k)}\`, ${k.queue} queue.${k.description ? ` ${k.description}.` : ''}`, '');
    if (k.params.length === 0) {
      out.push('No parameters.', '');
      continue;
    }
    out.push('| parameter | type | default | description |', '|---|---|---|---|');
    for (const p of k.params) {
      const dflt = p.default !== undefined ? `\`${JSON.stringify(p.default)}\`` : p.required ? 'required' : '';
      const desc = [p.when && `(${p.when})`, p.description].filter(Boolean).join(' ');
      out.push(`| \`${p.name}\` | ${cell(p.type)} | ${cell(dflt)} | ${cell(desc)} |`);
    }
    out.push('');
  }
  return out.join('\n');
}
