import type { StageState } from '../pipelines/plan.ts';
import type { PendingStage, RunView } from './runs.ts';

// What a person reads: progress while a run goes, a table at the end, and `status` for on-call.

const ICON: Record<string, string> = {
  pending: '·',
  running: '▶',
  ran: '✔',
  cached: '≡',
  failed: '✘',
  cancelled: '⊘',
  skipped: '-',
};

export function progressText(p: PendingStage['progress']): string {
  if (!p || typeof p.done !== 'number') return '';
  const unit = p.unit ? ` ${p.unit}` : '';
  if (typeof p.total === 'number' && p.total > 0) {
    const pct = Math.min(100, Math.floor((100 * p.done) / p.total));
    const width = 20;
    const filled = Math.round((width * pct) / 100);
    const extra = typeof p.loss === 'number' ? ` loss ${p.loss.toFixed(4)}` : '';
    return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.done}/${p.total}${unit} ${pct}%${extra}`;
  }
  return `${p.done}${unit}`;
}

function statsText(stats: StageState['stats']): string {
  if (!stats) return '';
  return Object.entries(stats)
    .slice(0, 6)
    .map(([k, v]) => `${k}=${typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(3) : v}`)
    .join(' ');
}

/** A span a person reads at a glance: 1.4s, 42s, 14m 5s, 3h 20m. */
export function durationText(seconds: number): string {
  const s = Math.max(0, seconds);
  if (s < 10) return `${s.toFixed(1)}s`;
  if (s < 60) return `${Math.floor(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${Math.floor(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

const secondsBetween = (from: string, to: string | number) => (new Date(to).getTime() - new Date(from).getTime()) / 1000;

function failureText(p: PendingStage): string {
  return p.lastFailureType ? `${p.lastFailureType}: ${p.lastFailure}` : (p.lastFailure ?? '');
}

/** One line per stage. */
export function stageLines(view: Pick<RunView, 'stages' | 'pending'>): string[] {
  const pending = new Map(view.pending.map((p) => [p.stage, p]));
  return view.stages.map((s) => {
    const p = pending.get(s.id);
    const parts = [`${ICON[s.status] ?? '?'} ${s.id.padEnd(18)} ${s.status.padEnd(9)}`];
    if (s.status === 'running' && p) {
      parts.push(progressText(p.progress));
      if (p.attempt > 1) parts.push(`attempt ${p.attempt}${p.lastFailure ? ` (last: ${failureText(p).slice(0, 120)})` : ''}`);
    }
    if (s.status === 'ran' || s.status === 'cached') {
      if (typeof s.seconds === 'number' && s.status === 'ran') parts.push(`${s.seconds.toFixed(1)}s`);
      parts.push(statsText(s.stats));
    }
    if (s.status === 'failed' && s.error) {
      if (s.error.attempt !== undefined) parts.push(`attempt ${s.error.attempt}`);
      parts.push(`${s.error.type}: ${s.error.message}`);
    }
    return parts.filter(Boolean).join('  ');
  });
}

/** Prints progress to stderr: rewrites in place on a terminal, prints changed lines otherwise. */
export class ProgressPrinter {
  private last = new Map<string, string>();
  private drawn = 0;
  private readonly tty = process.stderr.isTTY === true;

  update(view: RunView): void {
    const lines = stageLines(view);
    if (this.tty) {
      if (this.drawn) process.stderr.write(`\x1b[${this.drawn}A`);
      for (const l of lines) process.stderr.write(`\x1b[2K${l}\n`);
      this.drawn = lines.length;
      return;
    }
    view.stages.forEach((s, i) => {
      const key = `${s.status}`;
      if (this.last.get(s.id) !== key) {
        this.last.set(s.id, key);
        if (s.status !== 'pending') process.stderr.write(`${lines[i]}\n`);
      }
    });
  }
}

export function onCallReport(view: RunView, uiUrl: string | undefined, namespace: string): string {
  const lines = [`run ${view.runId}  (${view.pipeline ?? '?'})  ${view.status.toUpperCase()}`];
  if (view.startTime) lines.push(`started ${view.startTime}${view.closeTime ? `, closed ${view.closeTime}` : ''}`);
  lines.push(...stageLines(view).map((l) => `  ${l}`));
  for (const p of view.pending) {
    if (p.attempt > 1 || p.lastFailure) {
      // The stage's dispatch time is its first attempt's start; the pending activity's own time moves with each retry.
      const first = view.stages.find((s) => s.id === p.stage)?.startedAt ?? p.scheduledAt;
      const since = first ? `, retrying for ${durationText(secondsBetween(first, Date.now()))} (since ${first})` : '';
      lines.push(`  retrying ${p.stage}: attempt ${p.attempt}${since}; last error: ${p.lastFailure ? failureText(p) : '-'}`);
      if (p.lastHeartbeat) lines.push(`    last heartbeat ${p.lastHeartbeat}: ${progressText(p.progress)}`);
    }
  }
  const failed = view.stages.find((s) => s.status === 'failed');
  const e = failed?.error;
  if (failed && e) {
    lines.push(`failed stage: ${failed.id} (${failed.kind}) — ${e.type}: ${e.message}`);
    const span = failed.startedAt && e.failedAt ? durationText(secondsBetween(failed.startedAt, e.failedAt)) : undefined;
    const tried = span === undefined ? '' : (e.attempt ?? 1) > 1 ? `, retried for ${span}` : ` after ${span}`;
    const when = span === undefined ? '' : ` (first attempt started ${failed.startedAt}, failed ${e.failedAt})`;
    lines.push(`  failed${e.attempt === undefined ? '' : ` on attempt ${e.attempt}`}${tried}${when}`);
    lines.push(`  last progress: ${progressText(e.progress) || 'none reported'}`);
  }
  if (view.status === 'failed' || view.status === 'cancelled' || view.status === 'terminated' || view.status === 'timed_out') {
    lines.push(`resume with: embedflow resume ${view.runId}`);
  }
  if (uiUrl) lines.push(`web UI: ${uiUrl}/namespaces/${namespace}/workflows/${encodeURIComponent(view.runId)}`);
  return lines.join('\n');
}
