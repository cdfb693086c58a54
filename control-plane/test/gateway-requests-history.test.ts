import { encodeCursor, type GatewayEvent, type GatewayStartEvent } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { endEvent, publish, startEvent } from './events-support.js';
import { startTestControlPlane, TEST_REDIS_URL, type TestPlane } from './helpers.js';
import { expectError } from './listing-support.js';

/**
 * §3.5: GET /api/v1/gateway-requests and /:id show a request to its buyer and to its seller, and to nobody else.
 * The rows come from events published the way the proxies publish them.
 */
describe('gateway request history', () => {
  let plane: TestPlane;
  let redis: Redis;
  type Agent = { apiKey: string; agentId: string };
  let seller: Agent;
  let buyer: Agent;
  let otherBuyer: Agent;
  let stranger: Agent;
  let paid: string;
  let free: string;
  /** The buyer's requests, newest (largest id) first, as the API orders them. */
  let mine: GatewayStartEvent[];
  let theirs: GatewayStartEvent[];
  let openStart: GatewayStartEvent;

  const newestFirst = (starts: GatewayStartEvent[]) => [...starts].sort((a, b) => (a.id < b.id ? 1 : -1));
  const get = (path: string, agent: Agent) => plane.call('GET', path, { key: agent.apiKey });

  beforeAll(async () => {
    plane = await startTestControlPlane();
    redis = new Redis(TEST_REDIS_URL);
    [seller, buyer, otherBuyer, stranger] = [
      await plane.register('seller'),
      await plane.register('buyer'),
      await plane.register('other-buyer'),
      await plane.register('stranger'),
    ];
    paid = (await plane.createListing(seller.apiKey, { pricing_model: 'per_call', price: { amount: '0.01' } })).listing
      .id;
    free = (await plane.createListing(seller.apiKey, { name: 'Free echo' })).listing.id;
    const as = (agent: Agent, listingId: string) => ({ listingId, sellerId: seller.agentId, buyerId: agent.agentId });

    const events: GatewayEvent[] = [];
    mine = [];
    for (let i = 0; i < 5; i++) {
      const start = startEvent(as(buyer, paid), { path: `/paid/${i}`, at: Date.now() + i });
      mine.push(start);
      events.push(start, endEvent(start, i === 1 ? { status: 'upstream_error', http_status: 502 } : {}));
    }
    for (let i = 0; i < 2; i++) {
      const start = startEvent(as(buyer, free), { price_atomic: '0', path: `/free/${i}` });
      mine.push(start);
      events.push(start, endEvent(start));
    }
    // Still in flight: no end yet.
    openStart = startEvent(as(buyer, free), { price_atomic: '0', path: '/open' });
    mine.push(openStart);
    events.push(openStart);
    theirs = [startEvent(as(otherBuyer, paid)), startEvent(as(otherBuyer, free), { price_atomic: '0' })];
    events.push(...theirs.flatMap((start) => [start, endEvent(start)]));

    await publish(redis, plane.config.redisPrefix, ...events);
    await plane.eventsConsumer.drain();
    // The payment column is the payments work's to fill; set it the way it will.
    await plane.deps.pool.query(
      `UPDATE gateway_requests SET payment = jsonb_build_object('proof_ids', jsonb_build_array('proof-' || id), 'network', 'solana:devnet')
        WHERE listing_id = $1`,
      [paid],
    );
  });
  afterAll(async () => {
    redis?.disconnect();
    await plane?.stop();
  });

  it('shows the buyer its own requests, newest first, with the full view', async () => {
    const res = await get('/api/v1/gateway-requests', buyer);
    expect(res.status, res.text).toBe(200);
    expect(res.body.data.map((r: any) => r.id)).toEqual(newestFirst(mine).map((s) => s.id));
    expect(res.body.next_cursor).toBeNull();

    const first = mine[0]!;
    const one = res.body.data.find((r: any) => r.id === first.id);
    expect(one).toEqual({
      id: first.id,
      listing_id: paid,
      buyer_id: buyer.agentId,
      seller_id: seller.agentId,
      method: 'POST',
      path: '/paid/0',
      status: 'completed',
      http_status: 200,
      error_code: null,
      latency_ms: 120,
      upstream_latency_ms: 100,
      bytes_in: 42,
      bytes_out: 1234,
      price: { amount: '0.01', currency: 'USDC', amount_atomic: '10000' },
      payment: { proof_ids: [`proof-${first.id}`], network: 'solana:devnet' },
      refund: null,
      refund_transfer: null,
      created_at: new Date(first.at).toISOString(),
      completed_at: new Date(first.at + 120).toISOString(),
    });
    const open = res.body.data.find((r: any) => r.id === openStart.id);
    expect(open).toMatchObject({ status: 'forwarded', http_status: null, completed_at: null, payment: null });
    expect(open.price).toEqual({ amount: '0', currency: 'USDC', amount_atomic: '0' });

    // role=buyer is the default; as a seller the buyer has nothing.
    expect((await get('/api/v1/gateway-requests?role=buyer', buyer)).body).toEqual(res.body);
    expect((await get('/api/v1/gateway-requests?role=seller', buyer)).body).toEqual({ data: [], next_cursor: null });
  });

  it("shows the seller every buyer's requests to its listings with role=seller", async () => {
    const res = await get('/api/v1/gateway-requests?role=seller&limit=100', seller);
    expect(res.status, res.text).toBe(200);
    expect(res.body.data.map((r: any) => r.id)).toEqual(newestFirst([...mine, ...theirs]).map((s) => s.id));
    expect((await get('/api/v1/gateway-requests', seller)).body.data).toEqual([]);
    expect((await get('/api/v1/gateway-requests', otherBuyer)).body.data.map((r: any) => r.id)).toEqual(
      newestFirst(theirs).map((s) => s.id),
    );
  });

  it('reads one request for its buyer and its seller, and 404 for anyone else', async () => {
    const id = mine[0]!.id;
    const asBuyer = await get(`/api/v1/gateway-requests/${id}`, buyer);
    expect(asBuyer.status, asBuyer.text).toBe(200);
    expect(asBuyer.body.data.id).toBe(id);
    const asSeller = await get(`/api/v1/gateway-requests/${id}`, seller);
    expect(asSeller.body).toEqual(asBuyer.body);

    expectError(await get(`/api/v1/gateway-requests/${id}`, stranger), 404, 'GATEWAY_REQUEST_NOT_FOUND');
    expectError(await get(`/api/v1/gateway-requests/${id}`, otherBuyer), 404, 'GATEWAY_REQUEST_NOT_FOUND');
    expectError(
      await get('/api/v1/gateway-requests/gr_00000000000000000000000000', buyer),
      404,
      'GATEWAY_REQUEST_NOT_FOUND',
    );
    expectError(await get('/api/v1/gateway-requests/not-an-id', buyer), 404, 'GATEWAY_REQUEST_NOT_FOUND');
    for (const role of ['buyer', 'seller']) {
      expect((await get(`/api/v1/gateway-requests?role=${role}`, stranger)).body).toEqual({
        data: [],
        next_cursor: null,
      });
    }
  });

  it('filters by listing, status and payment proof', async () => {
    const ids = async (query: string, agent: Agent = buyer) => {
      const res = await get(`/api/v1/gateway-requests?${query}`, agent);
      expect(res.status, res.text).toBe(200);
      return res.body.data.map((r: any) => r.id);
    };
    const onPaid = mine.slice(0, 5);
    expect(await ids(`listing_id=${paid}`)).toEqual(newestFirst(onPaid).map((s) => s.id));
    expect(await ids(`listing_id=${free}`)).toEqual(newestFirst(mine.slice(5)).map((s) => s.id));
    expect(await ids('status=upstream_error')).toEqual([mine[1]!.id]);
    expect(await ids('status=forwarded')).toEqual([openStart.id]);
    expect(await ids('status=client_aborted')).toEqual([]);
    expect(await ids(`status=completed&listing_id=${free}`)).toEqual(newestFirst(mine.slice(5, 7)).map((s) => s.id));
    expect(await ids(`payment_proof=proof-${mine[3]!.id}`)).toEqual([mine[3]!.id]);
    expect(await ids(`payment_proof=proof-${mine[3]!.id}&role=seller`, seller)).toEqual([mine[3]!.id]);
    expect(await ids(`payment_proof=proof-${mine[3]!.id}`, stranger)).toEqual([]);
    expect(await ids(`payment_proof=proof-${theirs[0]!.id}`)).toEqual([]);
    expect(await ids('payment_proof=nothing')).toEqual([]);
  });

  it('walks every page with limit and cursor', async () => {
    const walked: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await get(
        `/api/v1/gateway-requests?role=seller&limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
        seller,
      );
      expect(res.status, res.text).toBe(200);
      expect(res.body.data.length).toBeLessThanOrEqual(3);
      walked.push(...res.body.data.map((r: any) => r.id));
      cursor = res.body.next_cursor;
      pages++;
      expect(pages).toBeLessThan(10);
    } while (cursor !== null);
    expect(walked).toEqual(newestFirst([...mine, ...theirs]).map((s) => s.id));
    expect(pages).toBe(Math.ceil((mine.length + theirs.length) / 3));

    // A filtered walk ends with next_cursor null when the last page is exactly full.
    const first = await get(`/api/v1/gateway-requests?listing_id=${paid}&limit=4`, buyer);
    expect(first.body.data).toHaveLength(4);
    const last = await get(
      `/api/v1/gateway-requests?listing_id=${paid}&limit=1&cursor=${first.body.next_cursor}`,
      buyer,
    );
    expect(last.body.data.map((r: any) => r.id)).toEqual([newestFirst(mine.slice(0, 5))[4]!.id]);
    expect(last.body.next_cursor).toBeNull();
  });

  it('refuses bad queries with VALIDATION_FAILED', async () => {
    for (const query of [
      'role=operator',
      'status=lost',
      'listing_id=nope',
      'limit=0',
      'limit=101',
      'cursor=garbage',
      `cursor=${encodeCursor(['lst_00000000000000000000000000'])}`,
      `cursor=${encodeCursor(['gr_00000000000000000000000000', 'extra'])}`,
      `cursor=${encodeCursor([42])}`,
      'surprise=1',
    ]) {
      expectError(await get(`/api/v1/gateway-requests?${query}`, buyer), 400, 'VALIDATION_FAILED');
    }
    const res = await plane.call('GET', '/api/v1/gateway-requests');
    expectError(res, 401, 'AUTH_REQUIRED');
  });

  it('is described in the API documents', async () => {
    const openapi = (await plane.call('GET', '/api/openapi.json')).body;
    const list = openapi.paths['/api/v1/gateway-requests'].get;
    const one = openapi.paths['/api/v1/gateway-requests/{id}'].get;
    expect([list.operationId, one.operationId]).toEqual(['listGatewayRequests', 'getGatewayRequest']);
    expect(list.tags).toEqual(['gateway']);
    expect(list.parameters.map((p: any) => p.name)).toEqual([
      'role',
      'listing_id',
      'status',
      'payment_proof',
      'limit',
      'cursor',
    ]);
    expect(one['x-crochet-errors']).toContain('GATEWAY_REQUEST_NOT_FOUND');
    expect(Object.keys(one.responses['200'].content['application/json'].schema.properties.data.properties)).toEqual(
      expect.arrayContaining(['status', 'http_status', 'latency_ms', 'price', 'payment', 'created_at']),
    );
  });
});
