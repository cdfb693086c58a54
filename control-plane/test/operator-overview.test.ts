import { type GatewayEvent, redisKeys, utcDay } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publish } from './events-support.js';
import { startTestControlPlane, TEST_REDIS_URL, type TestPlane } from './helpers.js';
import { paidEnd, paidStart, unbalancedJournals } from './ledger-support.js';
import { claimAgent, type OperatorClient, signUpOperator } from './operator-support.js';

/**
 * §3.7 overview, gateway requests and ledger of an operator: spend and earnings come from real ledger postings
 * (events through the consumer), and nothing outside the operator's claimed agents is shown.
 */
let plane: TestPlane;
let redis: Redis;
let operator: OperatorClient;
let buyer: { apiKey: string; agentId: string };
let seller: { apiKey: string; agentId: string };
let stranger: { apiKey: string; agentId: string };
let outsider: { apiKey: string; agentId: string };
let listingId: string;
let outsiderListingId: string;
const visibleRequests: string[] = [];
const hiddenRequests: string[] = [];

/** A payment journal dated yesterday, written as posting writes one (the ledger takes inserts, never updates). */
const postYesterday = async (buyerId: string, sellerId: string, priceAtomic: bigint, feeAtomic: bigint) => {
  const client = await plane.deps.pool.connect();
  try {
    await client.query('BEGIN');
    const accounts = await client.query<{ id: string; owner_id: string; role: string }>(
      `SELECT id::text, owner_id, role FROM ledger_accounts
        WHERE (owner_id, role) IN (($1, 'buyer'), ($2, 'seller_payable'), ('marketplace', 'marketplace_fee'))`,
      [buyerId, sellerId],
    );
    const account = (role: string) => accounts.rows.find((a) => a.role === role)!.id;
    const journal = await client.query<{ id: string }>(
      `INSERT INTO ledger_journals (kind, gateway_request_id, idempotency_key, listing_id, buyer_id, seller_id,
                                    currency, amount_atomic, fee_atomic, fee_bps, created_at)
       VALUES ('payment', 'gr_yesterday', 'gr_yesterday:payment', $1, $2, $3, 'USDC', $4, $5, 1000,
               now() - interval '1 day') RETURNING id::text`,
      [listingId, buyerId, sellerId, priceAtomic.toString(), feeAtomic.toString()],
    );
    await client.query(
      `INSERT INTO ledger_entries (journal_id, account_id, entry_type, amount_atomic, created_at)
       VALUES ($1, $2, 'buyer_debit', $5, now() - interval '1 day'),
              ($1, $3, 'seller_credit', $6, now() - interval '1 day'),
              ($1, $4, 'marketplace_fee', $7, now() - interval '1 day')`,
      [
        journal.rows[0]!.id,
        account('buyer'),
        account('seller_payable'),
        account('marketplace_fee'),
        (-priceAtomic).toString(),
        (priceAtomic - feeAtomic).toString(),
        feeAtomic.toString(),
      ],
    );
    await client.query('COMMIT');
  } finally {
    client.release();
  }
};

beforeAll(async () => {
  plane = await startTestControlPlane({ CROCHET_FEE_BPS: '1000' });
  redis = new Redis(TEST_REDIS_URL);
  operator = await signUpOperator(plane.url);
  buyer = await plane.register('buyer');
  seller = await plane.register('seller');
  stranger = await plane.register('stranger');
  outsider = await plane.register('outsider');
  await claimAgent(plane.url, operator, buyer.apiKey);
  await claimAgent(plane.url, operator, seller.apiKey);
  const paid = { pricing_model: 'per_call', price: { amount: '0.01', currency: 'USDC' } };
  listingId = (await plane.createListing(seller.apiKey, { ...paid, name: 'Summarize' })).listing.id;
  outsiderListingId = (await plane.createListing(outsider.apiKey, paid)).listing.id;

  const events: GatewayEvent[] = [];
  const mine = { listingId, sellerId: seller.agentId, buyerId: buyer.agentId };
  // Today: the buyer pays the seller 4 times, one of which is refunded; a stranger pays the seller once.
  for (const outcome of ['settled', 'settled', 'settled', 'refund_due'] as const) {
    const start = paidStart(mine, 10_000n);
    visibleRequests.push(start.id);
    events.push(start, paidEnd(start, outcome));
  }
  const fromStranger = paidStart({ ...mine, buyerId: stranger.agentId }, 10_000n);
  visibleRequests.push(fromStranger.id);
  events.push(fromStranger, paidEnd(fromStranger));
  // Neither side claimed: never shown.
  const elsewhere = paidStart({ listingId: outsiderListingId, sellerId: outsider.agentId, buyerId: stranger.agentId });
  hiddenRequests.push(elsewhere.id);
  events.push(elsewhere, paidEnd(elsewhere));
  await publish(redis, plane.config.redisPrefix, ...events);
  await plane.eventsConsumer.drain();
  // Yesterday: 0.05 from the buyer to the seller (fee 10 %).
  await postYesterday(buyer.agentId, seller.agentId, 50_000n, 5_000n);
  expect(await unbalancedJournals(plane.deps.pool)).toEqual([]);
});
afterAll(async () => {
  redis?.disconnect();
  await plane?.stop();
});

describe('operator overview', () => {
  it('shows each claimed agent with spend today and in total, earnings, keys and listings', async () => {
    // Today's spend is what the proxies' cap counter holds (the refunded call included: the cap counts payments).
    await redis.set(redisKeys(plane.config.redisPrefix).spend(buyer.agentId, utcDay()), '40000');
    const res = await operator.call('GET', '/api/v1/operator/overview');
    expect(res.status, res.text).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.body.data.operator).toEqual({ id: operator.id, email: operator.email });
    const [first, second] = res.body.data.agents;
    expect(res.body.data.agents).toHaveLength(2);
    // Today 4 × 0.01 paid (the proxies counted all 4), 0.01 of it refunded; yesterday 0.05.
    expect(first).toMatchObject({
      id: buyer.agentId,
      name: 'buyer',
      status: 'active',
      daily_spend_cap: null,
      spent_today: '0.04',
      spent_total: '0.08',
      earned_total: '0',
      claimed_at: expect.any(String),
      listings: [],
    });
    expect(first.keys).toEqual([
      {
        id: expect.stringMatching(/^key_/),
        prefix: buyer.apiKey.slice(0, 13),
        name: 'default',
        status: 'active',
        created_at: expect.any(String),
        last_used_at: expect.any(String),
      },
    ]);
    // Seller: 5 × 0.009 today (10 % fee), one reversed; 0.045 yesterday.
    expect(second).toMatchObject({
      id: seller.agentId,
      spent_today: '0',
      spent_total: '0',
      earned_total: '0.081',
      listings: [
        {
          id: listingId,
          name: 'Summarize',
          status: 'active',
          pricing_model: 'per_call',
          price: '0.01',
          currency: 'USDC',
          crochet_score: null,
          verified: false,
          review_count: 0,
        },
      ],
    });
  });

  it('lists the gateway requests of claimed agents as buyer or seller, newest first, page by page', async () => {
    const seen: any[] = [];
    let cursor: string | null = null;
    do {
      const res: Awaited<ReturnType<OperatorClient['call']>> = await operator.call(
        'GET',
        `/api/v1/operator/gateway-requests?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      );
      expect(res.status, res.text).toBe(200);
      expect(res.body.data.length).toBeLessThanOrEqual(2);
      seen.push(...res.body.data);
      cursor = res.body.next_cursor;
    } while (cursor);
    expect(seen.map((r) => r.id)).toEqual([...visibleRequests].sort().reverse());
    expect(seen.map((r) => r.id)).not.toContain(hiddenRequests[0]);
    const refunded = seen.find((r) => r.id === visibleRequests[3]);
    expect(refunded).toEqual({
      id: visibleRequests[3],
      created_at: expect.any(String),
      listing_id: listingId,
      listing_name: 'Summarize',
      buyer_id: buyer.agentId,
      seller_id: seller.agentId,
      method: 'POST',
      status_code: 502,
      duration_ms: 120,
      price: '0.01',
      payment_outcome: 'refund_due',
    });
    expect(seen.find((r) => r.id === visibleRequests[4])).toMatchObject({
      buyer_id: stranger.agentId,
      status_code: 200,
      payment_outcome: 'settled',
    });
    const bad = await operator.call('GET', '/api/v1/operator/gateway-requests?cursor=nope');
    expect([bad.status, bad.body.error.code]).toEqual([400, 'VALIDATION_FAILED']);
  });

  it('lists the ledger entries of claimed agents with signed amounts, never the marketplace fee', async () => {
    const res = await operator.call('GET', '/api/v1/operator/ledger?limit=100');
    expect(res.status, res.text).toBe(200);
    const entries = res.body.data as { id: string; agent_id: string; kind: string; amount: string }[];
    expect(entries.map((e) => Number(e.id))).toEqual(entries.map((e) => Number(e.id)).sort((a, b) => b - a));
    const summary = (agentId: string) =>
      entries
        .filter((e) => e.agent_id === agentId)
        .map((e) => `${e.kind} ${e.amount}`)
        .sort();
    expect(summary(buyer.agentId)).toEqual([
      'buyer_debit -0.01',
      'buyer_debit -0.01',
      'buyer_debit -0.01',
      'buyer_debit -0.01',
      'buyer_debit -0.05',
      'refund_owed 0.01',
    ]);
    expect(summary(seller.agentId)).toEqual([
      'seller_credit 0.009',
      'seller_credit 0.009',
      'seller_credit 0.009',
      'seller_credit 0.009',
      'seller_credit 0.009',
      'seller_credit 0.045',
      'seller_credit_reversal -0.009',
    ]);
    expect(entries).toHaveLength(13);
    expect(entries[0]).toEqual({
      id: expect.any(String),
      created_at: expect.any(String),
      agent_id: expect.any(String),
      kind: expect.any(String),
      amount: expect.any(String),
      currency: 'USDC',
      gateway_request_id: expect.any(String),
      transfer_id: null,
    });
    const pageOne = await operator.call('GET', '/api/v1/operator/ledger?limit=10');
    const pageTwo = await operator.call('GET', `/api/v1/operator/ledger?limit=10&cursor=${pageOne.body.next_cursor}`);
    expect([...pageOne.body.data, ...pageTwo.body.data]).toEqual(entries);
    expect(pageTwo.body.next_cursor).toBeNull();
  });

  it('shows another operator nothing', async () => {
    const other = await signUpOperator(plane.url);
    const overview = await other.call('GET', '/api/v1/operator/overview');
    expect(overview.body.data).toEqual({ operator: { id: other.id, email: other.email }, agents: [] });
    for (const path of ['/api/v1/operator/gateway-requests', '/api/v1/operator/ledger']) {
      const res = await other.call('GET', path);
      expect(res.body).toEqual({ data: [], next_cursor: null });
    }
  });

  it('needs a session for every read', async () => {
    for (const path of [
      '/api/v1/operator/session',
      '/api/v1/operator/overview',
      '/api/v1/operator/gateway-requests',
      '/api/v1/operator/ledger',
    ]) {
      const res = await operator.call('GET', path, { cookie: false });
      expect([res.status, res.body.error.code], path).toEqual([401, 'OPERATOR_SESSION_REQUIRED']);
    }
  });
});
