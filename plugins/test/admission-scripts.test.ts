import { randomBytes } from 'node:crypto';
import { EVENT_FIELD, EVENT_PAYMENT_FIELD, EVENT_TIME_FIELD, redisKeys } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createGatewayScripts, type PaidAdmissionRequest } from '../src/admission/index.js';

/** The gateway's Redis scripts against a real Redis: exactly-once, idempotent, bounded in time, epoch-bound. */

const redis = new Redis(process.env['TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379');
const keys = redisKeys(`t:${randomBytes(6).toString('hex')}:`);
const scripts = createGatewayScripts(redis, keys);
const EPOCH = 'epoch-1';
const PAYMENT = JSON.stringify({
  rail: 'solana-transfer',
  network: 'solana:test',
  payer: 'buyer-wallet',
  amount_atomic: '1000',
  asset: 'usdc',
  tx: 'sig1',
  proof_ids: ['tx:solana:test:sig1', 'extra:1'],
});

let n = 0;
const request = (over: Partial<PaidAdmissionRequest> = {}): PaidAdmissionRequest => ({
  keyId: 'key_1',
  listingId: 'lst_1',
  keyLimitPerMinute: 600,
  listingLimitPerMinute: 6000,
  startEvent: '{"type":"gateway.start"}',
  buyerId: 'agt_buyer',
  day: '20261203',
  spendCapAtomic: null,
  priceAtomic: '1000',
  gatewayRequestId: `gr_${++n}`,
  epoch: EPOCH,
  proofId: 'tx:solana:test:sig1',
  alreadySettled: true,
  deadlineMs: Date.now() + 60_000,
  verified: { payment: PAYMENT, settlement: '', ttlSeconds: 3600 },
  ...over,
});

const release = (gatewayRequestId: string, mode: 'give' | 'hold') =>
  scripts.release({
    gatewayRequestId,
    proofIds: [],
    proofId: 'tx:solana:test:sig1',
    buyerId: 'agt_buyer',
    day: '20261203',
    priceAtomic: '1000',
    mode,
  });
const entries = async () => (await redis.xrange(keys.events, '-', '+')).map(([, fields]) => fields);
const cleanup = async () => {
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${keys.epoch.slice(0, -'epoch'.length)}*`, 'COUNT', 500);
    if (found.length) await redis.del(...found);
    cursor = next;
  } while (cursor !== '0');
};

beforeAll(async () => {
  await redis.ping();
});
beforeEach(async () => {
  await cleanup();
  await redis.set(keys.epoch, EPOCH);
});
afterAll(async () => {
  await cleanup();
  redis.disconnect();
});

describe('paid admission', () => {
  it('consumes every proof id of the payment once, appends the start as fields, and counts the spend', async () => {
    const first = request();
    const admitted = await scripts.admitPaid(first);
    expect(admitted).toMatchObject({ outcome: 'admitted', payment: PAYMENT });
    expect(await redis.get(keys.paymentUsed('tx:solana:test:sig1'))).toBe(first.gatewayRequestId);
    expect(await redis.get(keys.paymentUsed('extra:1'))).toBe(first.gatewayRequestId);
    // The start carries Redis's time of admission: the control plane orders consumed proofs by it.
    expect(await entries()).toEqual([
      [
        EVENT_FIELD,
        first.startEvent,
        EVENT_PAYMENT_FIELD,
        PAYMENT,
        EVENT_TIME_FIELD,
        expect.stringMatching(/^\d{13}$/),
      ],
    ]);
    expect(await redis.get(keys.spend('agt_buyer', '20261203'))).toBe('1000');
    // Another request with the same proof, by either of its ids: used, naming the first.
    expect(await scripts.admitPaid(request())).toEqual({ outcome: 'used', gatewayRequestId: first.gatewayRequestId });
    expect(await scripts.admitPaid(request({ proofId: 'extra:1' }))).toEqual({
      outcome: 'used',
      gatewayRequestId: first.gatewayRequestId,
    });
  });

  it('is idempotent by gateway request id: run again (a retry after a timeout), it admits without a second effect', async () => {
    const once = request();
    await scripts.admitPaid(once);
    const again = await scripts.admitPaid({ ...once, verified: undefined });
    expect(again).toMatchObject({ outcome: 'admitted', payment: PAYMENT, streamId: '' });
    expect(await entries()).toHaveLength(1);
    expect(await redis.get(keys.spend('agt_buyer', '20261203'))).toBe('1000');
  });

  it('does nothing once its deadline (in Redis time) has passed', async () => {
    const late = request({ deadlineMs: Date.now() - 1 });
    expect(await scripts.admitPaid(late)).toEqual({ outcome: 'late' });
    expect(await redis.exists(keys.paymentUsed('tx:solana:test:sig1'), keys.paymentVerified(late.proofId))).toBe(0);
    expect(await entries()).toHaveLength(0);
  });

  it('refuses a Redis on another epoch (or none: a Redis that lost everything) without any effect', async () => {
    expect(await scripts.admitPaid(request({ epoch: 'epoch-0' }))).toEqual({ outcome: 'epoch' });
    await redis.del(keys.epoch);
    expect(await scripts.admitPaid(request())).toEqual({ outcome: 'epoch' });
    expect(await entries()).toHaveLength(0);
    expect(await redis.exists(keys.paymentVerified('tx:solana:test:sig1'))).toBe(0);
  });

  it('answers unverified when no verification is recorded, and binds a verification to its listing and buyer', async () => {
    expect(await scripts.admitPaid(request({ verified: undefined }))).toEqual({ outcome: 'unverified' });
    // Recorded for another listing, then refused by the cap: nothing consumed.
    await scripts.admitPaid(request({ listingId: 'lst_other', spendCapAtomic: '0', alreadySettled: false }));
    expect(await scripts.admitPaid(request({ verified: undefined }))).toEqual({ outcome: 'mismatch' });
  });

  it('past the daily cap: untouched when the money has not moved, consumed and recorded for refund when it has', async () => {
    expect(await scripts.admitPaid(request({ spendCapAtomic: '500', alreadySettled: false }))).toEqual({
      outcome: 'spend_cap',
      spentAtomic: '0',
    });
    expect(await entries()).toHaveLength(0);
    const moved = request({ spendCapAtomic: '500' });
    expect(await scripts.admitPaid(moved)).toMatchObject({ outcome: 'spend_cap_refund', payment: PAYMENT });
    expect(await redis.get(keys.paymentUsed('extra:1'))).toBe(moved.gatewayRequestId);
    expect(await entries()).toHaveLength(1);
    expect(await redis.get(keys.spend('agt_buyer', '20261203'))).toBeNull();
    // Its reply lost, the same request runs again: the same refusal, never "admitted" past the cap.
    expect(await scripts.admitPaid({ ...moved, verified: undefined })).toMatchObject({
      outcome: 'spend_cap_refund',
      payment: PAYMENT,
    });
    expect(await redis.get(keys.spend('agt_buyer', '20261203'))).toBeNull();
  });
});

describe('giving a proof back', () => {
  it('give: releases every id this request holds, gives the spend back once, never another request’s proof', async () => {
    const holder = request();
    await scripts.admitPaid(holder);
    expect(await release('gr_other', 'give')).toBe(0);
    expect(await release(holder.gatewayRequestId, 'give')).toBe(2);
    expect(await release(holder.gatewayRequestId, 'give')).toBe(0);
    expect(await redis.get(keys.spend('agt_buyer', '20261203'))).toBe('0');
    expect(await redis.exists(keys.paymentUsed('tx:solana:test:sig1'), keys.paymentUsed('extra:1'))).toBe(0);
    // The proof pays for the next call.
    expect(await scripts.admitPaid(request({ verified: undefined }))).toMatchObject({ outcome: 'admitted' });
  });

  it('hold: keeps the spend counted for the retry of a pending settlement, which is neither capped nor counted again', async () => {
    const pending = request({ spendCapAtomic: '1000' });
    await scripts.admitPaid(pending);
    expect(await release(pending.gatewayRequestId, 'hold')).toBe(2);
    expect(await redis.get(keys.spend('agt_buyer', '20261203'))).toBe('1000');
    const retry = request({ spendCapAtomic: '1000', verified: undefined });
    expect(await scripts.admitPaid(retry)).toMatchObject({ outcome: 'admitted' });
    expect(await redis.get(keys.spend('agt_buyer', '20261203'))).toBe('1000');
  });

  it('after a proof is given back, concurrent retries with it: exactly one is admitted', async () => {
    const first = request();
    await scripts.admitPaid(first);
    await release(first.gatewayRequestId, 'give');
    const retries = await Promise.all([1, 2, 3, 4].map(() => scripts.admitPaid(request({ verified: undefined }))));
    expect(retries.filter((r) => r.outcome === 'admitted')).toHaveLength(1);
    expect(retries.filter((r) => r.outcome === 'used')).toHaveLength(3);
  });
});

describe('spend reservations under a daily cap', () => {
  const issue = (id: string, over: Partial<PaidAdmissionRequest> = {}) =>
    scripts.admitUnpaid({ ...request(over), spendCapAtomic: '3000', paymentRequestId: id, reserveMs: 60_000 });
  const named = (id: string) => JSON.stringify({ ...JSON.parse(PAYMENT), payment_request_id: id });
  const spent = async () => redis.get(keys.spend('agt_buyer', '20261203'));
  const total = async () => redis.get(keys.reservationsTotal('agt_buyer'));

  it('issues requirements while the spend and the live reservations leave room, then refuses', async () => {
    for (const id of ['pay_a', 'pay_b', 'pay_c'])
      expect(await issue(id)).toMatchObject({ outcome: 'payment_required' });
    expect(await issue('pay_d')).toMatchObject({ outcome: 'spend_cap', spentAtomic: '0', reservedAtomic: '3000' });
    expect(await total()).toBe('3000');
  });

  it('a payment takes over its own reservation: counted once, the cap still full', async () => {
    for (const id of ['pay_a', 'pay_b', 'pay_c']) await issue(id);
    const paid = request({
      spendCapAtomic: '3000',
      verified: { payment: named('pay_b'), settlement: '', ttlSeconds: 60 },
    });
    expect(await scripts.admitPaid(paid)).toMatchObject({ outcome: 'admitted' });
    expect(await spent()).toBe('1000');
    expect(await total()).toBe('2000');
    expect(await redis.zrange(keys.reservations('agt_buyer'), '0', '-1')).toEqual(
      expect.not.arrayContaining(['lst_1|pay_b|1000']),
    );
    expect(await issue('pay_d')).toMatchObject({ outcome: 'spend_cap', spentAtomic: '1000', reservedAtomic: '2000' });
  });

  it('a payment naming no request takes over a reservation of its listing; without one it must fit beside them', async () => {
    await issue('pay_a');
    await issue('pay_b', { listingId: 'lst_2' });
    const evm = request({ spendCapAtomic: '3000' }); // PAYMENT names no payment request
    expect(await scripts.admitPaid(evm)).toMatchObject({ outcome: 'admitted' });
    expect(await redis.zrange(keys.reservationsByPrefix('agt_buyer'), '0', '-1')).toEqual(['lst_2|pay_b|1000']);
    // spend 1000 + reserved 1000: a payment for lst_1 with no reservation fits once more, not twice.
    const other = (sig: string) =>
      request({
        spendCapAtomic: '3000',
        proofId: `tx:solana:test:${sig}`,
        verified: {
          payment: JSON.stringify({ ...JSON.parse(PAYMENT), tx: sig, proof_ids: [`tx:solana:test:${sig}`] }),
          settlement: '',
          ttlSeconds: 60,
        },
      });
    expect(await scripts.admitPaid(other('sig2'))).toMatchObject({ outcome: 'admitted' });
    expect(await scripts.admitPaid(other('sig3'))).toMatchObject({ outcome: 'spend_cap_refund', spentAtomic: '2000' });
    expect(await spent()).toBe('2000');
  });

  it('expired reservations are dropped, and a proof given back gets its reservation back', async () => {
    await scripts.admitUnpaid({
      ...request(),
      spendCapAtomic: '3000',
      paymentRequestId: 'pay_old',
      reserveMs: 1,
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    for (const id of ['pay_a', 'pay_b', 'pay_c'])
      expect(await issue(id)).toMatchObject({ outcome: 'payment_required' });
    expect(await total()).toBe('3000');
    const paid = request({
      spendCapAtomic: '3000',
      verified: { payment: named('pay_a'), settlement: '', ttlSeconds: 60 },
    });
    await scripts.admitPaid(paid);
    expect(await total()).toBe('2000');
    await release(paid.gatewayRequestId, 'give');
    expect(await spent()).toBe('0');
    expect(await total()).toBe('3000');
    expect(await release(paid.gatewayRequestId, 'give')).toBe(0);
    expect(await total()).toBe('3000');
  });

  it('a refunded call gives its spend back once, only for the request that consumed the proof', async () => {
    const paid = request({ spendCapAtomic: '3000' });
    await scripts.admitPaid(paid);
    const back = { proofId: paid.proofId, buyerId: 'agt_buyer', day: '20261203', priceAtomic: '1000' };
    expect(await scripts.returnSpend({ ...back, gatewayRequestId: 'gr_other' })).toBe(false);
    expect(await scripts.returnSpend({ ...back, gatewayRequestId: paid.gatewayRequestId })).toBe(true);
    expect(await scripts.returnSpend({ ...back, gatewayRequestId: paid.gatewayRequestId })).toBe(false);
    expect(await spent()).toBe('0');
  });
});

describe('unpaid and free admission', () => {
  it('a 402 is counted and recorded; past the cap it says so', async () => {
    const unpaid = { ...request(), spendCapAtomic: '1500', paymentRequestId: 'pay_1', reserveMs: 60_000 };
    expect(await scripts.admitUnpaid(unpaid)).toMatchObject({ outcome: 'payment_required', allowed: true });
    await redis.set(keys.spend('agt_buyer', '20261203'), '1000');
    expect(await scripts.admitUnpaid(unpaid)).toMatchObject({ outcome: 'spend_cap', spentAtomic: '1000' });
    expect(await entries()).toHaveLength(2);
  });

  it('a free call past its limit appends nothing', async () => {
    const free = {
      keyId: 'key_f',
      listingId: 'lst_f',
      keyLimitPerMinute: 1,
      listingLimitPerMinute: 100,
      startEvent: '{}',
    };
    expect(await scripts.admitFree(free)).toMatchObject({
      allowed: true,
      streamId: expect.stringMatching(/^\d+-\d+$/),
    });
    expect(await scripts.admitFree(free)).toMatchObject({ allowed: false, streamId: '' });
    expect(await entries()).toHaveLength(1);
  });
});
