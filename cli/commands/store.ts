import type { ArtifactStore } from '../../artifacts/store.ts';
import { cliStore, withRuntime } from '../runtime.ts';
import { exportArtifact, gc, verifyStore } from '../storeOps.ts';

// The store: `artifacts show|export`, `gc`, `store verify`.

/** An artifact and, recursively, the artifacts it was made from. */
interface LineageNode {
  digest: string;
  kind: string | null;
  stageId?: string;
  stageKind?: string;
  inputs: Record<string, LineageNode>;
}

/** Deep enough for any pipeline; bounds the walk should a store hold a lineage loop. */
const MAX_LINEAGE_DEPTH = 12;

async function lineageOf(store: ArtifactStore, digest: string, depth = 0): Promise<LineageNode> {
  const m = await store.readManifest(digest).catch(() => undefined);
  const node: LineageNode = { digest, kind: m?.kind ?? null, inputs: {} };
  if (m?.lineage.stageId) Object.assign(node, { stageId: m.lineage.stageId, stageKind: m.lineage.stageKind });
  if (!m || depth >= MAX_LINEAGE_DEPTH) return node;
  for (const [name, input] of Object.entries(m.lineage.inputs)) node.inputs[name] = await lineageOf(store, input, depth + 1);
  return node;
}

function lineageLines(node: LineageNode, depth = 0): string[] {
  const pad = '  '.repeat(depth);
  const lines = [`${pad}${node.digest.slice(0, 12)} ${node.kind ?? '(missing)'}${node.stageId ? ` ← stage ${node.stageId} (${node.stageKind})` : ''}`];
  for (const [name, input] of Object.entries(node.inputs)) lines.push(`${pad}  ${name}:`, ...lineageLines(input, depth + 2));
  return lines;
}

export async function cmdArtifactsShow(digest: string, flags: { json?: boolean }): Promise<number> {
  const store = await cliStore();
  const manifest = await store.readManifest(digest);
  const lineage = await lineageOf(store, digest);
  if (flags.json) process.stdout.write(`${JSON.stringify({ manifest, lineage })}\n`);
  else process.stdout.write(`${JSON.stringify(manifest, null, 2)}\n\nlineage:\n${lineageLines(lineage).join('\n')}\n`);
  return 0;
}

export async function cmdArtifactsExport(digest: string, dest: string): Promise<number> {
  const n = await exportArtifact(await cliStore(), digest, dest);
  process.stderr.write(`exported ${n} file(s) of ${digest} to ${dest}\n`);
  return 0;
}

export async function cmdGc(flags: { keep: number; apply?: boolean; json?: boolean }): Promise<number> {
  return withRuntime(async (rt) => {
    const report = await gc(rt, { keep: flags.keep, apply: flags.apply ?? false });
    if (flags.json) process.stdout.write(`${JSON.stringify(report)}\n`);
    const mb = (report.bytes / 1e6).toFixed(1);
    process.stderr.write(
      `${report.applied ? 'freed' : 'would free'} ${mb} MB: ${report.deleteArtifacts.length} artifact(s), ${report.deleteMemo.length} memo namespace(s), ` +
        `${report.staleStaging} stale staging folder(s); keeping ${report.keptArtifacts} artifact(s) of ${report.keptRuns.length} run(s)\n` +
        (report.applied ? '' : 'dry run: add --apply to delete\n'),
    );
    return 0;
  });
}

export async function cmdStoreVerify(flags: { json?: boolean }): Promise<number> {
  const report = await verifyStore(await cliStore());
  if (flags.json) process.stdout.write(`${JSON.stringify(report)}\n`);
  for (const c of report.corrupt) process.stderr.write(`CORRUPT ${c.digest}: ${c.problems.join('; ')}\n`);
  for (const k of report.danglingCache) process.stderr.write(`DANGLING cache entry ${k}\n`);
  for (const p of report.staleStaging) process.stderr.write(`STALE staging folder ${p}\n`);
  const bad = report.corrupt.length + report.danglingCache.length;
  process.stderr.write(`${report.artifacts} artifact(s) checked, ${report.corrupt.length} corrupt, ${report.danglingCache.length} dangling cache entr(ies)\n`);
  return bad ? 1 : 0;
}
