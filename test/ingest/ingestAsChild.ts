// Run by test/ingest/bad-input.test.ts in a child process (as an unprivileged user when the tests run
// as root, since root reads a chmod 000 file anyway): ingest a folder, print the outcome as JSON.
import { ingestCorpus } from '../../activities/ingest/ingestCorpus.ts';

const [dir, out] = process.argv.slice(2);
try {
  const summary = await ingestCorpus(dir!, out!, { normalize: 'NFKC' });
  console.log(JSON.stringify({ ok: true, documents: summary.documents, skipped: summary.skipped }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: (err as Error).name, message: (err as Error).message }));
}
