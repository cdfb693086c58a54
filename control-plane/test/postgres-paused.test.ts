import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, rawRequest } from '../../proxy/test/stack.js';
import {
  expectAllRecorded,
  type OutageStack,
  startFreeListing,
  startLoad,
  startOutageStack,
} from './outage-support.js';

/**
 * A PostgreSQL that answers nothing (SIGSTOP: connections stay open, the kernel still accepts new ones) is worse
 * than one that is down: nothing fails by itself. The pool's client-side bounds end every wait — 5 s to connect or
 * to get a connection, 15 s for a reply (db.ts) — so requests answer 503 within a bound instead of hanging, readiness
 * answers at once, the gateway keeps serving, and it all resumes when PostgreSQL does.
 */
describe('PostgreSQL paused under load', () => {
  /** The liveness bound for any one answer: the longest client-side wait (15 s), plus room for a loaded machine. */
  const ANSWER_BOUND_MS = 17_500;
  // Longer than the bound, so that a call left waiting for PostgreSQL itself would break it.
  const PAUSE_MS = 20_000;
  let outage: OutageStack;
  beforeAll(async () => {
    outage = await startOutageStack();
  });
  afterAll(() => outage?.stop());

  it('answers 503 within a bound while it is paused, keeps the gateway serving, and resumes with it', async () => {
    const { postgres, stack, seller } = outage;
    const { plane } = stack;
    const proxy = stack.proxies[0]!;
    const { listingId, call, me, answers } = await startFreeListing(plane, proxy.url, seller.url);
    const ready = () => rawRequest(plane.url, '/readyz', { method: 'GET' });

    const gateway = startLoad(call);
    // Through the proxy, as clients call it (its passthrough hands a 503 on instead of retrying it). Two clients: the
    // pool's idle connections are taken (and stuck) first, then new ones are tried.
    const api = startLoad(() => me(proxy.url), { workers: 2, pauseMs: 200 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    postgres.pause();
    const pausedAt = Date.now();

    const readiness = await eventually(async () => {
      const res = await ready();
      expect(res.status).toBe(503);
      return res;
    }, 5_000);
    expect(readiness.json.data.checks).toEqual({ postgres: 'unavailable', redis: 'ok' });
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, pausedAt + PAUSE_MS - Date.now())));
    postgres.resume();

    await eventually(async () => expect((await ready()).status).toBe(200), 20_000);
    await eventually(async () => expect((await me(plane.url)).status).toBe(200), 20_000);
    answers.push(...(await gateway.stop()));
    const apiAnswers = await api.stop();

    // Every API call answered — 200, or 503 STATE_UNAVAILABLE with Retry-After — within the bound; some were 503.
    expect(apiAnswers.filter((a) => a.status !== 200 && a.status !== 503)).toEqual([]);
    expect(apiAnswers.filter((a) => a.status === 503 && (a.code !== 'STATE_UNAVAILABLE' || !a.retryAfter))).toEqual([]);
    expect(apiAnswers.filter((a) => a.status === 503).length).toBeGreaterThan(0);
    expect(apiAnswers.filter((a) => a.ms! > ANSWER_BOUND_MS)).toEqual([]);
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    expect(await expectAllRecorded(plane.config.databaseUrl, listingId, answers, 40_000)).toBe(answers.length);
  }, 90_000);
});
