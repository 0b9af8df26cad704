import { ConfigError } from '../core/errors.ts';

/**
 * The part of TOML that Temporal's client configuration file uses: `[dotted.table]` headers, `key =
 * value` with bare, quoted or dotted keys, strings (basic, literal, and both multi-line forms, which
 * PEM data needs), booleans, integers, and comments. No TOML parser ships with the project's
 * dependencies; anything outside this subset is refused with its line rather than misread.
 */
export type TomlTable = { [key: string]: TomlValue };
export type TomlValue = string | number | boolean | TomlTable;

export function parseToml(text: string, file: string): TomlTable {
  const root: TomlTable = {};
  let current = root;
  let pos = 0;
  let line = 1;
  const fail = (what: string): never => {
    throw new ConfigError(`${file}:${line}: ${what}`, {
      hint: 'fix the file (TOML as `temporal config set` writes it), or point TEMPORAL_CONFIG_FILE elsewhere',
    });
  };
  const peek = (s: string) => text.startsWith(s, pos);
  const skipBlank = () => {
    while (pos < text.length && (text[pos] === ' ' || text[pos] === '\t')) pos++;
  };
  const endOfLine = () => {
    skipBlank();
    if (peek('#')) while (pos < text.length && text[pos] !== '\n') pos++;
    if (peek('\r\n')) pos += 2;
    else if (peek('\n')) pos++;
    else if (pos < text.length) fail(`unexpected ${JSON.stringify(text[pos])} after a value`);
    line++;
  };

  const basicString = (multi: boolean): string => {
    let out = '';
    const close = multi ? '"""' : '"';
    if (multi && peek('\n')) (pos++, line++);
    for (;;) {
      if (pos >= text.length) fail('a string is never closed');
      if (peek(close)) {
        pos += close.length;
        return out;
      }
      const c = text[pos++]!;
      if (c === '\n') {
        if (!multi) fail('a newline inside a "string" (use """ for several lines)');
        line++;
      }
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = text[pos++];
      const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', '"': '"', '\\': '\\', b: '\b', f: '\f' };
      if (e !== undefined && e in simple) out += simple[e];
      else if (e === 'u' || e === 'U') {
        const n = e === 'u' ? 4 : 8;
        const hex = text.slice(pos, pos + n);
        if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== n) fail(`a bad \\${e} escape`);
        out += String.fromCodePoint(parseInt(hex, 16));
        pos += n;
      } else if (multi && (e === '\n' || e === ' ' || e === '\r')) {
        // A line-ending backslash: the newline and the blanks after it are dropped.
        pos--;
        while (pos < text.length && /\s/.test(text[pos]!)) if (text[pos++] === '\n') line++;
      } else fail(`an unknown escape \\${e ?? ''}`);
    }
  };

  const literalString = (multi: boolean): string => {
    const close = multi ? "'''" : "'";
    if (multi && peek('\n')) (pos++, line++);
    const end = text.indexOf(close, pos);
    if (end < 0) fail('a string is never closed');
    const s = text.slice(pos, end);
    if (!multi && s.includes('\n')) fail("a newline inside a 'string' (use ''' for several lines)");
    line += s.split('\n').length - 1;
    pos = end + close.length;
    return s;
  };

  const key = (): string[] => {
    const parts: string[] = [];
    for (;;) {
      skipBlank();
      if (peek('"')) (pos++, parts.push(basicString(false)));
      else if (peek("'")) (pos++, parts.push(literalString(false)));
      else {
        const m = /^[A-Za-z0-9_-]+/.exec(text.slice(pos));
        if (!m) fail('a key was expected');
        parts.push(m![0]);
        pos += m![0].length;
      }
      skipBlank();
      if (!peek('.')) return parts;
      pos++;
    }
  };

  const value = (): TomlValue => {
    if (peek('"""')) return (pos += 3), basicString(true);
    if (peek('"')) return pos++, basicString(false);
    if (peek("'''")) return (pos += 3), literalString(true);
    if (peek("'")) return pos++, literalString(false);
    const m = /^(true|false|[+-]?\d[\d_]*)(?=[\s#]|$)/.exec(text.slice(pos));
    if (!m) return fail('a value must be a string, true/false or an integer here (arrays, inline tables, floats and dates are not read)');
    pos += m![0].length;
    return m![1] === 'true' ? true : m![1] === 'false' ? false : Number(m![1]!.replace(/_/g, ''));
  };

  /** The table at `path` under `from`, created as needed; a path through a plain value is an error. */
  const table = (from: TomlTable, path: string[]): TomlTable => {
    let t = from;
    for (const p of path) {
      const next = (t[p] ??= {});
      if (typeof next !== 'object') fail(`${path.join('.')} is both a value and a table`);
      t = next as TomlTable;
    }
    return t;
  };

  while (pos < text.length) {
    skipBlank();
    if (peek('#') || peek('\n') || peek('\r\n')) {
      endOfLine();
      continue;
    }
    if (peek('[[')) fail('arrays of tables ([[...]]) are not used by this file');
    if (peek('[')) {
      pos++;
      const path = key();
      if (!peek(']')) fail('a table header must end with "]"');
      pos++;
      current = table(root, path);
      endOfLine();
      continue;
    }
    const path = key();
    if (!peek('=')) fail('"=" was expected after a key');
    pos++;
    skipBlank();
    const into = table(current, path.slice(0, -1));
    const last = path[path.length - 1]!;
    if (last in into) fail(`${path.join('.')} is set twice`);
    into[last] = value();
    endOfLine();
  }
  return root;
}
