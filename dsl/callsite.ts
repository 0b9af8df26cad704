import { fileURLToPath } from 'node:url';

/** The first module on the call stack that is not one of `skip`: who called a define* function. */
export function callerModule(skip: string[]): string | undefined {
  const skipPaths = new Set(skip.map((s) => (s.startsWith('file://') ? fileURLToPath(s) : s)));
  skipPaths.add(fileURLToPath(import.meta.url));
  for (const line of new Error().stack?.split('\n').slice(1) ?? []) {
    const m = /\(?((?:file:\/\/)?\/[^():]+?\.[cm]?[jt]s):\d+:\d+\)?$/.exec(line.trim());
    if (!m?.[1]) continue;
    const path = m[1].startsWith('file://') ? fileURLToPath(m[1]) : m[1];
    if (!skipPaths.has(path)) return path;
  }
  return undefined;
}
