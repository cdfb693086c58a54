import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisProcess, startRedisProcess } from '../../control-plane/test/fault-services.js';
import {
  eventually,
  gatewayCall,
  rawRequest,
  startSeller,
  startTestStack,
  type TestSeller,
  type TestStack,
} from './stack.js';

/**
 * Free calls under Redis faults, against a real redis-server under a bounded load: paused (SIGSTOP) for 1.5 s, then
 * killed for 2 s and restarted empty. Free calls fall back to each proxy's own limits and keep being served (≥ 99 %
 * 2xx), the proxy stays responsive (its event writes back off instead of retrying per call), and every call a
 * client was answered is recorded once, in a final state, once Redis is back — the outbox appends again what the
 * lost Redis held.
 */

let redisServer: RedisProcess;
let stack: TestStack;
let seller: TestSeller;
let listing: string;
let buyerKey: string;

beforeAll(async () => {
  redisServer = await startRedisProcess();
  stack = await startTestStack({ proxies: 2, services: { redisUrl: redisServer.url } });
  seller = await startSeller();
  const sellerKey = (await stack.plane.register('seller')).apiKey;
  buyerKey = (await stack.plane.register('buyer')).apiKey;
  listing = (
    await stack.plane.createListing(sellerKey, { private_endpoint_url: seller.url, rate_limit_per_minute: 100_000 })
  ).listing.id;
}, 60_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
  await redisServer?.stop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('free calls while Redis pauses, dies and comes back empty', () => {
  it('are served, and each answered call is recorded once in a final state', async () => {
    const answers: { status: number; id: string | undefined; ms: number }[] = [];
    let running = true;
    const client = async (i: number) => {
      while (running) {
        const started = performance.now();
        const res = await gatewayCall(stack.proxies[i % 2]!, listing, buyerKey, { body: { i } }).catch(() => null);
        answers.push({
          status: res?.status ?? 0,
          id: res?.headers['x-crochet-request-id'] as string | undefined,
          ms: performance.now() - started,
        });
        await sleep(20);
      }
    };
    const clients = Array.from({ length: 6 }, (_, i) => client(i));
    await sleep(800);
    redisServer.pause();
    await sleep(1_500);
    redisServer.resume();
    await sleep(800);
    await redisServer.kill();
    await sleep(2_000);
    await redisServer.start();
    await sleep(1_500);
    running = false;
    await Promise.all(clients);

    const ok = answers.filter((a) => a.status === 200);
    expect(answers.length).toBeGreaterThan(200);
    expect(ok.length / answers.length).toBeGreaterThanOrEqual(0.99);
    // While Redis was unreachable the proxy stayed responsive: no call waited on it for long.
    const slowest = Math.max(...answers.map((a) => a.ms));
    expect(slowest).toBeLessThan(2_000);

    const ids = ok.map((a) => a.id!);
    expect(new Set(ids).size).toBe(ids.length);
    // The seller saw each of those calls exactly once.
    const seen = seller.requests.map((r) => String(r.headers['x-crochet-request-id']));
    expect(new Set(seen).size).toBe(seen.length);
    for (const id of ids) expect(seen).toContain(id);

    // Every answered call ends up recorded, completed, once (the outbox appends again what the lost stream held).
    await eventually(async () => {
      await stack.plane.eventsConsumer.drain();
      const { rows } = await stack.plane.deps.pool.query(
        'SELECT id, status FROM gateway_requests WHERE id = ANY ($1)',
        [ids],
      );
      expect(rows).toHaveLength(ids.length);
      expect(rows.filter((r) => r.status !== 'completed')).toEqual([]);
    }, 30_000);
    const { rows: open } = await stack.plane.deps.pool.query(
      "SELECT count(*)::int AS n FROM gateway_requests WHERE status = 'forwarded'",
    );
    expect(open[0].n).toBe(0);
    // And the proxies are ready again once the control plane has restored the empty Redis (it republishes on its own
    // poll of the epoch: moments after, not at once).
    await eventually(async () => {
      for (const proxy of stack.proxies) {
        const ready = await rawRequest(proxy.url, '/readyz', { method: 'GET' });
        expect(ready.status).toBe(200);
      }
    }, 15_000);
  });
});
