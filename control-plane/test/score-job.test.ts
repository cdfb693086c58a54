import { newId, ulid } from '@crochet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCORE_EXAMPLES } from '../src/score/examples.js';
import { SCORE, type ScoreInputs, scoreListing, scoreSeller } from '../src/score/formula.js';
import { computeScores } from '../src/score/job.js';
import { startTestControlPlane, type TestPlane } from './helpers.js';
import { paymentFor } from './reviews-support.js';

/**
 * §3.6: the score job over real history in PostgreSQL. The history of four listings is built so that what the job
 * must count adds up to the formula's published examples (new, solid, flaky, gamed), surrounded by calls it must not
 * count (buyer mistakes, unpaid 402s, refusals, unsettled 2xx, the seller's own calls, calls older than the window,
 * calls still in flight, free calls). The job's scores must then be exactly the formula's, and the API must show them.
 */

interface CallRow {
  listing: string;
  seller: string;
  buyer: string;
  status: 'completed' | 'upstream_error' | 'payment_required' | 'refused' | 'forwarded';
  http: number | null;
  latencyMs: number | null;
  /** Payment outcome of a paid call; null: no payment at all (unpaid or free). */
  outcome: 'settled' | 'refund_due' | 'released' | 'pending' | null;
  free?: boolean;
  daysAgo?: number;
}

const INSERT_SQL = `
  INSERT INTO gateway_requests (id, listing_id, seller_id, buyer_id, key_id, method, path, status, http_status,
                                latency_ms, upstream_latency_ms, bytes_in, bytes_out, price_atomic, currency, payment,
                                created_at, completed_at)
  SELECT c.id, c.listing, c.seller, c.buyer, 'key_00000000000000000000000000', 'POST', '/', c.status, c.http,
         c.latency + 5, c.latency, 10, 100, c.price, 'USDC', c.payment, c.at, CASE WHEN c.http IS NULL THEN NULL ELSE c.at END
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::int[], $8::bigint[],
                $9::jsonb[], $10::timestamptz[])
         AS c (id, listing, seller, buyer, status, http, latency, price, payment, at)`;

describe('the Crochet Score job', () => {
  let plane: TestPlane;
  type Agent = { apiKey: string; agentId: string };
  let sellerA: Agent; // solid and new
  let sellerB: Agent; // flaky
  let sellerC: Agent; // gamed
  let sellerD: Agent; // quiet (no calls) and free
  const listings: Record<'solid' | 'new' | 'flaky' | 'gamed' | 'quiet' | 'free', string> = {} as never;
  /** Successful calls per listing and buyer, for the reviews. */
  const successes = new Map<string, string[]>();
  let buyers: string[];

  const insertCalls = async (calls: CallRow[]): Promise<string[]> => {
    const ids = calls.map((c) => `gr_${ulid(Date.now() - (c.daysAgo ?? 0) * 86_400_000 - Math.random() * 60_000)}`);
    await plane.deps.pool.query(INSERT_SQL, [
      ids,
      calls.map((c) => c.listing),
      calls.map((c) => c.seller),
      calls.map((c) => c.buyer),
      calls.map((c) => c.status),
      calls.map((c) => c.http),
      calls.map((c) => c.latencyMs),
      calls.map((c) => (c.free ? '0' : '10000')),
      calls.map((c, i) =>
        c.outcome === null
          ? null
          : JSON.stringify({ ...paymentFor(ids[i]!), outcome: { status: c.outcome, tx: 'tx' } }),
      ),
      ids.map((id) => new Date(decodeTime(id))),
    ]);
    for (const [i, c] of calls.entries()) {
      if (c.status === 'completed' && c.http === 200 && c.outcome === 'settled' && !c.daysAgo) {
        const key = `${c.listing}:${c.buyer}`;
        successes.set(key, [...(successes.get(key) ?? []), ids[i]!]);
      }
    }
    return ids;
  };

  const insertReviews = async (listing: string, ratings: [buyer: string, rating: number][]): Promise<void> => {
    for (const [buyer, rating] of ratings) {
      const call = successes.get(`${listing}:${buyer}`)?.shift();
      if (!call) throw new Error(`no successful call of ${buyer} on ${listing} left to review`);
      await plane.deps.pool.query(
        `INSERT INTO reviews (id, listing_id, reviewer_id, gateway_request_id, rating) VALUES ($1, $2, $3, $4, $5)`,
        [newId('review'), listing, buyer, call, rating],
      );
    }
  };

  /** The example's judged calls spread over `buyerIds` as SCORE_EXAMPLES has them, failures never a buyer's first. */
  const exampleCalls = (
    example: ScoreInputs,
    listing: string,
    seller: string,
    buyerIds: string[],
    failure: (n: number) => Pick<CallRow, 'status' | 'http' | 'outcome'>,
  ): CallRow[] => {
    const latencyMs = example.p95LatencyMs;
    let failures = example.paidCalls - example.successes;
    const calls: CallRow[] = [];
    for (const [b, count] of example.paidCallsByBuyer.entries()) {
      for (let c = 0; c < count; c++) {
        const base = { listing, seller, buyer: buyerIds[b]!, latencyMs };
        if (c > 0 && failures > 0) calls.push({ ...base, ...failure(failures--) });
        else calls.push({ ...base, status: 'completed', http: 200, outcome: 'settled' });
      }
    }
    expect(failures).toBe(0);
    return calls;
  };

  /** Calls the job must ignore, with a latency that would show in p95 if one were counted. */
  const noise = (listing: string, seller: string): CallRow[] => {
    const slow = { listing, seller, latencyMs: 60_000 };
    const rows: CallRow[] = [];
    for (const [i, buyer] of buyers.slice(0, 10).entries()) {
      rows.push({ ...slow, buyer, status: 'completed', http: 400 + (i % 2) * 4, outcome: 'refund_due' }); // 400, 404
      rows.push({ ...slow, buyer, status: 'payment_required', http: 402, outcome: null, latencyMs: null });
      rows.push({ ...slow, buyer, status: 'refused', http: 429, outcome: 'released' });
      rows.push({ ...slow, buyer, status: 'completed', http: 200, outcome: 'pending' });
      rows.push({ ...slow, buyer, status: 'completed', http: 302, outcome: 'settled' });
      rows.push({ ...slow, buyer, status: 'forwarded', http: null, outcome: 'settled', latencyMs: null });
      rows.push({
        ...slow,
        buyer,
        status: 'completed',
        http: 500,
        outcome: 'refund_due',
        daysAgo: SCORE.windowDays + 5,
      });
    }
    for (let i = 0; i < 20; i++)
      rows.push({ ...slow, buyer: seller, status: 'completed', http: 200, outcome: 'settled' });
    return rows;
  };

  const getListing = async (id: string) => {
    const res = await plane.call('GET', `/api/v1/listings/${id}`);
    expect(res.status, res.text).toBe(200);
    return res.body.data;
  };

  beforeAll(async () => {
    plane = await startTestControlPlane({ CROCHET_SCORE_INTERVAL_SECONDS: '0' });
    [sellerA, sellerB, sellerC, sellerD] = [
      await plane.register('seller-a'),
      await plane.register('seller-b'),
      await plane.register('seller-c'),
      await plane.register('seller-d'),
    ];
    const paid = { pricing_model: 'per_call', price: { amount: '0.01' } };
    const create = async (seller: Agent, name: string, fields: object = paid) =>
      (await plane.createListing(seller.apiKey, { name, ...fields })).listing.id as string;
    listings.solid = await create(sellerA, 'Solid');
    listings.new = await create(sellerA, 'New');
    listings.flaky = await create(sellerB, 'Flaky');
    listings.gamed = await create(sellerC, 'Gamed');
    listings.quiet = await create(sellerD, 'Quiet');
    listings.free = await create(sellerD, 'Free', { pricing_model: 'free' });
    // Buyers exist as agents (reviews refer to them); their calls are history rows.
    buyers = Array.from({ length: 40 }, () => newId('agent'));
    await plane.deps.pool.query(`INSERT INTO agents (id, name) SELECT id, 'buyer' FROM unnest($1::text[]) AS id`, [
      buyers,
    ]);

    const { solid, new: fresh, flaky, gamed } = SCORE_EXAMPLES;
    const A = sellerA.agentId;
    await insertCalls([
      ...exampleCalls(solid, listings.solid, A, buyers, () => ({
        status: 'completed',
        http: 500,
        outcome: 'refund_due',
      })),
      ...noise(listings.solid, A),
      ...exampleCalls(fresh, listings.new, A, buyers.slice(10), () => {
        throw new Error('no failures in "new"');
      }),
      // Failures of every kind the seller is blamed for, under either settlement policy.
      ...exampleCalls(
        flaky,
        listings.flaky,
        sellerB.agentId,
        buyers,
        (n) =>
          [
            { status: 'upstream_error' as const, http: 504, outcome: 'refund_due' as const },
            { status: 'upstream_error' as const, http: 502, outcome: 'released' as const },
            { status: 'completed' as const, http: 503, outcome: 'released' as const },
            { status: 'completed' as const, http: 429, outcome: 'refund_due' as const },
            { status: 'completed' as const, http: 408, outcome: 'refund_due' as const },
          ][n % 5]!,
      ),
      ...noise(listings.flaky, sellerB.agentId),
      ...exampleCalls(gamed, listings.gamed, sellerC.agentId, buyers.slice(38), () => {
        throw new Error('no failures in "gamed"');
      }),
      ...Array.from(
        { length: 20 },
        (): CallRow => ({
          listing: listings.free,
          seller: sellerD.agentId,
          buyer: buyers[0]!,
          status: 'completed',
          http: 200,
          latencyMs: 10,
          outcome: null,
          free: true,
        }),
      ),
    ]);
    await insertReviews(
      listings.solid,
      solid.ratingsByReviewer.map((rating, i) => [buyers[i]!, rating]),
    );
    await insertReviews(
      listings.flaky,
      flaky.ratingsByReviewer.map((rating, i) => [buyers[i]!, rating]),
    );
    await insertReviews(listings.new, [[buyers[10]!, 5]]);
    // The gamed listing's first buyer reviews three calls: it still counts once.
    await insertReviews(listings.gamed, [
      [buyers[38]!, 5],
      [buyers[38]!, 5],
      [buyers[38]!, 5],
      [buyers[39]!, 5],
    ]);
  });
  afterAll(async () => {
    await plane?.stop();
  });

  const NOTHING: ScoreInputs = {
    paidCalls: 0,
    successes: 0,
    p95LatencyMs: null,
    paidCallsByBuyer: [],
    distinctBuyers: 0,
    ratingsByReviewer: [],
  };

  it('shows no score before the first computation', async () => {
    const listing = await getListing(listings.solid);
    expect(listing.crochet_score).toBeNull();
    expect(listing.verified).toBe(false);
    expect(listing.score).toEqual({
      value: null,
      verified: false,
      seller_score: null,
      components: null,
      computed_at: null,
    });
  });

  it('computes from the history exactly what the formula gives for the published examples', async () => {
    const report = await plane.scoreJob.runOnce();
    expect(report).toMatchObject({ listings: 6, verified: 1, sellers: 4 });
    const computedAt = report!.computed_at.toISOString();
    const expected = {
      solid: scoreListing(SCORE_EXAMPLES.solid),
      new: scoreListing(SCORE_EXAMPLES.new),
      flaky: scoreListing(SCORE_EXAMPLES.flaky),
      gamed: scoreListing(SCORE_EXAMPLES.gamed),
      quiet: scoreListing(NOTHING),
      free: scoreListing(NOTHING),
    };
    for (const [name, score] of Object.entries(expected)) {
      const listing = await getListing(listings[name as keyof typeof listings]);
      expect({ name, ...listing.score, seller_score: undefined }).toEqual({
        name,
        value: score.value,
        verified: score.verified,
        seller_score: undefined,
        components: score.components,
        computed_at: computedAt,
      });
      expect([listing.crochet_score, listing.verified]).toEqual([score.value, score.verified]);
    }
    expect(expected.solid.verified).toBe(true);
    expect(expected.gamed.verified).toBe(false);
    expect(expected.new.value).toBeLessThan(800);
  });

  it('orders sort=score by it, and lists carry the score object', async () => {
    const res = await plane.call('GET', '/api/v1/listings?sort=score&limit=100');
    expect(res.status, res.text).toBe(200);
    const names = res.body.data.map((l: any) => l.name);
    expect(names.slice(0, 4)).toEqual(['Solid', 'Flaky', 'Gamed', 'New']);
    // Quiet and Free tie at the prior: newest first.
    expect(names.slice(4)).toEqual(['Free', 'Quiet']);
    const values = res.body.data.map((l: any) => l.score.value);
    expect(values).toEqual([...values].sort((a: number, b: number) => b - a));
    expect(res.body.data[0].score.components.distinct_buyers).toBe(40);
    // The default sort is the same, and walks the same across pages.
    const paged = await plane.call('GET', '/api/v1/listings?limit=4');
    expect(paged.body.data.map((l: any) => l.name)).toEqual(names.slice(0, 4));
    const rest = await plane.call('GET', `/api/v1/listings?limit=4&cursor=${paged.body.next_cursor}`);
    expect(rest.body.data.map((l: any) => l.name)).toEqual(names.slice(4));
  });

  it("scores sellers by their listings' paid calls", async () => {
    const value = (name: keyof typeof listings) =>
      scoreListing(name === 'quiet' || name === 'free' ? NOTHING : SCORE_EXAMPLES[name]).value;
    const sellerOf = {
      [sellerA.agentId]: scoreSeller([
        { score: value('solid'), paidCalls: SCORE_EXAMPLES.solid.paidCalls, archived: false },
        { score: value('new'), paidCalls: SCORE_EXAMPLES.new.paidCalls, archived: false },
      ]),
      [sellerB.agentId]: value('flaky'),
      [sellerC.agentId]: value('gamed'),
      [sellerD.agentId]: 500,
    };
    for (const id of Object.values(listings)) {
      const listing = await getListing(id);
      expect(listing.score.seller_score, listing.name).toBe(sellerOf[listing.seller_id]);
    }
    const { rows } = await plane.deps.pool.query(
      'SELECT seller_id, score, paid_calls::int AS paid_calls, listings FROM seller_scores ORDER BY seller_id',
    );
    expect(rows).toEqual(
      [
        { seller_id: sellerA.agentId, score: sellerOf[sellerA.agentId], paid_calls: 505, listings: 2 },
        { seller_id: sellerB.agentId, score: sellerOf[sellerB.agentId], paid_calls: 500, listings: 1 },
        { seller_id: sellerC.agentId, score: sellerOf[sellerC.agentId], paid_calls: 500, listings: 1 },
        { seller_id: sellerD.agentId, score: 500, paid_calls: 0, listings: 2 },
      ].sort((a, b) => (a.seller_id < b.seller_id ? -1 : 1)),
    );
  });

  it('recomputes from new history, and runs one at a time', async () => {
    const before = await getListing(listings.solid);
    // A bad day: 100 timeouts across the solid listing's buyers.
    await insertCalls(
      Array.from(
        { length: 100 },
        (_, i): CallRow => ({
          listing: listings.solid,
          seller: sellerA.agentId,
          buyer: buyers[i % 40]!,
          status: 'upstream_error',
          http: 504,
          latencyMs: 30_000,
          outcome: 'refund_due',
        }),
      ),
    );
    const [first, second] = await Promise.all([plane.scoreJob.runOnce(), plane.scoreJob.runOnce()]);
    expect([first === null, second === null].sort()).toEqual([false, true]);
    const after = await getListing(listings.solid);
    expect(after.score.components).toMatchObject({ paid_calls: 600, successes: 495, p95_latency_ms: 30_000 });
    expect(after.score.value).toBeLessThan(before.score.value);
    expect(after.verified).toBe(false);
    expect(new Date(after.score.computed_at).getTime()).toBeGreaterThan(new Date(before.score.computed_at).getTime());
    // The listing's own updated_at is the seller's, not the job's.
    expect(after.updated_at).toBe(before.updated_at);
  });

  it('skips a scheduled run when any control plane computed within the interval', async () => {
    await plane.scoreJob.runOnce();
    // Another control plane's timer, a minute after this run: scores are fresh, nothing to do.
    expect(await computeScores(plane.deps.pool, 60_000)).toBeNull();
    // On demand (or once the interval has passed) it computes.
    expect(await computeScores(plane.deps.pool, 0)).toMatchObject({ listings: expect.any(Number) });
  });

  it('publishes the formula it computes with', async () => {
    const res = await plane.call('GET', '/docs/crochet-score');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/markdown');
    expect(res.text).toContain(
      `\`verified\` = score ≥ ${SCORE.verifiedMinScore} **and** at least ${SCORE.verifiedMinPaidCalls} paid calls`,
    );
    expect(res.text).toContain(`**${scoreListing(SCORE_EXAMPLES.solid).value}**`);
    expect((await plane.call('GET', '/llms.txt')).text).toContain('/docs/crochet-score');
    const protocol = (await plane.call('GET', '/.well-known/agent-protocol.json')).body;
    expect(protocol.documents.crochet_score).toBe(`${plane.config.publicBaseUrl}/docs/crochet-score`);
  });
});

/** The millisecond time of a ULID-based id. */
const decodeTime = (id: string): number => {
  const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  let time = 0;
  for (const char of id.slice(id.indexOf('_') + 1, id.indexOf('_') + 11)) time = time * 32 + alphabet.indexOf(char);
  return time;
};
