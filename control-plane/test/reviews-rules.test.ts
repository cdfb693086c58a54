import { ulid } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Call, publish } from './events-support.js';
import { startTestControlPlane, TEST_REDIS_URL, type TestPlane } from './helpers.js';
import { expectError } from './listing-support.js';
import { type CallKind, callEvents } from './reviews-support.js';

/**
 * §3.6: only the buyer of a paid gateway request to the listing that completed (2xx, payment settled) may review
 * it, once per request; never the seller. The history comes from events, recorded by the consumer as in production.
 */
describe('who may review a listing', () => {
  let plane: TestPlane;
  let redis: Redis;
  type Agent = { apiKey: string; agentId: string };
  let seller: Agent;
  let buyer: Agent;
  let stranger: Agent;
  let listing: string;
  let other: string;
  let free: string;
  let archived: string;
  /** The buyer's calls by kind (listing `listing` unless named otherwise). */
  const calls: Record<string, string> = {};

  const review = (agent: Agent | null, listingId: string, body: unknown) =>
    plane.call('POST', `/api/v1/listings/${listingId}/reviews`, { body, ...(agent ? { key: agent.apiKey } : {}) });
  const reviewCount = async (listingId: string): Promise<number> =>
    (await plane.call('GET', `/api/v1/listings/${listingId}`)).body.data.review_count;
  const rows = async (): Promise<number> =>
    Number((await plane.deps.pool.query('SELECT count(*) AS n FROM reviews')).rows[0].n);

  beforeAll(async () => {
    plane = await startTestControlPlane();
    redis = new Redis(TEST_REDIS_URL);
    [seller, buyer, stranger] = [
      await plane.register('seller'),
      await plane.register('buyer'),
      await plane.register('stranger'),
    ];
    const paid = { pricing_model: 'per_call', price: { amount: '0.01' } };
    listing = (await plane.createListing(seller.apiKey, { name: 'Summarise', ...paid })).listing.id;
    other = (await plane.createListing(seller.apiKey, { name: 'Translate', ...paid })).listing.id;
    free = (await plane.createListing(seller.apiKey, { name: 'Echo' })).listing.id;
    archived = (await plane.createListing(seller.apiKey, { name: 'Old', ...paid })).listing.id;

    const on = (listingId: string, agent: Agent = buyer): Call => ({
      listingId,
      sellerId: seller.agentId,
      buyerId: agent.agentId,
    });
    const events = [];
    const kinds: CallKind[] = ['paid', 'unpaid', 'timeout', 'seller_error', 'buyer_error', 'pending', 'in_flight'];
    for (const kind of kinds) {
      const call = callEvents(on(listing), kind);
      calls[kind] = call.id;
      events.push(...call.events);
    }
    for (const [name, call] of [
      ['paid_again', callEvents(on(listing), 'paid')],
      ['paid_raced', callEvents(on(listing), 'paid')],
      ['paid_other', callEvents(on(other), 'paid')],
      ['free', callEvents(on(free), 'free')],
      ['paid_archived', callEvents(on(archived), 'paid')],
      ['stranger_paid', callEvents(on(listing, stranger), 'paid')],
    ] as const) {
      calls[name] = call.id;
      events.push(...call.events);
    }
    await publish(redis, plane.config.redisPrefix, ...events);
    await plane.eventsConsumer.drain();
    expect((await plane.call('DELETE', `/api/v1/listings/${archived}`, { key: seller.apiKey })).status).toBe(200);
  });
  afterAll(async () => {
    redis?.disconnect();
    await plane?.stop();
  });

  it('lets the buyer review a paid call that completed, once', async () => {
    const res = await review(buyer, listing, {
      gateway_request_id: calls['paid'],
      rating: 4,
      comment: 'Quick and right.',
    });
    expect(res.status, res.text).toBe(201);
    expect(res.body.data).toEqual({
      id: expect.stringMatching(/^rev_[0-9A-HJKMNP-TV-Z]{26}$/),
      rating: 4,
      comment: 'Quick and right.',
      reviewer_id: buyer.agentId,
      gateway_request_id: calls['paid'],
      created_at: expect.any(String),
    });
    expect(await reviewCount(listing)).toBe(1);

    const again = await review(buyer, listing, { gateway_request_id: calls['paid'], rating: 1 });
    expectError(again, 409, 'REVIEW_ALREADY_EXISTS');
    expect(await reviewCount(listing)).toBe(1);
    // Without a comment, the comment is null.
    const bare = await review(buyer, listing, { gateway_request_id: calls['paid_again'], rating: 5 });
    expect(bare.status, bare.text).toBe(201);
    expect(bare.body.data.comment).toBeNull();
    expect(await reviewCount(listing)).toBe(2);
  });

  it('takes one review of a call when several arrive at once', async () => {
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        review(buyer, listing, { gateway_request_id: calls['paid_raced'], rating: 1 + (i % 5) }),
      ),
    );
    expect(results.map((r) => r.status).sort()).toEqual([201, 409, 409, 409, 409, 409]);
    for (const r of results.filter((r) => r.status === 409)) expectError(r, 409, 'REVIEW_ALREADY_EXISTS');
    expect(await reviewCount(listing)).toBe(3);
    const { rows: stored } = await plane.deps.pool.query(
      'SELECT count(*)::int AS n FROM reviews WHERE gateway_request_id = $1',
      [calls['paid_raced']],
    );
    expect(stored[0].n).toBe(1);
  });

  it('refuses the seller its own listing', async () => {
    const res = await review(seller, listing, { gateway_request_id: calls['stranger_paid'], rating: 5 });
    expectError(res, 403, 'REVIEW_SELF_NOT_ALLOWED');
  });

  it('refuses anyone but the buyer, exactly as for a call that does not exist', async () => {
    const theirs = await review(stranger, listing, { gateway_request_id: calls['paid_again'], rating: 1 });
    expectError(theirs, 403, 'REVIEW_NOT_ALLOWED');
    expect(theirs.body.error.message).toContain('not a call you made');
    const none = await review(stranger, listing, { gateway_request_id: 'gr_00000000000000000000000000', rating: 1 });
    expectError(none, 403, 'REVIEW_NOT_ALLOWED');
    expect(none.body.error.message).toBe(theirs.body.error.message);
    // The stranger's own paid call is fine.
    const own = await review(stranger, listing, { gateway_request_id: calls['stranger_paid'], rating: 2 });
    expect(own.status, own.text).toBe(201);
  });

  it('says why an old call may not be found where history is kept for a while (CROCHET_HISTORY_RETENTION_DAYS)', async () => {
    const old = `gr_${ulid(Date.now() - 200 * 86_400_000)}`;
    const recent = `gr_${ulid(Date.now() - 86_400_000)}`;
    // The route reads the setting per request: this server keeps 120 days for the length of this test.
    plane.config.historyRetentionDays = 120;
    try {
      const gone = await review(buyer, listing, { gateway_request_id: old, rating: 3 });
      expectError(gone, 403, 'REVIEW_NOT_ALLOWED');
      expect(gone.body.error.message).toContain('or it is older than the call history this server keeps (120 days)');
      // Within the kept history a missing call is just not the caller's.
      const missing = await review(buyer, listing, { gateway_request_id: recent, rating: 3 });
      expect(missing.body.error.message).toBe(
        'You cannot review this call: this gateway request is not a call you made.',
      );
    } finally {
      plane.config.historyRetentionDays = 0;
    }
  });

  it.each([
    ['unpaid', 'was not paid (it was answered 402)'],
    ['timeout', 'did not complete (status upstream_error, HTTP 504)'],
    ['seller_error', 'did not complete (status completed, HTTP 500)'],
    ['buyer_error', 'did not complete (status completed, HTTP 400)'],
    ['pending', 'did not settle (pending)'],
    ['in_flight', 'has not finished yet'],
  ])('refuses a %s call, saying why', async (kind, why) => {
    const res = await review(buyer, listing, { gateway_request_id: calls[kind], rating: 1 });
    expectError(res, 403, 'REVIEW_NOT_ALLOWED');
    expect(res.body.error.message).toContain(why);
  });

  it("refuses a call to another listing and a free listing's call", async () => {
    const elsewhere = await review(buyer, listing, { gateway_request_id: calls['paid_other'], rating: 5 });
    expectError(elsewhere, 403, 'REVIEW_NOT_ALLOWED');
    expect(elsewhere.body.error.message).toContain(`a call to another listing (${other})`);
    // …which reviews fine where it was made.
    expect((await review(buyer, other, { gateway_request_id: calls['paid_other'], rating: 5 })).status).toBe(201);
    expect(await reviewCount(other)).toBe(1);

    const freeCall = await review(buyer, free, { gateway_request_id: calls['free'], rating: 5 });
    expectError(freeCall, 403, 'REVIEW_NOT_ALLOWED');
    expect(freeCall.body.error.message).toContain('not a paid call');
  });

  it('answers LISTING_NOT_FOUND for an unknown or archived listing', async () => {
    for (const id of ['lst_00000000000000000000000000', 'not-a-listing', archived]) {
      expectError(
        await review(buyer, id, { gateway_request_id: calls['paid_archived'], rating: 3 }),
        404,
        'LISTING_NOT_FOUND',
      );
      expectError(await plane.call('GET', `/api/v1/listings/${id}/reviews`), 404, 'LISTING_NOT_FOUND');
    }
    // Its seller still reads its reviews.
    const own = await plane.call('GET', `/api/v1/listings/${archived}/reviews`, { key: seller.apiKey });
    expect(own.status, own.text).toBe(200);
  });

  it('validates the request before anything else', async () => {
    const before = await rows();
    const id = calls['paid_again'];
    for (const body of [
      { gateway_request_id: id, rating: 0 },
      { gateway_request_id: id, rating: 6 },
      { gateway_request_id: id, rating: 3.5 },
      { gateway_request_id: id, rating: '5' },
      { gateway_request_id: id },
      { rating: 5 },
      { gateway_request_id: 'gr_nope', rating: 5 },
      { gateway_request_id: id, rating: 5, comment: 'x'.repeat(1001) },
      { gateway_request_id: id, rating: 5, comment: 42 },
      { gateway_request_id: id, rating: 5, reviewer_id: stranger.agentId },
    ]) {
      expectError(await review(buyer, listing, body), 400, 'VALIDATION_FAILED');
    }
    expectError(await review(null, listing, { gateway_request_id: id, rating: 5 }), 401, 'AUTH_REQUIRED');
    expect(await rows()).toBe(before);
  });

  it('is described in the API documents with its errors', async () => {
    const openapi = (await plane.call('GET', '/api/openapi.json')).body;
    const path = openapi.paths['/api/v1/listings/{id}/reviews'];
    expect([path.post.operationId, path.get.operationId]).toEqual(['createReview', 'listReviews']);
    expect(path.post['x-crochet-errors']).toEqual(
      expect.arrayContaining([
        'LISTING_NOT_FOUND',
        'REVIEW_SELF_NOT_ALLOWED',
        'REVIEW_NOT_ALLOWED',
        'REVIEW_ALREADY_EXISTS',
      ]),
    );
    expect(path.post.security).toEqual([{ apiKey: [] }]);
    const skill = (await plane.call('GET', '/agent-skill')).text;
    expect(skill).toContain('POST /api/v1/listings/:id/reviews');
  });
});
