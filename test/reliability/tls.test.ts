import { execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { type AddressInfo, type Socket, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Server, type TLSSocket, createServer } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ConfigError } from '../../core/errors.ts';
import { loadConfig } from '../../workers/config.ts';
import { cli, spawnCli, testEnv, until } from '../support/cli.ts';

// TLS and mTLS to a remote Temporal cluster, as the TEMPORAL_TLS_* settings promise: a TLS-terminating
// proxy that demands a client certificate stands in front of the test run's real (plaintext) dev
// server, with a throwaway CA made by openssl. A worker (Temporal's standard variables) and a run (a
// profile of a TOML config file) go through it; a client without its certificate, or trusting the
// wrong CA, is refused with a message that says so, promptly. The project's older variable names
// keep working as aliases.

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

const defined = (vars: Record<string, string | undefined>) =>
  Object.fromEntries(Object.entries(vars).filter((e): e is [string, string] => e[1] !== undefined));

/** The project's older names (aliases). */
function aliasVars(overrides: Record<string, string | undefined> = {}): Record<string, string> {
  return defined({
    TEMPORAL_ADDRESS: address,
    TEMPORAL_TLS_CERT: join(dir, 'client.crt'),
    TEMPORAL_TLS_KEY: join(dir, 'client.key'),
    TEMPORAL_TLS_CA: join(dir, 'ca.crt'),
    TEMPORAL_TLS_SERVER_NAME: SERVER_NAME,
    ...overrides,
  });
}

/** Temporal's standard names. */
function standardVars(overrides: Record<string, string | undefined> = {}): Record<string, string> {
  return defined({
    TEMPORAL_ADDRESS: address,
    TEMPORAL_TLS_CLIENT_CERT_PATH: join(dir, 'client.crt'),
    TEMPORAL_TLS_CLIENT_KEY_PATH: join(dir, 'client.key'),
    TEMPORAL_TLS_SERVER_CA_CERT_PATH: join(dir, 'ca.crt'),
    TEMPORAL_TLS_SERVER_NAME: SERVER_NAME,
    ...overrides,
  });
}

/** A Temporal config file with a profile "staging" for the proxy (PEM inline, as `*_data`) and a decoy default. */
async function profileFile(opts: { serverName?: boolean } = {}): Promise<string> {
  const file = join(await mkdtemp(join(dir, 'cfg-')), 'temporal.toml');
  const pem = async (f: string) => `"""\n${(await readFile(join(dir, f), 'utf8')).trim()}\n"""`;
  await writeFile(
    file,
    [
      '# written as `temporal config set` would',
      '[profile.default]',
      'address = "127.0.0.1:1"',
      '',
      '[profile.staging]',
      `address = "${address}"`,
      "namespace = 'default'  # a literal string",
      '[profile.staging.tls]',
      `client_cert_data = ${await pem('client.crt')}`,
      `client_key_path = "${join(dir, 'client.key')}"`,
      `server_ca_cert_path = "${join(dir, 'ca.crt')}"`,
      opts.serverName === false ? '' : `server_name = "${SERVER_NAME}"`,
      '',
    ].join('\n'),
  );
  return file;
}

describe('TLS to Temporal', () => {
  it('a worker and a run over mTLS through a TLS-terminating proxy complete', async () => {
    const base = await testEnv();
    const worker = spawnCli(['worker', '--queue', 'workflow', '--queue', 'cpu', '--pipeline', PIPELINE], { ...base, ...standardVars() });
    children.push(worker);
    let workerErr = '';
    worker.stderr?.on('data', (d) => (workerErr += d));
    await until(() => workerErr.includes('worker polling'), 60_000, 'the worker to connect');
    const ui = 'https://temporal-ui.embedflow.test/';
    const profile = { TEMPORAL_CONFIG_FILE: await profileFile(), TEMPORAL_PROFILE: 'staging', TEMPORAL_UI_URL: ui };
    const res = await cli(['run', PIPELINE, '--json'], { ...base, ...profile });
    expect(res.code, res.stderr).toBe(0);
    expect(res.json.status).toBe('completed');
    // The remote cluster's web UI is linked as the embedded server's is.
    expect(res.stderr).toContain(`(web UI: ${ui}namespaces/default/workflows/${res.json.runId}`);
    // Both went through the proxy with the client certificate: the worker and the CLI.
    expect(authorized).toBeGreaterThanOrEqual(2);
    worker.kill('SIGTERM');
    await new Promise((r) => worker.once('close', r));
  });

  it('without the client certificate, trusting the wrong CA, or without the server name: refused promptly, saying why', async () => {
    // One case per way of saying it: the aliases, the standard variables, a profile.
    const cases = [
      { vars: aliasVars({ TEMPORAL_TLS_CERT: undefined, TEMPORAL_TLS_KEY: undefined }), says: [/certificate required/, /no client certificate was sent/] },
      { vars: standardVars({ TEMPORAL_TLS_SERVER_CA_CERT_PATH: join(dir, 'other-ca.crt') }), says: [/self-signed certificate in certificate chain|unable to verify/] },
      { vars: { TEMPORAL_CONFIG_FILE: await profileFile({ serverName: false }), TEMPORAL_PROFILE: 'staging' }, says: [/does not match certificate's altnames/] },
    ];
    // At once: each waits out the connect deadline (15 s), not the CPU.
    const results = await Promise.all(cases.map(async (c) => cli(['run', PIPELINE, '--json'], { ...(await testEnv()), ...c.vars }, 90_000)));
    results.forEach((res, i) => {
      // Not killed by the 90 s guard: the CLI gave up by itself.
      expect(res.code, res.stderr).toBe(1);
      expect(res.stderr).toContain(`ConfigError: cannot reach Temporal at ${address}`);
      for (const re of cases[i]!.says) expect(res.stderr).toMatch(re);
    });
    expect(refused.some((r) => /peer did not return a certificate/.test(r))).toBe(true);
  });
});

describe('Temporal settings: standard variables, aliases, profiles', () => {
  const configError = (vars: Record<string, string>) => {
    try {
      loadConfig(vars);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as ConfigError).describe();
    }
    throw new Error('loadConfig accepted it');
  };

  it('the older names mean the same as the standard ones; the environment overrides the profile', async () => {
    const std = loadConfig(standardVars()).temporal;
    expect(std?.tls?.cert).toEqual({ setting: 'TEMPORAL_TLS_CLIENT_CERT_PATH', path: join(dir, 'client.crt') });
    expect(loadConfig(aliasVars()).temporal?.tls).toEqual({
      cert: { setting: 'TEMPORAL_TLS_CERT', path: join(dir, 'client.crt') },
      key: { setting: 'TEMPORAL_TLS_KEY', path: join(dir, 'client.key') },
      ca: { setting: 'TEMPORAL_TLS_CA', path: join(dir, 'ca.crt') },
      serverName: SERVER_NAME,
    });
    // An API key by value or by the name of the variable that holds it; either turns TLS on.
    const byValue = loadConfig({ TEMPORAL_ADDRESS: 'ns.acct.tmprl.cloud:7233', TEMPORAL_NAMESPACE: 'ns.acct', TEMPORAL_API_KEY: 'k1' }).temporal;
    expect(byValue).toMatchObject({ apiKey: 'k1', tls: {}, namespace: 'ns.acct', uiUrl: 'https://cloud.temporal.io' });
    expect(loadConfig({ TEMPORAL_ADDRESS: 'a:7233', TEMPORAL_API_KEY_ENV: 'MY_KEY', MY_KEY: 'k2', TEMPORAL_TLS: 'false' }).temporal).toMatchObject({ apiKey: 'k2', tls: undefined });
    expect(loadConfig({ TEMPORAL_ADDRESS: 'temporal.internal:7233' }).temporal).toMatchObject({ tls: undefined, uiUrl: undefined });

    const file = await profileFile();
    const fromFile = loadConfig({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'staging' });
    expect(fromFile.temporal).toMatchObject({ address, profile: 'staging', tls: { serverName: SERVER_NAME, key: { path: join(dir, 'client.key') } } });
    expect(fromFile.temporal?.tls?.cert).toEqual({ setting: 'profile.staging.tls.client_cert_data', data: `${(await readFile(join(dir, 'client.crt'), 'utf8')).trim()}\n` });
    const overridden = loadConfig({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'staging', TEMPORAL_NAMESPACE: 'other', TEMPORAL_TLS_SERVER_NAME: 'x.test' });
    expect(overridden.temporal).toMatchObject({ namespace: 'other', tls: { serverName: 'x.test' } });
    expect(overridden.namespace).toBe('other');
    // No TEMPORAL_PROFILE: the file's default profile; no file and no address: the embedded dev server.
    expect(loadConfig({ TEMPORAL_CONFIG_FILE: file }).temporal?.address).toBe('127.0.0.1:1');
    expect(loadConfig({ HOME: dir }).temporal).toBeUndefined();
  });

  it('a wrong setting names the variable or the file line, and the fix', async () => {
    expect(configError({ ...standardVars(), TEMPORAL_TLS_CERT: '/elsewhere.crt' })).toMatch(/TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CERT are both set.*\n.*fix: .*unset TEMPORAL_TLS_CERT/);
    expect(configError(standardVars({ TEMPORAL_TLS_CLIENT_KEY_PATH: undefined }))).toMatch(/TEMPORAL_TLS_CLIENT_CERT_PATH is set but its pair is not[^]*set TEMPORAL_TLS_CLIENT_KEY_PATH/);
    expect(configError({ TEMPORAL_ADDRESS: 'a:1', TEMPORAL_API_KEY_ENV: 'NOT_SET_ANYWHERE' })).toMatch(/TEMPORAL_API_KEY_ENV names NOT_SET_ANYWHERE, which is unset/);
    expect(configError({ TEMPORAL_TLS: 'yes' })).toMatch(/environment variable TEMPORAL_TLS/);
    expect(configError({ TEMPORAL_UI_URL: 'temporal-ui:8080' })).toMatch(/environment variable TEMPORAL_UI_URL/);
    expect(configError({ TEMPORAL_CONFIG_FILE: join(dir, 'none.toml') })).toMatch(/TEMPORAL_CONFIG_FILE: no file at .*none\.toml/);
    const file = await profileFile();
    expect(configError({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'prod' })).toMatch(/no \[profile\.prod\][^]*use one of: default, staging/);
    const bad = join(dir, 'bad.toml');
    await writeFile(bad, '[profile.default]\naddress = "a:1"\nport = 7233.5\n');
    expect(configError({ TEMPORAL_CONFIG_FILE: bad })).toMatch(/bad\.toml:3: a value must be/);
    await writeFile(bad, '[profile.default.tls]\nclient_cert = "x"\n');
    expect(configError({ TEMPORAL_CONFIG_FILE: bad })).toMatch(/profile "default": tls: Unrecognized key: "client_cert"/);
  });
});
