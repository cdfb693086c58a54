import { EVENT_FIELD, EVENT_PAYMENT_FIELD, type GatewayEvent, type PaymentRecord, redisKeys } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { endEvent, startEvent } from './events-support.js';
import { startTestControlPlane, TEST_REDIS_URL, type TestPlane } from './helpers.js';

/**
 * DESIGN §2 durability rule: consumed proofs live in PostgreSQL too (`payment_proofs`), written from the start
 * records (the entry's `p` field) and released by the ends that give them back — in whatever order the events come.
 * And giving a proof back is done again here, in Redis, whatever the proxy managed.
 */

let plane: TestPlane;
let redis: Redis;
let call: { listingId: string; sellerId: string; buyerId: string };

beforeAll(async () => {
  plane = await startTestControlPlane();
  redis = new Redis(TEST_REDIS_URL);
  const seller = await plane.register('seller');
  const buyer = await plane.register('buyer');
  const { listing } = await plane.createListing(seller.apiKey);
  call = { listingId: listing.id, sellerId: seller.agentId, buyerId: buyer.agentId };
});
afterAll(async () => {
  redis.disconnect();
  await plane.stop();
});

const keys = () => redisKeys(plane.config.redisPrefix);
const payment = (proof: string): PaymentRecord => ({
  rail: 'solana-transfer',
  network: 'solana:test',
  payer: 'payer',
  amount_atomic: '10000',
  asset: 'usdc',
  tx: proof,
  proof_ids: [`tx:solana:test:${proof}`],
});

/** As the proxies write them: a paid start's payment in its own field. */
const publish = async (...events: GatewayEvent[]) => {
  const pipeline = redis.pipeline();
  for (const event of events) {
    const { payment: record, ...rest } = event as GatewayEvent & { payment?: PaymentRecord };
    const fields = [
      EVENT_FIELD,
      JSON.stringify(rest),
      ...(record ? [EVENT_PAYMENT_FIELD, JSON.stringify(record)] : []),
    ];
    pipeline.xadd(keys().events, '*', ...fields);
  }
  await pipeline.exec();
  await plane.eventsConsumer.drain();
};

const proofRow = async (proof: string) =>
  (
    await plane.deps.pool.query(
      'SELECT gateway_request_id, released_at IS NOT NULL AS released FROM payment_proofs WHERE proof_id = $1',
      [`tx:solana:test:${proof}`],
    )
  ).rows[0];

describe('consumed proofs in PostgreSQL', () => {
  it('are held by the request that consumed them, and taken over by a later one once given back', async () => {
    const first = startEvent(call, { payment: payment('p1') });
    await publish(first);
    expect(await proofRow('p1')).toEqual({ gateway_request_id: first.id, released: false });
    await publish(
      endEvent(first, { status: 'refused', http_status: 503, payment_outcome: { status: 'released', tx: null } }),
    );
    expect(await proofRow('p1')).toEqual({ gateway_request_id: first.id, released: true });
    const second = startEvent(call, { payment: payment('p1'), at: first.at + 1_000 });
    await publish(second, endEvent(second, { payment_outcome: { status: 'settled', tx: 'p1' } }));
    expect(await proofRow('p1')).toEqual({ gateway_request_id: second.id, released: false });
    // A late redelivery of the first start never takes the proof back.
    await publish(first);
    expect(await proofRow('p1')).toEqual({ gateway_request_id: second.id, released: false });
  });

  it('are released by an end that arrived before its start', async () => {
    const start = startEvent(call, { payment: payment('p2') });
    await publish(
      endEvent(start, { status: 'refused', http_status: 503, payment_outcome: { status: 'released', tx: null } }),
    );
    await publish(start);
    expect(await proofRow('p2')).toEqual({ gateway_request_id: start.id, released: true });
  });

  it('are given back in Redis when their end says so, if the request still holds them there', async () => {
    const start = startEvent(call, { payment: payment('p3') });
    const used = keys().paymentUsed('tx:solana:test:p3');
    await redis.set(used, start.id); // the proxy could not give it back
    await publish(
      start,
      endEvent(start, {
        status: 'client_aborted',
        http_status: 499,
        payment_outcome: { status: 'released', tx: null },
      }),
    );
    expect(await redis.get(used)).toBeNull();
    // Never a proof another request holds.
    const other = startEvent(call, { payment: payment('p4') });
    await redis.set(keys().paymentUsed('tx:solana:test:p4'), 'gr_someone_else');
    await publish(
      other,
      endEvent(other, { status: 'refused', http_status: 503, payment_outcome: { status: 'released', tx: null } }),
    );
    expect(await redis.get(keys().paymentUsed('tx:solana:test:p4'))).toBe('gr_someone_else');
  });
});
