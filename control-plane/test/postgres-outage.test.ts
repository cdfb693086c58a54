import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, expectApiError, rawRequest } from '../../proxy/test/stack.js';
import { reconcileStats } from '../src/ledger/reconcile.js';
import { scoreStats } from '../src/score/job.js';
import {
  catchConsumerMidTransaction,
  expectAllRecorded,
  type OutageStack,
  startFreeListing,
  startLoad,
  startOutageStack,
} from './outage-support.js';

/**
 * DESIGN §4: "PostgreSQL down: events wait in the stream; no process exits; the control plane answers 503." Under a
 * steady free load, PostgreSQL is stopped (fast, then immediate shutdown) and started again: the servers live on,
 * control-plane routes answer 503 STATE_UNAVAILABLE with Retry-After and readiness says so, the gateway keeps
 * answering, and afterwards every call a client saw answered is recorded once with its outcome and the periodic
 * jobs (reconciliation, scores, config resync) run again.
 */
describe('PostgreSQL stopped and started under load', () => {
  const OUTAGE_MS = 5_000;
  let outage: OutageStack;
  /** Whatever reached the process-wide last resort while this file ran (the servers run in this process). */
  const unhandled: unknown[] = [];
  const record = (error: unknown) => unhandled.push(error);

  beforeAll(async () => {
    process.on('unhandledRejection', record);
    process.on('uncaughtException', record);
    // The periodic jobs at short intervals, so that they meet the outages and must carry on after them.
    outage = await startOutageStack({
      CROCHET_RECONCILE_INTERVAL_SECONDS: '1',
      CROCHET_SCORE_INTERVAL_SECONDS: '1',
      CROCHET_CONFIG_RESYNC_SECONDS: '5',
    });
  });
  afterAll(async () => {
    await outage?.stop();
    process.off('unhandledRejection', record);
    process.off('uncaughtException', record);
  });

  it('survives, answers 503 while it is down, keeps the gateway serving, and records everything after', async () => {
    const { postgres, stack, seller } = outage;
    const { plane } = stack;
    const proxy = stack.proxies[0]!;
    const { listingId, call, me, answers } = await startFreeListing(plane, proxy.url, seller.url);
    const ready = () => rawRequest(plane.url, '/readyz', { method: 'GET' });

    const gateway = startLoad(call);
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
    expect(await expectAllRecorded(plane.config.databaseUrl, listingId, answers)).toBe(answers.length);

    // The periodic jobs failed while it was down and run again now: none of them stopped at its failure.
    const score = () => scoreStats().runs + scoreStats().skipped;
    const before = { reconcile: reconcileStats().runs, score: score(), published: plane.deps.publisher.published };
    await eventually(() => {
      expect(reconcileStats().runs).toBeGreaterThan(before.reconcile);
      expect(score()).toBeGreaterThan(before.score);
      expect(plane.deps.publisher.published).toBeGreaterThan(before.published);
    }, 15_000);
    expect(unhandled).toEqual([]);
  }, 90_000);
});
