import { type ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePort,
  type PostgresProcess,
  type RedisProcess,
  startPostgresProcess,
  startRedisProcess,
} from '../control-plane/test/fault-services.js';
import { apiClient } from '../control-plane/test/helpers.js';
import {
  catchConsumerMidTransaction,
  expectAllRecorded,
  startFreeListing,
  startLoad,
} from '../control-plane/test/outage-support.js';
import { eventually, startSeller, type TestSeller } from '../proxy/test/stack.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const STARTED = /Crochet is running at/;

/**
 * Issue 11: stopping PostgreSQL under load ended the whole `npm start` process ("Connection terminated
 * unexpectedly" on a checked-out client), and callers then got connection refused. Here the real entry point runs as
 * a child on PostgreSQL and Redis processes of the test's own, and PostgreSQL is stopped twice (fast, immediate) and
 * started again while a client keeps calling: the process must still run, and say nothing of an unhandled error.
 */
describe('npm start through a PostgreSQL stop and start', () => {
  let postgres: PostgresProcess;
  let redis: RedisProcess;
  let seller: TestSeller;
  let child: ChildProcess;
  let output = '';
  let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  let proxyUrl: string;

  beforeAll(async () => {
    [postgres, redis, seller] = await Promise.all([startPostgresProcess(), startRedisProcess(), startSeller()]);
    const port = await freePort();
    proxyUrl = `http://127.0.0.1:${port}`;
    const { privateKey } = generateKeyPairSync('ed25519');
    child = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env['PATH'],
        DATABASE_URL: postgres.url,
        REDIS_URL: redis.url,
        CROCHET_DEV_CHAINS: '0',
        HOST: '127.0.0.1',
        PORT: String(port),
        PUBLIC_BASE_URL: proxyUrl,
        CONTROL_PLANE_PORT: '0',
        CROCHET_POW_DIFFICULTY: '4',
        CROCHET_KEY_RATE_LIMIT_PER_MINUTE: '1000000',
        // Given, so that the run writes no development keys into the checkout.
        CROCHET_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
        CROCHET_DATA_PLANE_KEY: randomBytes(32).toString('base64'),
        CROCHET_RECEIPT_KEYS: JSON.stringify([{ ...privateKey.export({ format: 'jwk' }), kid: 'outage-test' }]),
        LOG_LEVEL: 'warn',
      },
    });
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.once('exit', (code, signal) => {
      exit = { code, signal };
    });
    await eventually(() => {
      if (exit) throw new Error(`npm start exited (${JSON.stringify(exit)}):\n${output}`);
      expect(output).toMatch(STARTED);
    }, 60_000).catch((error) => {
      throw exit ? error : new Error(`npm start did not come up:\n${output}`);
    });
  });
  afterAll(async () => {
    if (child && !exit) {
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([gone, new Promise((resolve) => setTimeout(resolve, 15_000))]);
      if (!exit) child.kill('SIGKILL');
    }
    await Promise.all([seller?.close(), postgres?.destroy(), redis?.stop()]);
  });

  it('keeps running and serving, answers 503 meanwhile, records every call after, and stops cleanly', async () => {
    const { listingId, call, me, answers } = await startFreeListing(apiClient(proxyUrl), proxyUrl, seller.url);
    const load = startLoad(call);
    for (const mode of ['fast', 'immediate'] as const) {
      const letGo = await catchConsumerMidTransaction(postgres.url);
      await postgres.stop(mode);
      await letGo();
      await eventually(async () => expect((await me()).status).toBe(503), 10_000);
      await new Promise((resolve) => setTimeout(resolve, 4_000));
      expect(exit).toBeNull();
      await postgres.start();
      await eventually(async () => expect((await me()).status).toBe(200), 20_000);
    }
    answers.push(...(await load.stop()));

    expect(exit).toBeNull();
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    expect(await expectAllRecorded(postgres.url, listingId, answers)).toBe(answers.length);
    // The guard's lines, a crash, or a 500 (the error handler logs "unhandled error"): none of them.
    expect(output).not.toMatch(/unhandled|uncaught|triggerUncaughtException/i);

    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    await gone;
    expect(exit).toEqual({ code: 0, signal: null });
  }, 90_000);
});
