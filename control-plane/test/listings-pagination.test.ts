import { encodeCursor } from '@crochet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';
import { expectError } from './listing-support.js';

/** §3: lists paginate with ?limit=&cursor=; a cursor belongs to the sort that produced it. */
describe('GET /api/v1/listings cursor pagination', () => {
  let plane: TestPlane;
  let seller: { apiKey: string; agentId: string };
  const active: string[] = [];

  beforeAll(async () => {
    plane = await startTestControlPlane();
    seller = await plane.register('seller');
    // Seven listings with repeated prices and scores, so keyset ties are exercised.
    const prices = ['0.5', '0.1', '0.5', '0.1', null, '0.5', null];
    const scores = [500, 500, null, 800, 500, null, 800];
    for (const [i, price] of prices.entries()) {
      const { listing } = await plane.createListing(seller.apiKey, {
        name: `Listing ${i}`,
        ...(price ? { pricing_model: 'per_call', price: { amount: price } } : { pricing_model: 'free' }),
      });
      await plane.deps.pool.query('UPDATE listings SET crochet_score = $2 WHERE id = $1', [listing.id, scores[i]]);
      active.push(listing.id);
    }
    // Paused and archived listings never appear to the public.
    const paused = await plane.createListing(seller.apiKey, { name: 'Paused' });
    await plane.deps.pool.query("UPDATE listings SET status = 'paused' WHERE id = $1", [paused.listing.id]);
    const archived = await plane.createListing(seller.apiKey, { name: 'Archived' });
    await plane.deps.pool.query("UPDATE listings SET status = 'archived' WHERE id = $1", [archived.listing.id]);
  });
  afterAll(async () => {
    await plane?.stop();
  });

  /** Walks every page of a query; returns the ids in order and the number of pages. */
  const walk = async (query: string, limit: number): Promise<{ ids: string[]; pages: number }> => {
    const ids: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await plane.call(
        'GET',
        `/api/v1/listings?${query}&limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      expect(res.status, res.text).toBe(200);
      expect(res.body.data.length).toBeLessThanOrEqual(limit);
      ids.push(...res.body.data.map((l: any) => l.id));
      cursor = res.body.next_cursor;
      pages++;
      expect(pages).toBeLessThan(20);
    } while (cursor !== null);
    return { ids, pages };
  };

  it.each(['newest', 'price', 'score'])(
    'walks sort=%s with limit=2: every active listing once, in order',
    async (sort) => {
      const whole = await plane.call('GET', `/api/v1/listings?sort=${sort}&limit=100`);
      expect(whole.status, whole.text).toBe(200);
      expect(whole.body.next_cursor).toBeNull();
      const expected = whole.body.data.map((l: any) => l.id);
      expect([...expected].sort()).toEqual([...active].sort());

      const { ids, pages } = await walk(`sort=${sort}`, 2);
      expect(ids).toEqual(expected);
      expect(new Set(ids).size).toBe(active.length);
      expect(pages).toBe(Math.ceil(active.length / 2));
    },
  );

  it('orders each sort as documented', async () => {
    const rows = (await plane.call('GET', '/api/v1/listings?sort=newest&limit=100')).body.data;
    expect(rows.map((l: any) => l.id)).toEqual([...active].reverse());

    const byPrice = (await walk('sort=price', 2)).ids;
    const priced = (await plane.call('GET', '/api/v1/listings?sort=price&limit=100')).body.data;
    const atomic = priced.map((l: any) => BigInt(l.price.amount_atomic));
    expect(atomic).toEqual([...atomic].sort((a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0)));
    expect(byPrice).toEqual(priced.map((l: any) => l.id));

    const scored = (await plane.call('GET', '/api/v1/listings?sort=score&limit=100')).body.data;
    expect(scored.map((l: any) => l.crochet_score)).toEqual([800, 800, 500, 500, 500, null, null]);
  });

  it('walks a filtered query', async () => {
    const { ids } = await walk('sort=price&pricing_model=per_call', 2);
    expect(ids).toHaveLength(5);
    const { ids: free } = await walk('sort=newest&pricing_model=free', 1);
    expect(free).toEqual([active[6], active[4]]);
  });

  it('ends with next_cursor null when the last page is exactly full', async () => {
    const first = await plane.call('GET', '/api/v1/listings?sort=newest&limit=6');
    expect(first.body.data).toHaveLength(6);
    expect(first.body.next_cursor).toEqual(expect.any(String));
    const last = await plane.call('GET', `/api/v1/listings?sort=newest&limit=1&cursor=${first.body.next_cursor}`);
    expect(last.body.data).toHaveLength(1);
    expect(last.body.next_cursor).toBeNull();
  });

  it('refuses a cursor from another sort with VALIDATION_FAILED', async () => {
    const pages = {
      newest: (await plane.call('GET', '/api/v1/listings?sort=newest&limit=2')).body.next_cursor,
      price: (await plane.call('GET', '/api/v1/listings?sort=price&limit=2')).body.next_cursor,
      score: (await plane.call('GET', '/api/v1/listings?sort=score&limit=2')).body.next_cursor,
    };
    for (const [from, cursor] of Object.entries(pages)) {
      for (const to of ['newest', 'price', 'score']) {
        if (to === from) continue;
        const res = await plane.call('GET', `/api/v1/listings?sort=${to}&limit=2&cursor=${cursor}`);
        expectError(res, 400, 'VALIDATION_FAILED');
        expect(res.body.error.field).toBe('querystring.cursor');
      }
    }
    // The default sort is score.
    expectError(await plane.call('GET', `/api/v1/listings?limit=2&cursor=${pages.newest}`), 400, 'VALIDATION_FAILED');
  });

  it('refuses a garbage cursor with VALIDATION_FAILED', async () => {
    const garbage = [
      'garbage',
      '!!!',
      Buffer.from('{"sort":"newest"}').toString('base64url'),
      Buffer.from('[]').toString('base64url'),
      encodeCursor(['newest']),
      encodeCursor(['newest', 'lst_x', 'extra']),
      encodeCursor(['price', '10000']),
      encodeCursor(['score', 500, 'lst_x', 'extra']),
      Buffer.from('[["nested"]]').toString('base64url'),
    ];
    for (const cursor of garbage) {
      for (const sort of ['newest', 'price', 'score']) {
        const res = await plane.call('GET', `/api/v1/listings?sort=${sort}&cursor=${encodeURIComponent(cursor)}`);
        expectError(res, 400, 'VALIDATION_FAILED');
      }
    }
    expectError(await plane.call('GET', `/api/v1/listings?cursor=${'A'.repeat(600)}`), 400, 'VALIDATION_FAILED');
  });

  it('refuses a well-formed cursor whose positions have the wrong types with VALIDATION_FAILED', async () => {
    const ID = 'lst_00000000000000000000000000';
    const forged = [
      ['price', encodeCursor(['price', 'not-a-number', ID])],
      ['price', encodeCursor(['price', 1e30, ID])],
      ['price', encodeCursor(['price', 1.5, ID])],
      ['score', encodeCursor(['score', 'high', ID])],
      ['score', encodeCursor(['score', 1e12, ID])],
      ['newest', encodeCursor(['newest', 'lst_\u0000'])],
      ['newest', encodeCursor(['newest', 42])],
      ['price', encodeCursor(['price', '-5', ID])],
      ['price', encodeCursor(['price', '10000', 7])],
    ];
    const results = [];
    for (const [sort, cursor] of forged) {
      results.push({ sort, cursor, res: await plane.call('GET', `/api/v1/listings?sort=${sort}&cursor=${cursor}`) });
    }
    // Never a database error (500): a forged position is a client mistake.
    expect(results.map((r) => [r.sort, r.cursor, r.res.status])).toEqual(
      forged.map(([sort, cursor]) => [sort, cursor, 400]),
    );
    for (const { res } of results) expectError(res, 400, 'VALIDATION_FAILED');

    // Positions of the right types are accepted, even for a listing that does not exist.
    for (const [sort, position] of [
      ['newest', ['newest', ID]],
      ['price', ['price', '0', ID]],
      ['score', ['score', -1, ID]],
    ] as const) {
      const res = await plane.call('GET', `/api/v1/listings?sort=${sort}&cursor=${encodeCursor(position)}`);
      expect(res.status, res.text).toBe(200);
    }
  });
});
