import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256 } from '../../artifacts/hash.ts';
import { StageParamsError } from '../../core/errors.ts';
import type { ChatMessage, Language, LlmStyle, Role } from './types.ts';

/**
 * Prompt templates: text files under prompts/<language>/<style>.txt (or the same format given inline
 * as a stage parameter). A template is a list of chat turns; the few-shot turns fix the answer
 * format, the last turn carries {{passage}} and {{count}}. Notes before the first header are dropped.
 */

export type TemplateName = LlmStyle | 'repair';

export const PROMPTS_DIR = join(import.meta.dirname, 'prompts');

/** The built-in template files, relative to activities/ (for the stage kinds' codeFiles). */
export const PROMPT_FILES: string[] = (['ja', 'en'] as const).flatMap((lang) =>
  (['question', 'keyword', 'request', 'repair'] as const).map((name) => `llm/prompts/${lang}/${name}.txt`),
);

export interface Template {
  name: TemplateName;
  /** sha256 of the template text (first 16 hex): recorded with every query, part of the memo key. */
  hash: string;
  turns: ChatMessage[];
}

const HEADER = /^## (system|user|assistant)\s*$/;

export function parseTemplate(name: TemplateName, text: string, where: string): Template {
  const turns: ChatMessage[] = [];
  let current: { role: Role; lines: string[] } | undefined;
  const close = () => {
    if (current) turns.push({ role: current.role, content: current.lines.join('\n').trim() });
  };
  for (const line of text.replace(/\r\n/g, '\n').split('\n')) {
    const m = HEADER.exec(line);
    if (m) {
      close();
      current = { role: m[1] as Role, lines: [] };
    } else if (current) {
      current.lines.push(line);
    }
  }
  close();
  const last = turns.at(-1);
  const problem =
    turns.length === 0
      ? 'it has no "## system", "## user" or "## assistant" section'
      : last?.role !== 'user'
        ? 'its last section must be "## user" (the request)'
        : name !== 'repair' && !last.content.includes('{{passage}}')
          ? 'its last section does not contain {{passage}}'
          : turns.some((t) => t.content === '')
            ? 'it has an empty section'
            : undefined;
  if (problem) {
    throw new StageParamsError(`prompt template "${name}" is not usable: ${problem}`, {
      where,
      hint: 'see activities/llm/prompts/en/question.txt for the format',
    });
  }
  return { name, hash: sha256(text).slice(0, 16), turns };
}

const builtins = new Map<string, Template>();

export function builtinTemplate(language: Language, name: TemplateName): Template {
  const key = `${language}/${name}`;
  let t = builtins.get(key);
  if (!t) {
    const path = join(PROMPTS_DIR, language, `${name}.txt`);
    t = parseTemplate(name, readFileSync(path, 'utf8'), path);
    builtins.set(key, t);
  }
  return t;
}

export type TemplateOverrides = Partial<Record<TemplateName, string>>;

/** The templates a generation uses: built-ins for its language, replaced by any given inline. */
export function templateSet(language: Language, overrides: TemplateOverrides = {}): Record<TemplateName, Template> {
  const pick = (name: TemplateName) => {
    const text = overrides[name];
    return text === undefined ? builtinTemplate(language, name) : parseTemplate(name, text, `params.prompts.${name}`);
  };
  return { question: pick('question'), keyword: pick('keyword'), request: pick('request'), repair: pick('repair') };
}

function fill(text: string, vars: Record<string, string>): string {
  return text.replace(/\{\{(\w+)\}\}/g, (whole, name: string) => vars[name] ?? whole);
}

/** The chat turns for one request. */
export function renderMessages(t: Template, vars: { passage: string; count: number }): ChatMessage[] {
  const v = { passage: vars.passage.trim(), count: String(vars.count) };
  return t.turns.map((turn, i) => (i === t.turns.length - 1 ? { role: turn.role, content: fill(turn.content, v) } : turn));
}

/** The repair conversation: the original turns, the unreadable answer, and the repair request. */
export function repairMessages(original: ChatMessage[], answer: string, repair: Template, count: number): ChatMessage[] {
  return [...original, { role: 'assistant', content: answer }, ...renderMessages(repair, { passage: '', count })];
}

/**
 * The same turns as one plain text for completion-style use of a base (non-chat) model: few-shot
 * blocks separated by blank lines, so the model continues the pattern and a blank line ends its answer.
 */
export function renderCompletion(messages: ChatMessage[]): string {
  let text = '';
  for (const m of messages) {
    // An answer follows its request on the next line; every other turn starts a new block.
    if (text) text += m.role === 'assistant' ? '\n' : '\n\n';
    text += m.content.trim();
  }
  return `${text}\n`;
}

/** Where a completion-style answer ends: the blank line before the next few-shot block. */
export const COMPLETION_STOP = '\n\n';
