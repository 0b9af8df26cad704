import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { type IncomingMessage, type ServerResponse, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactNotFoundError, ConfigError, EmbedflowError, StoreAccessError, StoreUnavailableError } from '../../core/errors.ts';
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

/**
 * A proxy in front of moto that answers HTTP 500 to the first `failures` uploads of part 2, as a
 * failing or throttling server would; it counts every request for part 2.
 */
async function failingPartProxy(target: string, failures: number) {
  const upstream = new URL(target);
  let part2 = 0;
  const proxy = createServer((req: IncomingMessage, res: ServerResponse) => {
    const isPart2 = req.method === 'PUT' && /[?&]partNumber=2(&|$)/.test(req.url ?? '');
    if (isPart2 && ++part2 <= failures) {
      req.resume();
      req.on('end', () => res.writeHead(500, { 'content-type': 'application/xml' }).end('<Error><Code>InternalError</Code><Message>injected</Message></Error>'));
      return;
    }
    const out = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  return {
    endpoint: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    part2Requests: () => part2,
    close: () => new Promise<void>((r) => proxy.close(() => r())),
  };
}

describe('S3Store: standard AWS settings and multipart upload', () => {
  /** The moto server's environment with the endpoint under other names. */
  const envWith = (vars: Record<string, string>) => {
    const rest = Object.fromEntries(Object.entries(server.env).filter(([k]) => k !== 'EMBEDFLOW_S3_ENDPOINT'));
    return { ...rest, ...vars };
  };

  it('AWS_ENDPOINT_URL_S3 alone selects the endpoint, before AWS_ENDPOINT_URL; EMBEDFLOW_S3_ENDPOINT must agree', async () => {
    const url = `s3://${BUCKET}/endpoints-${randomBytes(3).toString('hex')}`;
    // AWS_ENDPOINT_URL points nowhere (port 1): only AWS_ENDPOINT_URL_S3 can make this work.
    const store = S3Store.fromUrl(url, { env: envWith({ AWS_ENDPOINT_URL_S3: server.endpoint, AWS_ENDPOINT_URL: 'http://127.0.0.1:1' }), home: await home() });
    const m = await publish(store, { 'a.txt': 'via AWS_ENDPOINT_URL_S3' });
    const general = S3Store.fromUrl(url, { env: envWith({ AWS_ENDPOINT_URL: server.endpoint }), home: await home() });
    expect(await readFile((await general.open(m.digest)).file('a.txt'), 'utf8')).toBe('via AWS_ENDPOINT_URL_S3');
    expect(() => S3Store.fromUrl(url, { env: envWith({ AWS_ENDPOINT_URL_S3: server.endpoint, EMBEDFLOW_S3_ENDPOINT: 'http://127.0.0.1:1' }), home: '/tmp' })).toThrow(
      /EMBEDFLOW_S3_ENDPOINT and AWS_ENDPOINT_URL_S3 are both set, to different endpoints/,
    );
    const badUrl = (() => {
      try {
        S3Store.fromUrl(url, { env: envWith({ AWS_ENDPOINT_URL_S3: 'localhost:9000' }), home: '/tmp' });
      } catch (e) {
        return (e as EmbedflowError).describe();
      }
    })();
    expect(badUrl).toMatch(/environment variable AWS_ENDPOINT_URL_S3 is invalid[^]*fix: an endpoint is a URL/);
    expect(() => S3Store.fromUrl(url, { env: { ...server.env, EMBEDFLOW_S3_PART_SIZE: '1MiB' }, home: '/tmp' })).toThrow(/EMBEDFLOW_S3_PART_SIZE is invalid: at least 5MiB/);
  });

  it('a file above the part size goes up in parts, reads back with its digest, and a failing part is sent again', async () => {
    const big = randomBytes(12 * 1024 * 1024 + 12345);
    const sha = createHash('sha256').update(big).digest('hex');
    const proxy = await failingPartProxy(server.endpoint, 3);
    try {
      const url = `s3://${BUCKET}/multipart-${randomBytes(3).toString('hex')}`;
      const store = S3Store.fromUrl(url, { env: envWith({ AWS_ENDPOINT_URL_S3: proxy.endpoint, EMBEDFLOW_S3_PART_SIZE: '5MiB' }), home: await home() });
      const w = await store.newWriter();
      await writeFile(await w.file('model.bin'), big);
      await writeFile(await w.file('small.txt'), 'one PUT');
      const published = await store.publish(w, { kind: 'model' });
      expect(published.files.find((f) => f.path === 'model.bin')?.sha256).toBe(sha);
      // The SDK's own 3 attempts at part 2 all failed; the store read the part again and sent it once more.
      expect(proxy.part2Requests()).toBe(4);

      // Three parts (5 + 5 + 2 MiB): S3 marks a multipart object's ETag with its part count.
      const head = await server.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${url.slice(`s3://${BUCKET}/`.length)}/artifacts/${published.digest}/data/model.bin` }));
      expect(head.ETag).toMatch(/-3"$/);
      expect(head.ContentLength).toBe(big.length);

      // Another machine downloads it through sha256.
      const reader = S3Store.fromUrl(url, { env: server.env, home: await home() });
      expect((await reader.verify(published.digest)).ok).toBe(true);
      const back = await readFile((await reader.open(published.digest)).file('model.bin'));
      expect(createHash('sha256').update(back).digest('hex')).toBe(sha);
    } finally {
      await proxy.close();
    }
  });
});
