// Run by test/ingest/bad-input.test.ts in a child process (as an unprivileged user when the tests run
// as root, since root reads a chmod 000 file anyway): snapshot a corpus folder into a store, print the
// outcome as JSON.
import { snapshotInput } from '../../engine/snapshotInput.ts';
import { LocalStore } from '../../artifacts/store.ts';

const [storeRoot, dir] = process.argv.slice(2);
try {
  const snap = await snapshotInput(new LocalStore(storeRoot!), { name: 'corpus', type: 'directory', path: dir! });
  console.log(JSON.stringify({ ok: true, ...snap }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: (err as Error).name, message: (err as Error).message }));
}
