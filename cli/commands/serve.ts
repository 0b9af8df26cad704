import { Encoder } from '../../activities/embedding/encoder.ts';
import type { ModelVariant } from '../../activities/artifactKinds/modelArtifact.ts';
import { startEmbeddingServer } from '../embeddingServer.ts';
import { resolveTarget } from '../modelTargets.ts';

// `embedflow serve`: a model as an OpenAI-compatible embeddings endpoint, until SIGINT or SIGTERM.

export interface ServeFlags {
  port: number;
  host: string;
  name?: string;
  variant: ModelVariant;
  batchWindow: number;
}

export async function cmdServe(target: string, flags: ServeFlags): Promise<number> {
  const { target: t, store } = await resolveTarget(target);
  // A run serves what it trained; a run that has no trained model yet serves its base model.
  const digest = (t.finetuned ?? t.base) as string;
  const encoder = await Encoder.load((await store.open(digest)).dir, { variant: flags.variant });
  const modelId = flags.name ?? encoder.info.name;
  const server = await startEmbeddingServer({ encoder, modelId, digest, host: flags.host, port: flags.port, batchWindowMs: flags.batchWindow });
  process.stderr.write(
    `serving ${modelId} (${digest.slice(0, 12)}, ${flags.variant}, ${encoder.dim} dims) at ${server.url}\n` +
      `  POST ${server.url}/embeddings  {"input": ["..."], "model": "${modelId}", "input_type": "query"|"passage"}\n` +
      '  Ctrl-C stops it\n',
  );
  // The URL alone on stdout, for scripts that start the server and read where it listens.
  process.stdout.write(`${server.url}\n`);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  process.stderr.write(`${signal}: answering requests in flight, then stopping\n`);
  await server.close();
  await encoder.release();
  process.stderr.write(`stopped (${server.batcher.texts} text(s) embedded in ${server.batcher.calls} model call(s))\n`);
  return 0;
}
