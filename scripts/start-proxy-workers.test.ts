import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type PostgresProcess,
  type RedisProcess,
  startPostgresProcess,
  startRedisProcess,
} from '../control-plane/test/fault-services.js';
import { apiClient } from '../control-plane/test/helpers.js';
import { answerOf, expectAllRecorded, startFreeListing } from '../control-plane/test/outage-support.js';
import { eventually, startSeller, type TestSeller } from '../proxy/test/stack.js';
import { type StartedStack, startStack } from './start-support.js';

/** The proxy workers' pids by index, as npm start says them (the latest line for each index). */
const workersOf = (output: string): Map<number, number> =>
  new Map([...output.matchAll(/proxy worker (\d+) listening \(pid (\d+)\)/g)].map((m) => [Number(m[1]), Number(m[2])]));
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * Issue 13: under `npm start` the proxy runs in processes of its own, never on the control plane's event loop;
 * `CROCHET_PROXY_WORKERS` runs several on the one public port. A worker that dies is replaced, and the port keeps
 * serving; a stop ends every worker.
 */
describe('npm start with CROCHET_PROXY_WORKERS=2', () => {
  let postgres: PostgresProcess;
  let redis: RedisProcess;
  let seller: TestSeller;
  let stack: StartedStack;

  beforeAll(async () => {
    [postgres, redis, seller] = await Promise.all([startPostgresProcess(), startRedisProcess(), startSeller()]);
    stack = await startStack({ databaseUrl: postgres.url, redisUrl: redis.url }, { CROCHET_PROXY_WORKERS: '2' });
  });
  afterAll(async () => {
    await stack?.stop(15_000);
    await Promise.all([seller?.close(), postgres?.destroy(), redis?.stop()]);
  });

  it('serves from two proxy processes, replaces one that is killed, and stops them all', async () => {
    expect(stack.output()).toMatch(/proxy: 2 worker processes/);
    // Two metrics listeners, one per worker, each answering with the proxy's own metrics.
    const metricsUrls = [...stack.output().matchAll(/(http:\/\/[^ ,]+\/metrics)/g)].map((m) => m[1]!);
    const proxyMetrics = metricsUrls.slice(0, 2);
    expect(new Set(proxyMetrics).size).toBe(2);
    for (const url of proxyMetrics) {
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(await res.text()).toMatch(/crochet_gateway_/);
    }
    const first = workersOf(stack.output());
    expect([...first.keys()].sort()).toEqual([0, 1]);
    const workers = [first.get(0)!, first.get(1)!];
    for (const pid of workers) expect(alive(pid)).toBe(true);

    const { listingId, call, answers } = await startFreeListing(apiClient(stack.proxyUrl), stack.proxyUrl, seller.url);
    // Each call on a new connection: the primary hands connections to the workers in turn, so both serve.
    const callOk = async () => {
      const answer = answerOf(await call());
      expect(answer.status).toBe(200);
      answers.push(answer);
    };
    for (let i = 0; i < 20; i++) await callOk();
    // Recorded before a worker dies: what a killed process had not yet written out is the next test's subject.
    expect(await expectAllRecorded(postgres.url, listingId, answers)).toBe(answers.length);

    // A worker killed outright: the port keeps answering (the other worker), and a new worker takes its place.
    process.kill(workers[0]!, 'SIGKILL');
    await eventually(() => expect(alive(workers[0]!)).toBe(false), 5_000);
    for (let i = 0; i < 5; i++) await callOk();
    await eventually(() => {
      const now = workersOf(stack.output());
      expect(now.get(0)).not.toBe(workers[0]);
      expect(alive(now.get(0)!)).toBe(true);
      expect(now.get(1)).toBe(workers[1]);
    }, 15_000);
    expect(stack.output()).toMatch(/proxy worker 0 exited \(SIGKILL\); starting a new one/);
    // The new worker listens once it is a child; calls on new connections reach both again.
    for (let i = 0; i < 10; i++) await callOk();
    // Every answer from the surviving and the new worker is recorded too.
    expect(await expectAllRecorded(postgres.url, listingId, answers)).toBe(answers.length);
    expect(stack.output()).not.toMatch(/unhandled|uncaught|triggerUncaughtException/i);

    const replacements = [...workersOf(stack.output()).values()];
    expect(await stack.stop()).toEqual({ code: 0, signal: null });
    for (const pid of replacements) expect(alive(pid)).toBe(false);
  }, 120_000);
});
