import { decodeHTML } from 'entities';
import { type DefaultTreeAdapterTypes as T, parse } from 'parse5';
import type { OffsetStep } from './offsets.ts';
import { OffsetStepBuilder } from './offsets.ts';

/**
 * The main text of an HTML page, as the chunker wants it: scripts, styles, navigation, headers,
 * footers, forms and hidden parts dropped; `<main>` (or a lone `<article>`) preferred to the whole
 * body; block elements become line or paragraph breaks; whitespace collapsed as a browser does
 * (dropped between two CJK characters); headings written as Markdown ATX lines (`## Title`) so the
 * chunker finds them the same way in every format. The step maps the HTML source onto that text.
 */
export function extractHtml(source: string): { text: string; title: string; step: OffsetStep } {
  const doc = parse(source, { sourceCodeLocationInfo: true });
  const html = childElements(doc).find((e) => e.tagName === 'html');
  const body = html && childElements(html).find((e) => e.tagName === 'body');
  const out = new Flow(source);
  if (body) {
    const root = mainRoot(body);
    out.block(root, root !== body);
  }
  const { text, step } = out.finish();
  const title = collapse(textOf(findFirst(doc, (e) => e.tagName === 'title'))) || collapse(textOf(findFirst(body, isH1)));
  return { text, title, step };
}

// Never content: code, media, interactive widgets, and the usual page chrome.
const DROP = new Set([
  'script', 'style', 'noscript', 'template', 'svg', 'math', 'iframe', 'object', 'embed', 'canvas', 'video', 'audio',
  'nav', 'aside', 'form', 'button', 'select', 'textarea', 'input', 'dialog', 'menu', 'head',
]);
const DROP_ROLES = new Set(['navigation', 'banner', 'contentinfo', 'complementary', 'search', 'menu', 'menubar', 'dialog']);
const CHROME_NAME = /(?:^|[\s_-])(?:nav|navbar|navigation|menu|breadcrumbs?|sidebar|footer|cookies?|banner|ads?|advert(?:isement)?s?|share|social|skip-link)(?:$|[\s_-])/i;
const PARAGRAPH = new Set([
  'p', 'blockquote', 'pre', 'table', 'ul', 'ol', 'dl', 'figure', 'section', 'article', 'hr', 'header', 'footer', 'main',
  'details', 'address', 'fieldset',
]);
const LINE = new Set(['div', 'li', 'dt', 'dd', 'tr', 'caption', 'figcaption', 'summary', 'legend', 'center']);
const CELL = new Set(['td', 'th']);
const HEADING = /^h([1-6])$/;
const ASCII_WS = /[ \t\n\f\r]+/g;

function isElement(n: T.Node | undefined): n is T.Element {
  return !!n && 'tagName' in n;
}

function childElements(n: T.ParentNode): T.Element[] {
  return n.childNodes.filter(isElement);
}

function attr(e: T.Element, name: string): string | undefined {
  return e.attrs.find((a) => a.name === name)?.value;
}

function isH1(e: T.Element): boolean {
  return e.tagName === 'h1';
}

function findFirst(n: T.ParentNode | undefined, pred: (e: T.Element) => boolean): T.Element | undefined {
  if (!n) return undefined;
  for (const c of childElements(n)) {
    if (pred(c)) return c;
    const found = findFirst(c, pred);
    if (found) return found;
  }
  return undefined;
}

function textOf(n: T.ParentNode | undefined): string {
  if (!n) return '';
  return n.childNodes.map((c) => (c.nodeName === '#text' ? (c as T.TextNode).value : isElement(c) ? textOf(c) : '')).join('');
}

function collapse(s: string): string {
  return s.replace(ASCII_WS, ' ').trim();
}

function mainRoot(body: T.Element): T.Element {
  const main = findFirst(body, (e) => e.tagName === 'main' || attr(e, 'role') === 'main');
  if (main) return main;
  const articles: T.Element[] = [];
  const collect = (n: T.ParentNode): void => {
    for (const c of childElements(n)) {
      if (c.tagName === 'article') articles.push(c);
      else collect(c);
    }
  };
  collect(body);
  return articles.length === 1 ? articles[0]! : body;
}

function dropped(e: T.Element, inContent: boolean): boolean {
  if (DROP.has(e.tagName)) return true;
  if (!inContent && (e.tagName === 'header' || e.tagName === 'footer')) return true;
  if (attr(e, 'hidden') !== undefined || attr(e, 'aria-hidden') === 'true') return true;
  const role = attr(e, 'role');
  if (role && DROP_ROLES.has(role)) return true;
  const names = `${attr(e, 'class') ?? ''} ${attr(e, 'id') ?? ''}`;
  return CHROME_NAME.test(names);
}

// East Asian characters, between which a source line break is no space (CSS Text's segment-break rule).
const CJK = /[\u2E80-\u9FFF\uAC00-\uD7AF\uF900-\uFAFF\uFF00-\uFFEF]|[\uD840-\uD87F][\uDC00-\uDFFF]/;

/**
 * Writes text in document order, collapsing whitespace and placing breaks, while telling the offset
 * builder which source range every piece of output came from.
 */
class Flow {
  private readonly b = new OffsetStepBuilder();
  /** Pending whitespace (source range) to write as one space before the next text, if any. */
  private space: [number, number] | undefined;
  private forcedSpace = false;
  /** Pending break before the next text: 0 none, 1 line, 2 paragraph. */
  private breakLevel = 0;
  private prefix = '';
  private lastChar = '';
  private started = false;
  private pre = 0;
  private heading = 0;

  constructor(private readonly source: string) {}

  block(n: T.ParentNode, inContent: boolean): void {
    for (const c of n.childNodes) {
      if (c.nodeName === '#text') this.text(c as T.TextNode);
      else if (isElement(c)) this.element(c, inContent);
    }
  }

  private element(e: T.Element, inContent: boolean): void {
    if (dropped(e, inContent)) return;
    const tag = e.tagName;
    const content = inContent || tag === 'article' || tag === 'main';
    const h = HEADING.exec(tag);
    if (tag === 'br') {
      if (this.heading) this.forcedSpace = true;
      else this.brk(1);
      return;
    }
    if (h) {
      this.brk(2);
      this.prefix = `${'#'.repeat(Number(h[1]))} `;
      this.heading++;
      this.block(e, content);
      this.heading--;
      this.prefix = '';
      this.brk(2);
      return;
    }
    const level = PARAGRAPH.has(tag) ? 2 : LINE.has(tag) ? 1 : 0;
    if (level) this.brk(level);
    if (CELL.has(tag) && this.started) this.forcedSpace = true;
    if (tag === 'pre') this.pre++;
    this.block(e, content);
    if (tag === 'pre') this.pre--;
    if (level) this.brk(level);
  }

  private brk(level: number): void {
    if (this.heading) {
      this.forcedSpace = true;
      return;
    }
    this.breakLevel = Math.max(this.breakLevel, level);
    this.space = undefined;
    this.forcedSpace = false;
  }

  private text(node: T.TextNode): void {
    const loc = node.sourceCodeLocation;
    if (!loc) return;
    for (const [start, end, value] of sourcePieces(this.source, loc.startOffset, loc.endOffset, node.value)) {
      if (this.pre && !this.heading) {
        this.write(start, end, value);
        continue;
      }
      // Split into whitespace and words; a piece that is an entity (value differs in length) stays whole.
      if (end - start !== value.length) {
        if (value.trim() === '') this.pendSpace(start, end);
        else this.write(start, end, value);
        continue;
      }
      let pos = 0;
      for (const m of value.matchAll(ASCII_WS)) {
        if (m.index > pos) this.write(start + pos, start + m.index, value.slice(pos, m.index));
        this.pendSpace(start + m.index, start + m.index + m[0].length);
        pos = m.index + m[0].length;
      }
      if (pos < value.length) this.write(start + pos, end, value.slice(pos));
    }
  }

  private pendSpace(start: number, end: number): void {
    if (!this.space) this.space = [start, end];
    else this.space[1] = end;
  }

  private write(start: number, end: number, value: string): void {
    if (this.started && this.breakLevel) {
      this.b.insert(this.breakLevel === 2 ? '\n\n' : '\n');
    } else if (this.started && this.forcedSpace) {
      this.b.insert(' ');
    } else if (this.started && this.space) {
      const joinCjk = CJK.test(this.lastChar) && CJK.test(String.fromCodePoint(value.codePointAt(0) ?? 32));
      if (!joinCjk) this.piece(this.space[0], this.space[1], ' ');
    }
    this.space = undefined;
    this.forcedSpace = false;
    this.breakLevel = 0;
    if (this.prefix) {
      this.b.insert(this.prefix);
      this.prefix = '';
    }
    this.piece(start, end, value);
    this.lastChar = lastCodePoint(value);
    this.started = true;
  }

  private piece(start: number, end: number, value: string): void {
    // Out of source order (the parser moved it, e.g. text fostered out of a table): no source span.
    if (start < this.b.rawOffset) this.b.insert(value);
    else this.b.emit(start, end, value);
  }

  finish(): { text: string; step: OffsetStep } {
    return this.b.finish(this.source.length);
  }
}

function lastCodePoint(s: string): string {
  const c = s.charCodeAt(s.length - 1);
  return c >= 0xdc00 && c <= 0xdfff ? s.slice(-2) : s.slice(-1);
}

const ENTITY = /&(?:#\d+;?|#[xX][0-9a-fA-F]+;?|[A-Za-z][A-Za-z0-9]*;?)|\r\n?/g;

/**
 * A text node's value split into pieces tied to its source: literal runs map char for char, each
 * character reference (and each CR/CRLF the parser turned into LF) is one atomic piece. If the pieces
 * do not add up to what the parser decoded, the whole node is one atomic piece.
 */
function sourcePieces(source: string, start: number, end: number, value: string): Array<[number, number, string]> {
  const raw = source.slice(start, end);
  const pieces: Array<[number, number, string]> = [];
  let pos = 0;
  for (const m of raw.matchAll(ENTITY)) {
    if (m.index > pos) pieces.push([start + pos, start + m.index, raw.slice(pos, m.index)]);
    const decoded = m[0].startsWith('\r') ? '\n' : decodeHTML(m[0]);
    pieces.push([start + m.index, start + m.index + m[0].length, decoded]);
    pos = m.index + m[0].length;
  }
  if (pos < raw.length) pieces.push([start + pos, end, raw.slice(pos)]);
  return pieces.map((p) => p[2]).join('') === value ? pieces : [[start, end, value]];
}
