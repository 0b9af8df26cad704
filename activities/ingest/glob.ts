import { isAbsolute, join, sep } from 'node:path';

// A corpus can be a glob (`--corpus 'reports/**/*.pdf'`). Node 20's own matcher is experimental and
// warns on every use, so this is the small subset a shell user expects: `*` and `?` within one path
// segment, `**` as a whole segment for any depth, `[...]` classes and `{a,b}` alternatives.

const META = /[*?[\]{}]/;

/** True when the path names a pattern rather than a file or folder. */
export function isGlob(path: string): boolean {
  return META.test(path);
}

/**
 * The folder to walk (the segments before the first one holding a wildcard) and the pattern for paths
 * relative to it, '/'-separated.
 */
export function splitGlob(path: string): { base: string; pattern: string } {
  const segments = path.split(/[\\/]/);
  const first = segments.findIndex((s) => META.test(s));
  if (first < 0) throw new Error(`not a glob: ${path}`);
  const baseSegments = segments.slice(0, first);
  const base = baseSegments.length === 0 ? '.' : baseSegments.join(sep) || (isAbsolute(path) ? sep : '.');
  return { base: join(base), pattern: segments.slice(first).join('/') };
}

/** A predicate over '/'-separated relative paths. */
export function globMatcher(pattern: string): (relPath: string) => boolean {
  const re = new RegExp(`^${pattern.split('/').map(segmentSource).join('')}$`);
  return (relPath) => re.test(`/${relPath}`);
}

// Each segment compiles to a source that also consumes its leading '/', so `**` can match zero
// segments: `a/**/b` matches `a/b`.
function segmentSource(segment: string): string {
  if (segment === '**') return '(?:/[^/]+)*';
  let out = '/';
  let inAlternatives = false;
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i]!;
    if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else if (c === '[') {
      const close = segment.indexOf(']', i + 1);
      if (close < 0) out += '\\[';
      else {
        const body = segment.slice(i + 1, close).replace(/^!/, '^').replace(/\\/g, '\\\\');
        out += `[${body}]`;
        i = close;
      }
    } else if (c === '{' && !inAlternatives && segment.indexOf('}', i) > 0) {
      out += '(?:';
      inAlternatives = true;
    } else if (c === ',' && inAlternatives) out += '|';
    else if (c === '}' && inAlternatives) {
      out += ')';
      inAlternatives = false;
    } else out += c.replace(/[.+^$()|\\]/g, '\\$&');
  }
  return out;
}
