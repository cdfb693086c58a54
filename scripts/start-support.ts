import { type ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { freePort } from '../control-plane/test/fault-services.js';
import { eventually } from '../proxy/test/stack.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const STARTED = /Crochet is running at/;

/** `npm start` (scripts/start.ts) running as a child process of the test, on the test's own PostgreSQL and Redis. */
export interface StartedStack {
  readonly child: ChildProcess;
  readonly proxyUrl: string;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** How it exited; null while it runs. */
  exit(): { code: number | null; signal: NodeJS.Signals | null } | null;
  /** SIGTERM, and how it exited (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `npm start` with no dev chains and test-friendly limits; resolves once it says it is running. */
export const startStack = async (
  services: { databaseUrl: string; redisUrl: string },
  extraEnv: NodeJS.ProcessEnv = {},
): Promise<StartedStack> => {
  const port = await freePort();
  const proxyUrl = `http://127.0.0.1:${port}`;
  const { privateKey } = generateKeyPairSync('ed25519');
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env['PATH'],
      DATABASE_URL: services.databaseUrl,
      REDIS_URL: services.redisUrl,
      CROCHET_DEV_CHAINS: '0',
      HOST: '127.0.0.1',
      PORT: String(port),
      PUBLIC_BASE_URL: proxyUrl,
      CONTROL_PLANE_PORT: '0',
      CROCHET_METRICS_PORT: '0',
      CONTROL_PLANE_METRICS_PORT: '0',
      CROCHET_POW_DIFFICULTY: '4',
      CROCHET_KEY_RATE_LIMIT_PER_MINUTE: '1000000',
      // Given, so that the run writes no development keys into the checkout.
      CROCHET_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      CROCHET_DATA_PLANE_KEY: randomBytes(32).toString('base64'),
      CROCHET_RECEIPT_KEYS: JSON.stringify([{ ...privateKey.export({ format: 'jwk' }), kid: 'start-test' }]),
      LOG_LEVEL: 'warn',
      ...extraEnv,
    },
  });
  let output = '';
  type Exit = { code: number | null; signal: NodeJS.Signals | null };
  let exit: Exit | null = null;
  const exited = new Promise<Exit>((resolve) =>
    child.once('exit', (code, signal) => {
      const how: Exit = { code, signal };
      exit = how;
      resolve(how);
    }),
  );
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  await eventually(() => {
    if (exit) throw new Error(`npm start exited (${JSON.stringify(exit)}):\n${output}`);
    expect(output).toMatch(STARTED);
  }, 60_000).catch((error) => {
    throw exit ? error : new Error(`npm start did not come up:\n${output}`);
  });
  return {
    child,
    proxyUrl,
    output: () => output,
    exit: () => exit,
    stop: async (graceMs = 30_000) => {
      if (!exit) child.kill('SIGTERM');
      const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const how = await exited;
      clearTimeout(kill);
      return how;
    },
  };
};
