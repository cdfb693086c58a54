import { randomBytes } from 'node:crypto';
import { redisKeys } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createGatewayScripts, type PaidAdmissionRequest } from '../src/admission/index.js';

const redis = new Redis(process.env['TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379');
const keys = redisKeys(`t:${randomBytes(6).toString('hex')}:`);
const scripts = createGatewayScripts(redis, keys);
const EPOCH = 'epoch-1';
const payment = (sig: string, requestId?: string) =>
  JSON.stringify({
    rail: 'solana-transfer',
    network: 'solana:test',
    payer: 'w',
    amount_atomic: '1000',
    asset: 'usdc',
    tx: sig,
    proof_ids: [`tx:solana:test:${sig}`],
    ...(requestId ? { payment_request_id: requestId } : {}),
  });
let n = 0;
const request = (sig: string, requestId?: string, over: Partial<PaidAdmissionRequest> = {}): PaidAdmissionRequest => ({
  keyId: 'key_1',
  listingId: 'lst_1',
  keyLimitPerMinute: 6000,
  listingLimitPerMinute: 6000,
  startEvent: '{"type":"gateway.start"}',
  buyerId: 'agt_buyer',
  day: '20261203',
  spendCapAtomic: '2000',
  priceAtomic: '1000',
  gatewayRequestId: `gr_${++n}`,
  epoch: EPOCH,
  proofId: `tx:solana:test:${sig}`,
  alreadySettled: true,
  deadlineMs: Date.now() + 60_000,
  verified: { payment: payment(sig, requestId), settlement: '', ttlSeconds: 3600 },
  ...over,
});
const issue = (id: string, reserveMs = 60_000) =>
  scripts.admitUnpaid({ ...request('x'), paymentRequestId: id, reserveMs });
const spent = async () => redis.get(keys.spend('agt_buyer', '20261203'));

beforeEach(async () => {
  await redis.set(keys.epoch, EPOCH);
  for (const k of [
    keys.reservations('agt_buyer'),
    keys.reservationsByPrefix('agt_buyer'),
    keys.reservationsTotal('agt_buyer'),
    keys.spend('agt_buyer', '20261203'),
  ])
    await redis.del(k);
});
afterAll(() => redis.disconnect());

/**
 * Spend-cap reservations under the orders a review found unkind (issue 12): payments naming no request taking a named
 * one's room, a refused call given back, a reservation set that expired whole. Script level, on a real Redis.
 */
describe('spend-cap reservations', () => {
  it('a payment naming its request still fits when one naming none took its reservation (same listing)', async () => {
    // Two requirements issued for lst_1 under a cap for two calls; ids chosen so 'pay_a' sorts first.
    expect(await issue('pay_a')).toMatchObject({ outcome: 'payment_required' });
    expect(await issue('pay_b')).toMatchObject({ outcome: 'payment_required' });
    // pay_b is paid with x402/EVM (names nothing): takes lst_1|pay_a (first by lex).
    expect(await scripts.admitPaid(request('evm1'))).toMatchObject({ outcome: 'admitted' });
    // pay_a is paid by a Solana transfer naming pay_a: its own reservation is gone, pay_b's is the listing's other.
    expect(await scripts.admitPaid(request('sol1', 'pay_a'))).toMatchObject({ outcome: 'admitted' });
    expect(await spent()).toBe('2000');
  });

  it('a call refused past the cap and given back takes nothing off the spend: the next payment is refused too', async () => {
    await redis.set(keys.spend('agt_buyer', '20261203'), '2000'); // cap full
    const refused = request('sol2');
    expect(await scripts.admitPaid(refused)).toMatchObject({ outcome: 'spend_cap_refund' });
    // The proxy never got the answer (Redis silent for the resolve budget): #abandon gives the proof back.
    await scripts.release({
      gatewayRequestId: refused.gatewayRequestId,
      proofIds: [refused.proofId],
      proofId: refused.proofId,
      buyerId: 'agt_buyer',
      day: '20261203',
      priceAtomic: '1000',
      mode: 'give',
    });
    expect(await spent()).toBe('2000');
    expect(await scripts.admitPaid(request('sol3'))).toMatchObject({ outcome: 'spend_cap_refund' });
    expect(await spent()).toBe('2000');
  });

  it('a reservation set that expired whole takes its total with it', async () => {
    expect(await issue('pay_long')).toMatchObject({ outcome: 'payment_required' });
    expect(await scripts.admitPaid(request('sol4', 'pay_long'))).toMatchObject({ outcome: 'admitted' });
    expect(await issue('pay_short')).toMatchObject({ outcome: 'payment_required' });
    // The set and its index expire (their TTL ran out while the agent was idle); the total outlived them.
    await redis.del(keys.reservations('agt_buyer'), keys.reservationsByPrefix('agt_buyer'));
    expect(await redis.get(keys.reservationsTotal('agt_buyer'))).toBe('1000');
    // Spent 1000, nothing live: one more fits under the cap of 2000.
    expect(await issue('pay_new')).toMatchObject({ outcome: 'payment_required' });
  });
});
