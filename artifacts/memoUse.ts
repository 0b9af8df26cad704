import { z } from 'zod';
import { sha256 } from './hash.ts';
import type { ArtifactStore } from './store.ts';

// Which memo namespaces each run's stages opened. A manifest names the namespaces of a finished
// stage; this record covers a stage that failed or is still running, whose memo (paid LLM answers)
// a resume needs, so `gc` keeps it for as long as it keeps the run.

const PREFIX = 'memo-use';

const MemoUse = z.object({
  runId: z.string(),
  stageId: z.string(),
  namespaces: z.array(z.string()),
  at: z.string().datetime(),
});
export type MemoUse = z.infer<typeof MemoUse> & { name: string };

/** Run ids may hold characters a document name may not (a scheduled run's ends in a timestamp). */
function runKey(runId: string): string {
  return sha256(runId).slice(0, 24);
}

/** Record (replacing any earlier record) the namespaces a stage of a run has opened so far. */
export async function recordMemoUse(store: ArtifactStore, runId: string, stageId: string, namespaces: string[]): Promise<void> {
  const record = MemoUse.parse({ runId, stageId, namespaces: [...namespaces].sort(), at: new Date().toISOString() });
  await store.putDoc(`${PREFIX}/${runKey(runId)}.${stageId}`, record);
}

/** Every record in the store. */
export async function listMemoUse(store: ArtifactStore): Promise<MemoUse[]> {
  const out: MemoUse[] = [];
  for (const name of await store.listDocs(PREFIX)) {
    const parsed = MemoUse.safeParse(await store.getDoc(name));
    // Documents are written whole (atomically), so one that does not parse was not written here.
    if (parsed.success) out.push({ ...parsed.data, name });
  }
  return out;
}
