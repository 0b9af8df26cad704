import type { StageState } from '../dsl/plan.ts';
import { nextStepLines } from './nextStep.ts';
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

/** How fast a running stage advances, measured by whoever watches it (the progress printer). */
export interface Pace {
  /** Units of the stage's progress per second. */
  rate: number;
}

export function progressText(p: PendingStage['progress'], pace?: Pace): string {
  if (!p || typeof p.done !== 'number') return '';
  const unit = p.unit ? ` ${p.unit}` : '';
  const parts: string[] = [];
  const hasTotal = typeof p.total === 'number' && p.total > 0;
  if (hasTotal) {
    const total = p.total as number;
    const pct = Math.min(100, Math.floor((100 * p.done) / total));
    const width = 20;
    const filled = Math.round((width * pct) / 100);
    parts.push(`[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.done}/${total}${unit} ${pct}%`);
  } else {
    parts.push(`${p.done}${unit}`);
  }
  if (pace && pace.rate > 0) {
    parts.push(rateText(pace.rate, p.unit ?? 'items'));
    if (hasTotal && (p.total as number) > p.done) parts.push(`ETA ${durationText(((p.total as number) - p.done) / pace.rate)}`);
  }
  if (typeof p.loss === 'number') parts.push(`loss ${p.loss.toFixed(4)}`);
  // What the stage is doing now (e.g. "embedding queries"): a stage with phases restarts its count per phase.
  const phase = typeof p.phase === 'string' ? p.phase : undefined;
  const message = [phase, typeof p.message === 'string' ? p.message : undefined].filter(Boolean).join(': ');
  if (message) parts.push(`— ${message.length > 80 ? `${message.slice(0, 77)}...` : message}`);
  return parts.join(' ');
}

/** 2.5 chunks/s, 12.0 steps/min: per second when at least one a second, else per minute or hour. */
export function rateText(perSecond: number, unit: string): string {
  if (perSecond >= 1) return `${perSecond.toFixed(1)} ${unit}/s`;
  if (perSecond * 60 >= 1) return `${(perSecond * 60).toFixed(1)} ${unit}/min`;
  return `${(perSecond * 3600).toFixed(1)} ${unit}/h`;
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

export interface LineOptions {
  /** Pace per running stage id. */
  paces?: ReadonlyMap<string, Pace>;
  /** Colour the status words (a terminal that wants it; see `colorWanted`). */
  color?: boolean;
  now?: number;
}

const COLOR: Record<string, string> = { running: '36', ran: '32', cached: '32', failed: '31', cancelled: '33' };

/** NO_COLOR (https://no-color.org) set to anything non-empty turns colour off; so does a stream that is not a terminal. */
export function colorWanted(stream: { isTTY?: boolean }, vars: NodeJS.ProcessEnv = process.env): boolean {
  return stream.isTTY === true && !vars.NO_COLOR && vars.TERM !== 'dumb';
}

function paint(text: string, status: string, on: boolean | undefined): string {
  const code = COLOR[status];
  return on && code ? `\x1b[${code}m${text}\x1b[0m` : text;
}

/** One line per stage. */
export function stageLines(view: Pick<RunView, 'stages' | 'pending'>, opts: LineOptions = {}): string[] {
  const pending = new Map(view.pending.map((p) => [p.stage, p]));
  const now = opts.now ?? Date.now();
  return view.stages.map((s) => stageLine(s, pending.get(s.id), opts, now));
}

export function stageLine(s: StageState, p: PendingStage | undefined, opts: LineOptions = {}, now = Date.now()): string {
  const parts = [`${ICON[s.status] ?? '?'} ${s.id.padEnd(18)} ${paint(s.status.padEnd(9), s.status, opts.color)}`];
  if (s.status === 'running') {
    if (s.startedAt) parts.push(durationText(secondsBetween(s.startedAt, now)));
    if (p) {
      parts.push(progressText(p.progress, opts.paces?.get(s.id)));
      if (p.attempt > 1) parts.push(`attempt ${p.attempt}${p.lastFailure ? ` (last: ${failureText(p).slice(0, 120)})` : ''}`);
    }
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
}

/** `status`: where a run is, what failed and how, and what to do next (`startCommand` starts it anew). */
export function onCallReport(view: RunView, uiUrl: string | undefined, namespace: string, startCommand?: string): string {
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
    lines.push(...nextStepLines(view.runId, failed?.error?.type, startCommand));
  }
  if (uiUrl) lines.push(`web UI: ${uiUrl}/namespaces/${namespace}/workflows/${encodeURIComponent(view.runId)}`);
  return lines.join('\n');
}
