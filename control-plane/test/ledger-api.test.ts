import { encodeCursor } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publish } from './events-support.js';
import { startTestControlPlane, TEST_REDIS_URL, type TestPlane } from './helpers.js';
import { paidEnd, paidStart } from './ledger-support.js';

/** §3.5 `GET /api/v1/ledger` and `/ledger/balances`: the caller's own entries only, by role, page by page. */
describe('ledger API', () => {
  let plane: TestPlane;
  let redis: Redis;
  let buyer: { apiKey: string; agentId: string };
  let seller: { apiKey: string; agentId: string };
  let stranger: { apiKey: string; agentId: string };
  let listingId: string;
  let refundedId: string;
  const paidIds: string[] = [];

  beforeAll(async () => {
    plane = await startTestControlPlane({ CROCHET_FEE_BPS: '1000' });
    redis = new Redis(TEST_REDIS_URL);
    buyer = await plane.register('buyer');
    seller = await plane.register('seller');
    stranger = await plane.register('stranger');
    const { listing } = await plane.createListing(seller.apiKey, {
      pricing_model: 'per_call',
      price: { amount: '0.01', currency: 'USDC' },
    });
    listingId = listing.id;
    const call = { listingId, sellerId: seller.agentId, buyerId: buyer.agentId };
    const events = [];
    for (let i = 0; i < 5; i++) {
      const start = paidStart(call, 10_000n);
      paidIds.push(start.id);
      events.push(paidEnd(start), start);
    }
    const refunded = paidStart(call, 10_000n);
    refundedId = refunded.id;
    events.push(refunded, paidEnd(refunded, 'refund_due'));
    await publish(redis, plane.config.redisPrefix, ...events);
    await plane.eventsConsumer.drain();
  });
  afterAll(async () => {
    redis?.disconnect();
    await plane?.stop();
  });

  it('shows the buyer their debits and refunds, with decimal amounts, the listing and the payment', async () => {
    const res = await plane.call('GET', '/api/v1/ledger?role=buyer', { key: buyer.apiKey });
    expect(res.status).toBe(200);
    expect(res.body.data).toHaveLength(7);
    expect(res.body.data.map((e: { entry_type: string }) => e.entry_type).sort()).toEqual([
      ...Array(6).fill('buyer_debit'),
      'refund_owed',
    ]);
    const debit = res.body.data.find((e: { entry_type: string }) => e.entry_type === 'buyer_debit');
    expect(debit).toMatchObject({
      amount: '-0.01',
      amount_atomic: '-10000',
      currency: 'USDC',
      role: 'buyer',
      account: 'paid',
      listing_id: listingId,
      payment: { network: 'eip155:8453', tx: expect.stringMatching(/^0x[0-9a-f]{64}$/) },
    });
    // The refund: the call is not charged, and its price is owed back until it is sent on chain.
    const refund = res.body.data.find((e: { entry_type: string }) => e.entry_type === 'refund_owed');
    expect(refund).toMatchObject({ amount: '0.01', gateway_request_id: refundedId, account: 'refund_due' });
    // As seller the buyer has nothing.
    expect((await plane.call('GET', '/api/v1/ledger?role=seller', { key: buyer.apiKey })).body.data).toEqual([]);
  });

  it('shows the seller their credits net of the configured fee, and pages through them', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res: Awaited<ReturnType<TestPlane['call']>> = await plane.call(
        'GET',
        `/api/v1/ledger?role=seller&limit=3${cursor ? `&cursor=${cursor}` : ''}`,
        { key: seller.apiKey },
      );
      expect(res.status).toBe(200);
      expect(res.body.data.length).toBeLessThanOrEqual(3);
      for (const e of res.body.data) {
        expect(e.role).toBe('seller');
        seen.push(`${e.entry_type} ${e.amount}`);
      }
      cursor = res.body.next_cursor;
    } while (cursor);
    // 10 % fee (CROCHET_FEE_BPS=1000): 0.01 → 0.009 to the seller; the refund reverses one credit.
    expect(seen.sort()).toEqual([...Array(6).fill('seller_credit 0.009'), 'seller_credit_reversal -0.009']);
    const one = await plane.call('GET', `/api/v1/ledger?gateway_request_id=${paidIds[0]}`, { key: seller.apiKey });
    expect(one.body.data).toHaveLength(1);
    const later = await plane.call('GET', `/api/v1/ledger?since=${new Date(Date.now() + 60_000).toISOString()}`, {
      key: seller.apiKey,
    });
    expect(later.body.data).toEqual([]);
    const bad = await plane.call('GET', '/api/v1/ledger?cursor=nope', { key: seller.apiKey });
    expect(bad.status).toBe(400);
    // A well-formed cursor past PostgreSQL's bigint is the client's mistake too: 400, not a database error.
    for (const id of ['9223372036854775808', '9999999999999999999']) {
      const outOfRange = await plane.call('GET', `/api/v1/ledger?cursor=${encodeCursor([id])}`, { key: seller.apiKey });
      expect([outOfRange.status, outOfRange.body.error.code]).toEqual([400, 'VALIDATION_FAILED']);
    }
    const largest = await plane.call('GET', `/api/v1/ledger?cursor=${encodeCursor(['9223372036854775807'])}`, {
      key: seller.apiKey,
    });
    expect(largest.status, largest.text).toBe(200);
  });

  it('gives balances per role and currency', async () => {
    const buyerBalances = await plane.call('GET', '/api/v1/ledger/balances', { key: buyer.apiKey });
    expect(buyerBalances.body.data).toEqual([
      { role: 'buyer', account: 'paid', amount: '-0.06', amount_atomic: '-60000', currency: 'USDC', entries: 6 },
      { role: 'buyer', account: 'refund_due', amount: '0.01', amount_atomic: '10000', currency: 'USDC', entries: 1 },
    ]);
    const sellerBalances = await plane.call('GET', '/api/v1/ledger/balances', { key: seller.apiKey });
    expect(sellerBalances.body.data).toEqual([
      { role: 'seller', account: 'payable', amount: '0.045', amount_atomic: '45000', currency: 'USDC', entries: 7 },
    ]);
  });

  it("shows another agent none of anyone's entries", async () => {
    for (const path of [
      '/api/v1/ledger',
      '/api/v1/ledger?role=seller',
      `/api/v1/ledger?gateway_request_id=${refundedId}`,
    ]) {
      const res = await plane.call('GET', path, { key: stranger.apiKey });
      expect(res.status).toBe(200);
      expect(res.body.data).toEqual([]);
    }
    expect((await plane.call('GET', '/api/v1/ledger/balances', { key: stranger.apiKey })).body.data).toEqual([]);
    expect((await plane.call('GET', '/api/v1/ledger')).status).toBe(401);
  });

  it('shows the refund state in the gateway request', async () => {
    const refunded = await plane.call('GET', `/api/v1/gateway-requests/${refundedId}`, { key: buyer.apiKey });
    expect(refunded.body.data).toMatchObject({ status: 'upstream_error', refund: 'refund_due' });
    const paid = await plane.call('GET', `/api/v1/gateway-requests/${paidIds[0]}`, { key: buyer.apiKey });
    expect(paid.body.data.refund).toBeNull();
  });
});
