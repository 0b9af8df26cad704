// Child process for the store conformance suite: publish the same content N times, racing a twin.
// argv: <store url or path> <home for the S3 local cache> <count>
import { writeFile } from 'node:fs/promises';
import { openTestStore } from './backends.ts';

const [url, home, count] = process.argv.slice(2);
const store = openTestStore(url!, home!);
const digests = new Set<string>();
for (let i = 0; i < Number(count); i++) {
  const w = await store.newWriter();
  await writeFile(await w.file('table.txt'), 'x'.repeat(200_000));
  await writeFile(await w.file('nested/meta.json'), '{"a":1}');
  digests.add((await store.publish(w, { kind: 'race' })).digest);
}
process.stdout.write(JSON.stringify([...digests]));
