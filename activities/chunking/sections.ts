/** A run of a document under one heading path; chunks never cross from one section into another. */
export interface Section {
  start: number;
  end: number;
  /** Heading path, outermost first. */
  headings: string[];
}

const ATX = /^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/;
const FENCE = /^ {0,3}(`{3,}|~{3,})/;

/**
 * Cut a text at its Markdown ATX headings (`#` … `######`; HTML headings arrive written that way),
 * ignoring lines inside fenced code blocks. Each section starts at its heading line. Text without
 * headings (plain text, PDF) is one section.
 */
export function splitSections(text: string, withHeadings: boolean): Section[] {
  if (!withHeadings) return [{ start: 0, end: text.length, headings: [] }];
  const sections: Section[] = [];
  const stack: Array<{ level: number; title: string }> = [];
  let current: Section = { start: 0, end: text.length, headings: [] };
  let fence: string | undefined;
  let pos = 0;
  while (pos < text.length) {
    const nl = text.indexOf('\n', pos);
    const lineEnd = nl === -1 ? text.length : nl;
    const line = text.slice(pos, lineEnd).replace(/\r$/, '');
    const f = FENCE.exec(line);
    if (f) {
      const marker = f[1]!;
      if (fence === undefined) fence = marker;
      else if (marker[0] === fence[0] && marker.length >= fence.length) fence = undefined;
    } else if (fence === undefined) {
      const h = ATX.exec(line);
      if (h) {
        const level = h[1]!.length;
        while (stack.length && stack[stack.length - 1]!.level >= level) stack.pop();
        stack.push({ level, title: h[2]!.trim() });
        if (pos > current.start) {
          current.end = pos;
          sections.push(current);
        }
        current = { start: pos, end: text.length, headings: stack.map((s) => s.title) };
      }
    }
    pos = lineEnd + 1;
  }
  sections.push(current);
  return sections;
}
