import type { GatewayEndEvent, GatewayStartEvent } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Call, endEvent, expectedRow, publish, ROW_COLUMNS, startEvent } from './events-support.js';
import { startTestControlPlane, TEST_REDIS_URL, type TestPlane } from './helpers.js';

/** §3.5: the control plane records each gateway request from its start and end events, whatever their order. */
describe('events consumer records gateway requests', () => {
  let plane: TestPlane;
  let redis: Redis;
  let call: Call;

  beforeAll(async () => {
    plane = await startTestControlPlane();
    redis = new Redis(TEST_REDIS_URL);
    const seller = await plane.register('seller');
    const buyer = await plane.register('buyer');
    const { listing } = await plane.createListing(seller.apiKey);
    call = { listingId: listing.id, sellerId: seller.agentId, buyerId: buyer.agentId };
  });
  afterAll(async () => {
    redis?.disconnect();
    await plane?.stop();
  });

  const publishEvents = (...events: (GatewayStartEvent | GatewayEndEvent)[]) =>
    publish(redis, plane.config.redisPrefix, ...events);
  const rows = async (ids: string[]) =>
    (await plane.deps.pool.query(`SELECT ${ROW_COLUMNS} FROM gateway_requests WHERE id = ANY ($1) ORDER BY id`, [ids]))
      .rows;

  it('records a start as forwarded, and its end completes the same row', async () => {
    const start = startEvent(call);
    await publishEvents(start);
    await plane.eventsConsumer.drain();
    expect(await rows([start.id])).toEqual([expectedRow(start, null)]);

    const end = endEvent(start);
    await publishEvents(end);
    await plane.eventsConsumer.drain();
    expect(await rows([start.id])).toEqual([expectedRow(start, end)]);
  });

  it('arrives at the same row when the end comes before the start', async () => {
    const start = startEvent(call, { method: 'GET', path: '/late?x=1', price_atomic: '2500' });
    const end = endEvent(start, { status: 'upstream_error', http_status: 502, error_code: 'UPSTREAM_ERROR' });
    await publishEvents(end);
    await plane.eventsConsumer.drain();
    // Before its start: the outcome, and the seller (from the listing) so the seller already sees it.
    const [early] = await rows([start.id]);
    expect(early).toMatchObject({
      status: 'upstream_error',
      http_status: 502,
      seller_id: call.sellerId,
      buyer_id: null,
      key_id: null,
      completed_at: new Date(end.at),
    });

    await publishEvents(start);
    await plane.eventsConsumer.drain();
    // The start fills in who and what, and never turns the finished request back into "forwarded".
    expect(await rows([start.id])).toEqual([expectedRow(start, end)]);
  });

  it('records 50 requests from interleaved, batched events as 50 rows', async () => {
    const starts = Array.from({ length: 50 }, (_, i) => startEvent(call, { path: `/r/${i}` }));
    const ends = starts.map((start, i) =>
      endEvent(start, i % 5 === 0 ? { status: 'upstream_error', http_status: 500 } : { latency_ms: i }),
    );
    // Proxies write starts at admission and ends in later batches: some ends come in the middle of other starts,
    // some before their own start (a reclaimed batch), and a few twice.
    await publishEvents(...starts.slice(0, 20), ...ends.slice(0, 10), ...ends.slice(40), ...starts.slice(20));
    await publishEvents(...ends.slice(10, 40), ...ends.slice(0, 3), starts[7]!);
    await plane.eventsConsumer.drain();

    const recorded = await rows(starts.map((s) => s.id));
    expect(recorded).toHaveLength(50);
    const expected = starts.map((start, i) => expectedRow(start, ends[i]!));
    expect(recorded).toEqual(expected.sort((a, b) => (a.id < b.id ? -1 : 1)));
    expect(plane.eventsConsumer.stats()).toMatchObject({ deadLettered: 0, lastError: null });
  });

  it('records a path as sent, any character UTF-8 carries; a lone surrogate as U+FFFD', async () => {
    const paths = ['/q?x="a,b"&y={1}\\\'z\'', '/é/😀/\t', '/half\ud800/x'];
    const starts = paths.map((path) => startEvent(call, { path }));
    // Together (one row written whole each) and apart (the start's and the end's own statements).
    await publishEvents(...starts.flatMap((s) => [s, endEvent(s)]));
    await plane.eventsConsumer.drain();
    const apart = startEvent(call, { path: '/apart\udfff' });
    await publishEvents(apart);
    await plane.eventsConsumer.drain();
    await publishEvents(endEvent(apart));
    await plane.eventsConsumer.drain();
    const recorded = await rows([...starts.map((s) => s.id), apart.id]);
    const byId = new Map(recorded.map((r) => [r.id, r.path]));
    expect(starts.map((s) => byId.get(s.id))).toEqual([paths[0], paths[1], '/half\ufffd/x']);
    expect(byId.get(apart.id)).toBe('/apart\ufffd');
    expect(plane.eventsConsumer.stats()).toMatchObject({ deadLettered: 0, lastError: null });
  });

  it("records free text with a lone surrogate as U+FFFD, and ignores a start's fields it has no column for", async () => {
    // A start written alone (its end comes later) with a field a newer proxy might add, holding what PostgreSQL's
    // JSON refuses: only the columns are sent, so the start is recorded, not dead-lettered.
    const start = { ...startEvent(call, { method: 'G\ud800' }), future: ['\udfff', '\u0000'] } as GatewayStartEvent;
    await publishEvents(start);
    await plane.eventsConsumer.drain();
    const end = endEvent(start, { status: 'upstream_error', http_status: 502, error_code: 'E\ud800' });
    await publishEvents(end);
    await plane.eventsConsumer.drain();
    expect(await rows([start.id])).toMatchObject([
      { method: 'G\ufffd', error_code: 'E\ufffd', status: 'upstream_error', buyer_id: call.buyerId },
    ]);
    expect(plane.eventsConsumer.stats()).toMatchObject({ deadLettered: 0, lastError: null });
  });
});
