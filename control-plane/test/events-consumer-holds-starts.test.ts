import { EVENTS_GROUP, newId, redisKeys } from '@crochet/protocol';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../src/db.js';
import { type EventsConsumer, startEventsConsumer } from '../src/events-consumer.js';
import { type Call, endEvent, expectedRow, publish, ROW_COLUMNS, startEvent } from './events-support.js';
import { type ConsumerServices, closeConsumerServices, openConsumerServices } from './helpers.js';

/**
 * A free call's start waits (unacknowledged) for its end, so that the two make one insert instead of an insert and
 * an update of every index; alone, it is written after the hold, and a consumer that stops writes what it holds.
 * Updates are counted by a trigger on the table.
 */
describe('the events consumer holds free starts for their end', () => {
  const silent = { info: () => {}, warn: () => {}, error: () => {} };
  const call: Call = { listingId: newId('listing'), sellerId: newId('agent'), buyerId: newId('agent') };
  let services: ConsumerServices | undefined;
  let pool: Pool;
  let redis: Redis;
  let prefix: string;

  beforeAll(async () => {
    services = await openConsumerServices();
    ({ pool, redis, prefix } = services);
    await pool.query(`
      CREATE TABLE row_updates (id text);
      CREATE FUNCTION note_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO row_updates VALUES (NEW.id); RETURN NEW; END $$;
      CREATE TRIGGER note_update AFTER UPDATE ON gateway_requests FOR EACH ROW EXECUTE FUNCTION note_update();`);
    await redis.xgroup('CREATE', redisKeys(prefix).events, EVENTS_GROUP, '0', 'MKSTREAM');
  });
  afterAll(async () => {
    await closeConsumerServices(services);
  });

  const consumer = (holdStartsMs: number): Promise<EventsConsumer> =>
    startEventsConsumer({ pool, redis, prefix, consumerName: 'holder', blockMs: 50, holdStartsMs, log: silent });
  const rows = async (ids: string[]) =>
    (await pool.query(`SELECT ${ROW_COLUMNS} FROM gateway_requests WHERE id = ANY ($1) ORDER BY id`, [ids])).rows;
  const updates = async (ids: string[]) =>
    Number((await pool.query('SELECT count(*) FROM row_updates WHERE id = ANY ($1)', [ids])).rows[0].count);

  it('writes a start and its end that arrive apart as one insert', async () => {
    const running = await consumer(5_000);
    const calls = Array.from({ length: 20 }, () => startEvent(call, { price_atomic: '0' }));
    await publish(redis, prefix, ...calls);
    // Read by the consumer before any end exists (its ends are written by the proxies' next flush).
    await new Promise((resolve) => setTimeout(resolve, 200));
    await publish(redis, prefix, ...calls.map((start) => endEvent(start)));
    await running.drain();
    const ids = calls.map((c) => c.id);
    expect(await rows(ids)).toEqual(calls.map((start) => expectedRow(start, endEvent(start))).sort(byId));
    expect(await updates(ids)).toBe(0);
    await running.stop();
  });

  it('writes a start alone once the hold is over, and its late end as an update', async () => {
    const running = await consumer(100);
    const start = startEvent(call, { price_atomic: '0' });
    await publish(redis, prefix, start);
    await running.drain();
    expect(await rows([start.id])).toEqual([expectedRow(start, null)]);
    await publish(redis, prefix, endEvent(start));
    await running.drain();
    expect(await rows([start.id])).toEqual([expectedRow(start, endEvent(start))]);
    expect(await updates([start.id])).toBe(1);
    await running.stop();
  });

  it('writes what it holds when it stops', async () => {
    const running = await consumer(60_000);
    const start = startEvent(call, { price_atomic: '0' });
    await publish(redis, prefix, start);
    // Held (pending, unacknowledged) until stop.
    await expect
      .poll(async () => Number((await redis.xpending(redisKeys(prefix).events, EVENTS_GROUP))[0]), { timeout: 5_000 })
      .toBe(1);
    expect(await rows([start.id])).toEqual([]);
    await running.stop();
    expect(await rows([start.id])).toEqual([expectedRow(start, null)]);
    expect(Number((await redis.xpending(redisKeys(prefix).events, EVENTS_GROUP))[0])).toBe(0);
  });

  it('never holds a paid start: its proof is recorded at once', async () => {
    const running = await consumer(60_000);
    const proof = `tx:solana:test:${newId('request')}`;
    const start = startEvent(call, {
      payment: {
        rail: 'solana-transfer',
        network: 'solana:test',
        payer: 'payer',
        amount_atomic: '10000',
        asset: 'usdc',
        tx: 'sig',
        proof_ids: [proof],
      },
    });
    await publish(redis, prefix, start);
    await running.drain();
    const { rows: proofs } = await pool.query('SELECT gateway_request_id FROM payment_proofs WHERE proof_id = $1', [
      proof,
    ]);
    expect(proofs).toEqual([{ gateway_request_id: start.id }]);
    await running.stop();
  });
});

const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
