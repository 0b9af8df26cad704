import { readFile } from 'node:fs/promises';
import { EVAL_SETS } from '../activities/evaluation/metricsJson.ts';
import type { StageState } from '../dsl/plan.ts';
import type { Runtime } from '../workers/runtime.ts';
import { METRICS_FILE } from '../activities/artifactKinds/evaluationArtifact.ts';

// What a finished run leaves for people: the headline metrics, the report and the files it skipped.

/** Headline metrics, the report path and its Markdown summary, from the run's `report` (or `evaluation`) artifact. */
export async function reportOf(rt: Runtime, stages: StageState[]): Promise<{ metrics: Record<string, unknown>; report: string | null; summaryMd: string | null }> {
  let metrics: Record<string, unknown> = {};
  let report: string | null = null;
  let summaryMd: string | null = null;
  for (const s of stages) {
    if (!s.artifact) continue;
    let manifest;
    try {
      manifest = await rt.store.readManifest(s.artifact);
    } catch {
      continue;
    }
    const files = new Set(manifest.files.map((f) => f.path));
    const reader = await rt.store.open(s.artifact).catch(() => undefined);
    if (!reader) continue;
    if (files.has(METRICS_FILE) && (manifest.kind === 'report' || manifest.kind === 'evaluation')) {
      const parsed = JSON.parse(await readFile(reader.file(METRICS_FILE), 'utf8')) as Record<string, unknown>;
      // The summary's `metrics` holds the eval sets only; paired tests, latency and the rest stay in the file.
      metrics = Object.fromEntries(Object.entries(parsed).filter(([k]) => EVAL_SETS.includes(k as (typeof EVAL_SETS)[number])));
    }
    if (files.has('report.html')) report = reader.file('report.html');
    if (manifest.kind === 'report' && files.has('summary.md')) summaryMd = await readFile(reader.file('summary.md'), 'utf8');
  }
  return { metrics, report, summaryMd };
}

/** Files a stage could not use, with the reason (e.g. a scanned PDF without a text layer). */
export async function printSkipped(rt: Runtime, stages: StageState[]): Promise<void> {
  for (const s of stages) {
    if (!s.artifact) continue;
    const manifest = await rt.store.readManifest(s.artifact).catch(() => undefined);
    const skipped = manifest?.meta.skipped;
    if (!Array.isArray(skipped) || skipped.length === 0) continue;
    process.stderr.write(`${s.id}: skipped ${skipped.length} file(s):\n`);
    for (const item of skipped.slice(0, 50) as Array<{ path?: string; reason?: string }>) {
      process.stderr.write(`  ${item.path ?? '?'}: ${item.reason ?? 'unreadable'}\n`);
    }
    if (skipped.length > 50) process.stderr.write(`  ... and ${skipped.length - 50} more (embedflow artifacts show ${s.artifact})\n`);
  }
}
