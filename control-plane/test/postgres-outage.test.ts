import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  eventually,
  expectApiError,
  gatewayCall,
  rawRequest,
  startSeller,
  startTestStack,
  type TestSeller,
  type TestStack,
} from '../../proxy/test/stack.js';
import { type PostgresProcess, type RedisProcess, startPostgresProcess, startRedisProcess } from './fault-services.js';
import { type Answer, answerOf, catchConsumerMidTransaction, expectAllRecorded, startLoad } from './outage-support.js';

/**
 * DESIGN §4: "PostgreSQL down: events wait in the stream; no process exits; the control plane answers 503." Under a
 * steady free load, PostgreSQL is stopped (fast, then immediate shutdown) and started again: the servers live on,
 * control-plane routes answer 503 STATE_UNAVAILABLE with Retry-After and readiness says so, the gateway keeps
 * answering, and afterwards every call a client saw answered is recorded once with its outcome.
 */
describe('PostgreSQL stopped and started under load', () => {
  const OUTAGE_MS = 5_000;
  let postgres: PostgresProcess;
  let redis: RedisProcess;
  let stack: TestStack;
  let seller: TestSeller;
  /** Whatever reached the process-wide last resort while this file ran (the servers run in this process). */
  const unhandled: unknown[] = [];
  const record = (error: unknown) => unhandled.push(error);

  beforeAll(async () => {
    process.on('unhandledRejection', record);
    process.on('uncaughtException', record);
    [postgres, redis] = await Promise.all([startPostgresProcess(), startRedisProcess()]);
    stack = await startTestStack({
      services: { databaseUrl: postgres.url, redisUrl: redis.url },
      proxyEnv: { CROCHET_KEY_RATE_LIMIT_PER_MINUTE: '1000000' },
    });
    seller = await startSeller();
  });
  afterAll(async () => {
    await seller?.close();
    await postgres?.start().catch(() => {}); // a failed test may leave it stopped; the stack's cleanup needs it
    await stack?.stop();
    await Promise.all([postgres?.destroy(), redis?.stop()]);
    process.off('unhandledRejection', record);
    process.off('uncaughtException', record);
  });

  it('survives, answers 503 while it is down, keeps the gateway serving, and records everything after', async () => {
    const { plane } = stack;
    const proxy = stack.proxies[0]!;
    const sellerAgent = await plane.register('seller');
    const buyer = await plane.register('buyer');
    const { listing } = await plane.createListing(sellerAgent.apiKey, { private_endpoint_url: `${seller.url}/echo` });
    const answers: Answer[] = [];
    await eventually(async () => {
      const res = await gatewayCall(proxy, listing.id, buyer.apiKey, { body: { n: 1 } });
      expect(res.status).toBe(200); // the proxy knows the listing
      answers.push(answerOf(res));
    });
    const me = () =>
      rawRequest(proxy.url, '/api/v1/me', { method: 'GET', headers: { authorization: `Bearer ${buyer.apiKey}` } });
    const ready = () => rawRequest(plane.url, '/readyz', { method: 'GET' });

    const gateway = startLoad(() => gatewayCall(proxy, listing.id, buyer.apiKey, { body: { n: 2 } }));
    const api = startLoad(me, { workers: 1, pauseMs: 50 });
    for (const mode of ['fast', 'immediate'] as const) {
      // The moment the outage starts, some clients are checked out of the control plane's pool: one between two
      // queries of a transaction (held here), and the events consumer's, inside its transaction (its insert waits on
      // a lock this test holds, while the load keeps events coming).
      const held = await plane.deps.pool.connect();
      const letGo = await catchConsumerMidTransaction(plane.config.databaseUrl);
      await postgres.stop(mode);
      held.release();
      await letGo();
      const outageEnds = Date.now() + OUTAGE_MS;
      const gatewaySeen = gateway.answers.length;

      // Through the proxy, as a client sees it: the control plane's own 503, in the envelope, with Retry-After.
      const down = await eventually(async () => {
        const res = await me();
        expect(res.status, `${mode}: ${res.text}`).toBe(503);
        return res;
      }, 10_000);
      expectApiError(down, 503, 'STATE_UNAVAILABLE');
      expect(Number(down.headers['retry-after'])).toBeGreaterThan(0);
      const readiness = await ready();
      expect(readiness.status).toBe(503);
      expect(readiness.json.data).toMatchObject({ status: 'unavailable', checks: { postgres: 'unavailable' } });
      const challenge = await rawRequest(proxy.url, '/api/v1/auth/challenge', { method: 'POST' });
      expectApiError(challenge, 503, 'STATE_UNAVAILABLE');

      await new Promise((resolve) => setTimeout(resolve, Math.max(0, outageEnds - Date.now())));
      const during = gateway.answers.slice(gatewaySeen);
      expect(during.length).toBeGreaterThan(0);
      expect(during.filter((a) => a.status !== 200)).toEqual([]);

      await postgres.start();
      await eventually(async () => expect((await ready()).status).toBe(200), 20_000);
      await eventually(async () => expect((await me()).status).toBe(200), 10_000);
    }
    answers.push(...(await gateway.stop()));
    const apiAnswers = await api.stop();

    // The API answered throughout: 200, or 503 STATE_UNAVAILABLE with Retry-After; never a 500, never no answer.
    const refused = apiAnswers.filter((a) => a.status === 503);
    expect(refused.length).toBeGreaterThan(0);
    expect(apiAnswers.filter((a) => a.status !== 200 && a.status !== 503)).toEqual([]);
    expect(refused.filter((a) => a.code !== 'STATE_UNAVAILABLE' || !a.retryAfter)).toEqual([]);
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    expect(await expectAllRecorded(plane.config.databaseUrl, listing.id, answers)).toBe(answers.length);
    expect(unhandled).toEqual([]);
  });
});
