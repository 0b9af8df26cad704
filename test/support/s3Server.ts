import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { PROJECT_ROOT } from '../../workers/config.ts';

// A real S3-compatible server for the store tests: moto's standalone server (PyPI `moto[server]`,
// installed into the project venv from trainer/requirements-test.txt). It implements the
// conditional writes the S3 store relies on (PutObject with If-None-Match: * and If-Match, which
// s3rver, the npm alternative, ignores), keeps everything in memory and listens on 127.0.0.1 only.

export interface S3TestServer {
  endpoint: string;
  /** The environment a store (or a child process) needs to reach it: AWS_* and EMBEDFLOW_S3_ENDPOINT. */
  env: Record<string, string>;
  /** The secret in `env`, so tests can check it never shows up in messages. */
  secret: string;
  client: S3Client;
  createBucket(name: string): Promise<void>;
  stop(): Promise<void>;
}

const STARTUP_MS = 30_000;

export async function startS3Server(): Promise<S3TestServer> {
  const venv = process.env.EMBEDFLOW_VENV ?? join(PROJECT_ROOT, '.venv');
  const bin = join(venv, 'bin', 'moto_server');
  if (!existsSync(bin)) {
    throw new Error(`${bin} is missing: run \`bash scripts/setup.sh\` (it installs trainer/requirements-test.txt into the venv)`);
  }
  // Port 0: the server picks a free one and prints it.
  const child = spawn(bin, ['-H', '127.0.0.1', '-p', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const endpoint = await new Promise<string>((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => fail(new Error(`moto_server did not start within ${STARTUP_MS / 1000}s:\n${output}`)), STARTUP_MS);
    const fail = (err: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(err);
    };
    const onExit = (code: number | null) => fail(new Error(`moto_server exited (${code}) before listening:\n${output}`));
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const m = /Running on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        child.off('exit', onExit);
        child.off('error', fail);
        child.stdout!.off('data', onData);
        child.stderr!.off('data', onData);
        resolve(m[1]!);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('error', fail);
    child.once('exit', onExit);
  });
  // Keep reading its request log so the pipe never fills and stalls the server.
  child.stdout!.resume();
  child.stderr!.resume();
  const secret = randomBytes(12).toString('hex');
  const env = {
    EMBEDFLOW_S3_ENDPOINT: endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'AKIAEMBEDFLOWTEST',
    AWS_SECRET_ACCESS_KEY: secret,
  };
  const client = new S3Client({
    endpoint,
    region: env.AWS_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: secret },
  });
  return {
    endpoint,
    env,
    secret,
    client,
    async createBucket(name: string) {
      await client.send(new CreateBucketCommand({ Bucket: name }));
    },
    stop: () => stopChild(child, client),
  };
}

async function stopChild(child: ChildProcess, client: S3Client): Promise<void> {
  client.destroy();
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}
