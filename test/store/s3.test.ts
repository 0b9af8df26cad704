import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactNotFoundError, ConfigError, EmbedflowError, StoreAccessError, StoreUnavailableError } from '../../activities/errors.ts';
import { S3Store } from '../../artifacts/s3Store.ts';
import { openStore } from '../../workers/runtime.ts';
import { type S3TestServer, startS3Server } from '../support/s3Server.ts';
import { s3StoreUnderTest } from './backends.ts';
import { storeConformance } from './conformance.ts';

const BUCKET = 'embedflow-test';
let server: S3TestServer;

beforeAll(async () => {
  server = await startS3Server();
  await server.createBucket(BUCKET);
});
afterAll(async () => {
  await server?.stop();
});

storeConformance('S3Store on moto_server', () => s3StoreUnderTest(server, BUCKET));

const home = () => mkdtemp(join(tmpdir(), 'ef-s3-home-'));

async function publish(store: S3Store, files: Record<string, string>, kind = 'text') {
  const w = await store.newWriter();
  for (const [p, text] of Object.entries(files)) await writeFile(await w.file(p), text);
  return store.publish(w, { kind });
}

describe('S3Store specifics', () => {
  it('mirrors the local layout under its prefix; a flush adds one segment object', async () => {
    const t = await s3StoreUnderTest(server, BUCKET);
    const store = t.store as S3Store;
    const m = await publish(store, { 'a.txt': 'a', 'd/b.txt': 'b' });
    await store.putCache('key1', m.digest);
    await store.putDoc('runs/r1', { ok: true });
    const memo = await store.memo<number>('llm/abc');
    memo.put('k1', 1);
    await memo.flush();
    memo.put('k2', 2);
    await memo.flush();
    await memo.flush(); // nothing new: no object
    await memo.close();
    const keys = await t.raw.list('');
    expect(keys.filter((k) => !k.startsWith('memo/'))).toEqual([
      `artifacts/${m.digest}/data/a.txt`,
      `artifacts/${m.digest}/data/d/b.txt`,
      `artifacts/${m.digest}/manifest.json`,
      'cache/key1.json',
      'docs/runs/r1.json',
    ]);
    const segments = keys.filter((k) => k.startsWith('memo/'));
    expect(segments).toHaveLength(2);
    expect(segments.every((k) => /^memo\/llm\/abc\/\d+-\d+-[0-9a-f]+-\d{6}\.jsonl$/.test(k))).toBe(true);
    expect((await t.raw.read(segments[1]!))!.toString()).toBe('{"k":"k2","v":2}\n');
    // The bucket root works as a store too.
    const atRoot = S3Store.fromUrl(`s3://${BUCKET}`, { env: server.env, home: await home() });
    expect(atRoot.location).toBe(`s3://${BUCKET}`);
    expect(await atRoot.has(m.digest)).toBe(false);
  });

  it('a half-uploaded artifact (data without manifest) is invisible, reported as debris, and completed by a publish', async () => {
    const t = await s3StoreUnderTest(server, BUCKET);
    const store = t.store as S3Store;
    const probe = await publish(await t.reopen() as S3Store, { 'a.txt': 'content' });
    await store.deleteArtifact(probe.digest);
    // What a publisher that died before its manifest leaves behind, plus a stray object.
    await t.raw.write(`artifacts/${probe.digest}/data/a.txt`, 'cont');
    await t.raw.write(`artifacts/${probe.digest}/data/stray.bin`, 'x');
    expect(await store.has(probe.digest)).toBe(false);
    expect(await store.listArtifacts()).toEqual([]);
    await expect(store.open(probe.digest)).rejects.toThrow(ArtifactNotFoundError);
    expect(await store.listStale(0)).toEqual([`${store.location}/artifacts/${probe.digest}/`]);
    expect(await store.listStale(60_000)).toEqual([]);

    expect((await publish(store, { 'a.txt': 'content' })).digest).toBe(probe.digest);
    expect((await store.verify(probe.digest)).ok).toBe(true);
    expect(await t.raw.list(`artifacts/${probe.digest}/`)).toEqual([
      `artifacts/${probe.digest}/data/a.txt`,
      `artifacts/${probe.digest}/manifest.json`,
    ]);
    expect(await store.listStale(0)).toEqual([]);
  });

  it('open reuses a verified local copy on the same machine and re-downloads a damaged one', async () => {
    const t = await s3StoreUnderTest(server, BUCKET);
    const machine = await home();
    const url = t.store.location;
    const first = S3Store.fromUrl(url, { env: server.env, home: machine });
    const m = await publish(await t.reopen() as S3Store, { 'a.txt': 'the content' });
    const reader = await first.open(m.digest);
    expect(reader.dir.startsWith(join(machine, 's3cache', BUCKET))).toBe(true);

    // A later process on this machine: the local copy is verified by hash, not downloaded again
    // (proved by removing the object, which a download would have noticed).
    const saved = (await t.raw.read(`artifacts/${m.digest}/data/a.txt`))!;
    await t.raw.remove(`artifacts/${m.digest}/data/a.txt`);
    const second = S3Store.fromUrl(url, { env: server.env, home: machine });
    expect((await second.open(m.digest)).dir).toBe(reader.dir);
    expect((await second.quickVerify(m.digest)).problems).toEqual(['a.txt: missing']);
    await t.raw.write(`artifacts/${m.digest}/data/a.txt`, saved);

    // A damaged local copy is replaced from the store.
    await writeFile(join(reader.dir, 'a.txt'), 'THE CONTENT');
    const third = S3Store.fromUrl(url, { env: server.env, home: machine });
    expect(await readFile((await third.open(m.digest)).file('a.txt'), 'utf8')).toBe('the content');
  });

  it('workers/runtime openStore: s3:// URLs open an S3Store from the environment, paths a LocalStore', async () => {
    const saved = { ...process.env };
    try {
      Object.assign(process.env, server.env);
      const h = await home();
      const store = openStore(`s3://${BUCKET}/via-open-store`, h);
      expect(store).toBeInstanceOf(S3Store);
      expect(store.location).toBe(`s3://${BUCKET}/via-open-store`);
      const w = await store.newWriter();
      expect(w.dir.startsWith(join(h, 's3cache', BUCKET, 'via-open-store'))).toBe(true);
      await writeFile(await w.file('x.txt'), 'x');
      const m = await store.publish(w, { kind: 'k' });
      expect((await store.verify(m.digest)).ok).toBe(true);
      expect(openStore(h, h)).not.toBeInstanceOf(S3Store);
    } finally {
      for (const k of Object.keys(server.env)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  });

  it('names the bucket and endpoint when they cannot be used, and never prints the credentials', async () => {
    const env = { ...server.env };
    // A port nothing listens on: 1 is never served to tests.
    const down = S3Store.fromUrl(`s3://${BUCKET}/p`, { env: { ...env, EMBEDFLOW_S3_ENDPOINT: 'http://127.0.0.1:1' }, home: await home() });
    const unreachable = await down.has('c'.repeat(64)).catch((e: unknown) => e);
    expect(unreachable).toBeInstanceOf(StoreUnavailableError);
    const u = unreachable as EmbedflowError;
    expect(u.describe()).toMatch(/127\.0\.0\.1:1/);
    expect(u.describe()).toContain(BUCKET);

    const missing = S3Store.fromUrl('s3://no-such-bucket-here/p', { env, home: await home() });
    const noBucket = await missing.listArtifacts().catch((e: unknown) => e);
    expect(noBucket).toBeInstanceOf(StoreAccessError);
    expect((noBucket as EmbedflowError).describe()).toMatch(/bucket "no-such-bucket-here" does not exist/);
    expect((noBucket as EmbedflowError).describe()).toContain(server.endpoint);

    for (const err of [u, noBucket as EmbedflowError]) {
      const printed = `${err.describe()}\n${err.stack}\n${JSON.stringify(err)}\n${String(err.cause ?? '')}`;
      expect(printed).not.toContain(server.secret);
      expect(printed).not.toContain(env.AWS_ACCESS_KEY_ID);
    }

    expect(() => S3Store.fromUrl('s3://Bad_Bucket/x', { env, home: '/tmp' })).toThrow(ConfigError);
    expect(() => S3Store.fromUrl('s3://bucket/../x', { env, home: '/tmp' })).toThrow(/S3 prefix/);
    const badEndpoint = (() => {
      try {
        S3Store.fromUrl('s3://bucket/x', { env: { ...env, EMBEDFLOW_S3_ENDPOINT: `not a url ${server.secret}` }, home: '/tmp' });
      } catch (e) {
        return e as EmbedflowError;
      }
    })();
    expect(badEndpoint).toBeInstanceOf(ConfigError);
    expect(badEndpoint!.describe()).toMatch(/EMBEDFLOW_S3_ENDPOINT/);
    expect(badEndpoint!.describe()).not.toContain(server.secret);
  });
});
