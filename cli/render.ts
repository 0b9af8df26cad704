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
    if (s.status === 'failed' && s.error) parts.push(`${s.error.type}: ${s.error.message}`);
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
      const since = p.scheduledAt ? ` since ${p.scheduledAt}` : '';
      lines.push(`  retrying ${p.stage}: attempt ${p.attempt}${since}; last error: ${p.lastFailure ? failureText(p) : '-'}`);
      if (p.lastHeartbeat) lines.push(`    last heartbeat ${p.lastHeartbeat}: ${progressText(p.progress)}`);
    }
  }
  const failed = view.stages.find((s) => s.status === 'failed');
  if (failed) lines.push(`failed stage: ${failed.id} (${failed.kind}) — ${failed.error?.type}: ${failed.error?.message}`);
  if (view.status === 'failed' || view.status === 'cancelled' || view.status === 'terminated' || view.status === 'timed_out') {
    lines.push(`resume with: embedflow resume ${view.runId}`);
  }
  if (uiUrl) lines.push(`web UI: ${uiUrl}/namespaces/${namespace}/workflows/${encodeURIComponent(view.runId)}`);
  return lines.join('\n');
}
