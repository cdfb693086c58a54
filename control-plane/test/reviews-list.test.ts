import { encodeCursor } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publish } from './events-support.js';
import { startTestControlPlane, TEST_REDIS_URL, type TestPlane } from './helpers.js';
import { expectError } from './listing-support.js';
import { callEvents } from './reviews-support.js';

/**
 * §3.6: GET /api/v1/listings/:id/reviews is public, newest first, keyset-paginated; a comment is plain text that
 * comes back as the same JSON text it was stored as (never HTML), without control characters.
 */
describe('reading reviews', () => {
  let plane: TestPlane;
  let redis: Redis;
  type Agent = { apiKey: string; agentId: string };
  let seller: Agent;
  let buyers: Agent[];
  let listing: string;
  /** Paid, completed calls of each buyer, in the order they are reviewed. */
  const paidCalls: [Agent, string][] = [];
  /** Review ids in creation order. */
  const written: string[] = [];

  const review = (agent: Agent, gatewayRequestId: string, rating: number, comment?: unknown) =>
    plane.call('POST', `/api/v1/listings/${listing}/reviews`, {
      key: agent.apiKey,
      body: { gateway_request_id: gatewayRequestId, rating, ...(comment === undefined ? {} : { comment }) },
    });

  beforeAll(async () => {
    plane = await startTestControlPlane();
    redis = new Redis(TEST_REDIS_URL);
    seller = await plane.register('seller');
    buyers = [await plane.register('buyer-1'), await plane.register('buyer-2')];
    listing = (await plane.createListing(seller.apiKey, { pricing_model: 'per_call', price: { amount: '0.01' } }))
      .listing.id;
    const events = [];
    for (let i = 0; i < 12; i++) {
      const buyer = buyers[i % 2]!;
      const call = callEvents({ listingId: listing, sellerId: seller.agentId, buyerId: buyer.agentId }, 'paid');
      paidCalls.push([buyer, call.id]);
      events.push(...call.events);
    }
    await publish(redis, plane.config.redisPrefix, ...events);
    await plane.eventsConsumer.drain();
  });
  afterAll(async () => {
    redis?.disconnect();
    await plane?.stop();
  });

  const next = (): [Agent, string] => paidCalls[written.length]!;
  const write = async (rating: number, comment?: unknown) => {
    const [buyer, id] = next();
    const res = await review(buyer, id, rating, comment);
    expect(res.status, res.text).toBe(201);
    written.push(res.body.data.id);
    return res;
  };

  it('returns markup in a comment as the same text, as JSON, never as HTML', async () => {
    const comment = '<script>alert("x")</script> <img src=x onerror=alert(1)> & "quotes" \'single\' </textarea>';
    const res = await write(5, comment);
    expect(res.headers.get('content-type')).toContain('application/json');
    expect(res.body.data.comment).toBe(comment);
    const list = await plane.call('GET', `/api/v1/listings/${listing}/reviews`);
    expect(list.headers.get('content-type')).toContain('application/json');
    expect(list.body.data[0].comment).toBe(comment);
    // JSON-escaped in the body, and nothing HTML-escaped: what was sent is what is stored.
    expect(list.text).toContain(JSON.stringify(comment).slice(1, -1));
    const { rows } = await plane.deps.pool.query('SELECT comment FROM reviews WHERE id = $1', [written[0]]);
    expect(rows[0].comment).toBe(comment);
  });

  it('strips control characters, keeps line breaks and text, trims, and stores an empty comment as null', async () => {
    const cases: [string, string | null][] = [
      ['  fast and\u0007 right\r\nwould buy again\u001b[31m \t ', 'fast and right\nwould buy again[31m'],
      ['\u202Eevil\u202C text \u2066isolated\u2069', 'evil text isolated'],
      ['emoji 😀 and accents éü 中文', 'emoji 😀 and accents éü 中文'],
      ['lone \ud800 half', 'lone  half'],
      [' \u0001\t\r\n ', null],
    ];
    for (const [sent, stored] of cases) {
      const res = await write(4, sent);
      expect(res.body.data.comment, JSON.stringify(sent)).toBe(stored);
    }
    // U+0000 is refused in any input, comments included (one rule: control-plane/test/input-nul-refused.test.ts).
    const [buyer, id] = next();
    const nul = await review(buyer, id, 4, 'fast\u0000 and right');
    expectError(nul, 400, 'VALIDATION_FAILED');
    expect(nul.body.error.field).toBe('body.comment');
  });

  it('takes a comment of up to 1000 characters (emoji count as one)', async () => {
    expect((await write(3, 'a'.repeat(1000))).body.data.comment).toHaveLength(1000);
    const emoji = '😀'.repeat(1000);
    expect((await write(3, emoji)).body.data.comment).toBe(emoji);
    const [buyer, id] = next();
    expectError(await review(buyer, id, 3, 'a'.repeat(1001)), 400, 'VALIDATION_FAILED');
    expectError(await review(buyer, id, 3, '😀'.repeat(1001)), 400, 'VALIDATION_FAILED');
  });

  it('lists every review once, newest first, page by page, to anyone', async () => {
    await write(2, 'meh');
    await write(1);
    const walked: any[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await plane.call(
        'GET',
        `/api/v1/listings/${listing}/reviews?limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      expect(res.status, res.text).toBe(200);
      expect(res.body.data.length).toBeLessThanOrEqual(3);
      walked.push(...res.body.data);
      cursor = res.body.next_cursor;
      pages++;
      expect(pages).toBeLessThan(10);
    } while (cursor !== null);
    // Newest first: review ids are ULIDs, so id order is creation order (to the millisecond).
    expect(walked.map((r) => r.id)).toEqual([...written].sort().reverse());
    const times = walked.map((r) => new Date(r.created_at).getTime());
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(pages).toBe(Math.ceil(written.length / 3));
    expect(walked.find((r) => r.id === written[written.length - 1])).toEqual({
      id: written[written.length - 1],
      rating: 1,
      comment: null,
      reviewer_id: paidCalls[written.length - 1]![0].agentId,
      gateway_request_id: paidCalls[written.length - 1]![1],
      created_at: expect.any(String),
    });
    expect(times[0]).toBeGreaterThan(Date.now() - 60_000);
    // The whole list in one page, and the count on the listing.
    const all = await plane.call('GET', `/api/v1/listings/${listing}/reviews?limit=100`, { key: buyers[0]!.apiKey });
    expect(all.body).toEqual({ data: walked, next_cursor: null });
    const shown = (await plane.call('GET', `/api/v1/listings/${listing}`)).body.data;
    expect(shown.review_count).toBe(written.length);
  });

  it('refuses cursors that are not its own', async () => {
    for (const query of [
      'cursor=garbage',
      `cursor=${encodeCursor(['gr_00000000000000000000000000'])}`,
      `cursor=${encodeCursor(['score', 500, 'lst_00000000000000000000000000'])}`,
      'limit=0',
      'limit=101',
      'sort=newest',
    ]) {
      expectError(await plane.call('GET', `/api/v1/listings/${listing}/reviews?${query}`), 400, 'VALIDATION_FAILED');
    }
  });

  it('lists nothing for a listing without reviews', async () => {
    const quiet = (await plane.createListing(seller.apiKey, { name: 'Quiet' })).listing.id;
    expect((await plane.call('GET', `/api/v1/listings/${quiet}/reviews`)).body).toEqual({
      data: [],
      next_cursor: null,
    });
  });
});
