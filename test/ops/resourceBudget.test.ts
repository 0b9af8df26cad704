import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, testEnv } from '../support/cli.ts';

// A worker admits a stage only when its declared CPU and memory fit: two CPU-heavy stages on a 2-core
// worker run one after the other, a light stage runs beside them, and a stage bigger than the whole
// memory budget still runs, alone.

const PIPELINE = 'test/fixtures/pipelines/budget.ts';

type Span = { start: number; end: number };
const overlap = (a: Span, b: Span) => a.start < b.end && b.start < a.end;

describe('worker resource budget', () => {
  it('two heavy stages on 2 cores do not overlap; a light one runs beside them; a too-big one runs alone', async () => {
    const base = await testEnv();
    const env = { ...base, EMBEDFLOW_TEST_LOG: join(base.EMBEDFLOW_STORE, 'spans.log'), EMBEDFLOW_WORKER_CPUS: '2', EMBEDFLOW_WORKER_MEMORY: '1GiB' };
    const r = await cli(['run', PIPELINE, '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.stages.map((s: { status: string }) => s.status)).toEqual(['ran', 'ran', 'ran', 'ran']);

    const spans: Record<string, Span> = {};
    for (const line of (await readFile(env.EMBEDFLOW_TEST_LOG, 'utf8')).trim().split('\n')) {
      const [id, what, at] = line.split(' ');
      spans[id!] = { ...spans[id!], [what as 'start' | 'end']: Number(at) } as Span;
    }
    const { heavyA, heavyB, light, huge } = spans as Record<string, Span>;
    expect(overlap(heavyA!, heavyB!), JSON.stringify(spans)).toBe(false);
    expect(overlap(huge!, heavyA!) || overlap(huge!, heavyB!), JSON.stringify(spans)).toBe(false);
    expect(overlap(light!, heavyA!) || overlap(light!, heavyB!) || overlap(light!, huge!), JSON.stringify(spans)).toBe(true);
  });

  it('a malformed EMBEDFLOW_WORKER_MEMORY is a ConfigError naming it', async () => {
    const r = await cli(['run', PIPELINE, '--json'], { ...(await testEnv()), EMBEDFLOW_WORKER_MEMORY: 'lots' });
    expect(r.code).toBe(1);
    expect(r.json?.status ?? 'failed').toBe('failed');
    expect(r.stderr + r.stdout).toMatch(/EMBEDFLOW_WORKER_MEMORY/);
  });
});
