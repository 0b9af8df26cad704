import { execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { type AddressInfo, type Socket, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Server, type TLSSocket, createServer } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cli, spawnCli, testEnv, until } from '../support/cli.ts';

// TLS and mTLS to a remote Temporal cluster, as the TEMPORAL_TLS_* settings promise: a TLS-terminating
// proxy that demands a client certificate stands in front of the test run's real (plaintext) dev
// server, with a throwaway CA made by openssl. A worker and a run go through it; a client without
// its certificate, or trusting the wrong CA, is refused with a message that says so, promptly.

const PIPELINE = 'test/fixtures/pipelines/words.ts';
const SERVER_NAME = 'temporal.embedflow.test';
const run = promisify(execFile);

let dir: string;
let proxy: Server;
let address: string;
/** Handshakes the proxy completed with a client certificate it trusts. */
let authorized = 0;
/** Handshakes the proxy refused, with the reason it saw. */
const refused: string[] = [];
const children: ChildProcess[] = [];

async function openssl(...args: string[]): Promise<void> {
  await run('openssl', args, { cwd: dir });
}

/** A P-256 key and a certificate for `cn`, signed by the CA `ca` (self-signed when omitted). */
async function cert(name: string, cn: string, ext: string[], ca?: string): Promise<void> {
  const subject = ['-subj', `/CN=${cn}`, '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`];
  if (!ca) {
    await openssl('req', '-x509', ...subject, '-out', `${name}.crt`, '-days', '2', ...ext.flatMap((e) => ['-addext', e]));
    return;
  }
  await openssl('req', ...subject, '-out', `${name}.csr`);
  await writeFile(join(dir, `${name}.ext`), `${ext.join('\n')}\n`);
  await openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '2', '-out', `${name}.crt`, '-extfile', `${name}.ext`);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ef-tls-'));
  const caExt = ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign'];
  await cert('ca', 'embedflow test CA', caExt);
  await cert('other-ca', 'some other CA', caExt);
  await cert('server', SERVER_NAME, ['basicConstraints=CA:FALSE', `subjectAltName=DNS:${SERVER_NAME}`, 'extendedKeyUsage=serverAuth'], 'ca');
  await cert('client', 'embedflow worker', ['basicConstraints=CA:FALSE', 'extendedKeyUsage=clientAuth'], 'ca');

  const [host, port] = splitAddress(inject('temporalAddress'));
  const pem = (f: string) => readFile(join(dir, f));
  proxy = createServer(
    { key: await pem('server.key'), cert: await pem('server.crt'), ca: await pem('ca.crt'), requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2'] },
    (tls: TLSSocket) => {
      if (tls.authorized) authorized++;
      const upstream: Socket = connect(port, host);
      tls.pipe(upstream).pipe(tls);
      tls.on('error', () => upstream.destroy());
      upstream.on('error', () => tls.destroy());
    },
  );
  proxy.on('tlsClientError', (err) => refused.push(err.message));
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  address = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await new Promise<void>((resolve) => proxy?.close(() => resolve()));
});

function splitAddress(a: string): [string, number] {
  const i = a.lastIndexOf(':');
  return [a.slice(0, i), Number(a.slice(i + 1))];
}

function tlsVars(overrides: Record<string, string | undefined> = {}): Record<string, string> {
  const vars: Record<string, string | undefined> = {
    TEMPORAL_ADDRESS: address,
    TEMPORAL_TLS_CERT: join(dir, 'client.crt'),
    TEMPORAL_TLS_KEY: join(dir, 'client.key'),
    TEMPORAL_TLS_CA: join(dir, 'ca.crt'),
    TEMPORAL_TLS_SERVER_NAME: SERVER_NAME,
    ...overrides,
  };
  return Object.fromEntries(Object.entries(vars).filter((e): e is [string, string] => e[1] !== undefined));
}

describe('TLS to Temporal', () => {
  it('a worker and a run over mTLS through a TLS-terminating proxy complete', async () => {
    const env = { ...(await testEnv()), ...tlsVars() };
    const worker = spawnCli(['worker', '--queue', 'workflow', '--queue', 'cpu', '--pipeline', PIPELINE], env);
    children.push(worker);
    let workerErr = '';
    worker.stderr?.on('data', (d) => (workerErr += d));
    await until(() => workerErr.includes('worker polling'), 60_000, 'the worker to connect');
    const res = await cli(['run', PIPELINE, '--json'], env);
    expect(res.code, res.stderr).toBe(0);
    expect(res.json.status).toBe('completed');
    // Both went through the proxy with the client certificate: the worker and the CLI.
    expect(authorized).toBeGreaterThanOrEqual(2);
    worker.kill('SIGTERM');
    await new Promise((r) => worker.once('close', r));
  });

  it('without the client certificate, trusting the wrong CA, or without the server name: refused promptly, saying why', async () => {
    const cases = [
      { vars: { TEMPORAL_TLS_CERT: undefined, TEMPORAL_TLS_KEY: undefined }, says: [/certificate required/, /no client certificate was sent/] },
      { vars: { TEMPORAL_TLS_CA: join(dir, 'other-ca.crt') }, says: [/self-signed certificate in certificate chain|unable to verify/] },
      { vars: { TEMPORAL_TLS_SERVER_NAME: undefined }, says: [/does not match certificate's altnames/] },
    ];
    // At once: each waits out the connect deadline (15 s), not the CPU.
    const results = await Promise.all(cases.map(async (c) => cli(['run', PIPELINE, '--json'], { ...(await testEnv()), ...tlsVars(c.vars) }, 90_000)));
    results.forEach((res, i) => {
      // Not killed by the 90 s guard: the CLI gave up by itself.
      expect(res.code, res.stderr).toBe(1);
      expect(res.stderr).toContain(`ConfigError: cannot reach Temporal at ${address}`);
      for (const re of cases[i]!.says) expect(res.stderr).toMatch(re);
    });
    expect(refused.some((r) => /peer did not return a certificate/.test(r))).toBe(true);
  });
});
