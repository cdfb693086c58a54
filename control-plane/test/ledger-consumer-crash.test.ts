import { EVENTS_GROUP, newId, redisKeys } from '@crochet/protocol';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Pool, transaction } from '../src/db.js';
import { applyEvents, type EventsConsumer, startEventsConsumer } from '../src/events-consumer.js';
import { type Call, publish, publishRaw } from './events-support.js';
import { type ConsumerServices, closeConsumerServices, openConsumerServices } from './helpers.js';
import { ledgerTotals, paidEnd, paidStart, unbalancedJournals } from './ledger-support.js';

/**
 * §3.5 through the real consumer: a crash after COMMIT and before XACK redelivers entries whose journals exist (a
 * no-op); a crash inside the transaction leaves nothing, and the entries, claimed by another consumer, post once.
 * A request whose payment record cannot be booked is dead-lettered after maxDeliveries.
 */
describe('ledger postings through the events consumer', () => {
  const silent = { info: () => {}, warn: () => {}, error: () => {} };
  const call: Call = { listingId: newId('listing'), sellerId: newId('agent'), buyerId: newId('agent') };
  let services: ConsumerServices | undefined;
  let pool: Pool;
  let redis: Redis;
  let prefix: string;
  let stream: string;
  const running: EventsConsumer[] = [];

  beforeAll(async () => {
    services = await openConsumerServices();
    ({ pool, redis, prefix } = services);
    stream = redisKeys(prefix).events;
    await redis.xgroup('CREATE', stream, EVENTS_GROUP, '0', 'MKSTREAM');
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((consumer) => consumer.stop()));
  });
  afterAll(async () => {
    await closeConsumerServices(services);
  });

  const consumer = async (name: string, options: { claimIdleMs?: number; maxDeliveries?: number } = {}) => {
    const started = await startEventsConsumer({
      pool,
      redis,
      prefix,
      consumerName: name,
      blockMs: 50,
      log: silent,
      ...options,
    });
    running.push(started);
    return started;
  };
  const readWithoutAck = async (name: string, count: number): Promise<string[]> => {
    const reply = (await redis.xreadgroup('GROUP', EVENTS_GROUP, name, 'COUNT', count, 'STREAMS', stream, '>')) as
      | [string, [string, string[]][]][]
      | null;
    return reply?.[0]?.[1].map(([id]) => id) ?? [];
  };
  const paid = (n: number) => {
    const starts = Array.from({ length: n }, (_, i) => paidStart(call, BigInt(1000 + i)));
    const ends = starts.map((s, i) => paidEnd(s, i % 4 === 0 ? 'refund_due' : 'settled'));
    return { starts, ends, ids: starts.map((s) => s.id) };
  };

  it('makes a redelivery after commit-then-crash a no-op', async () => {
    const { starts, ends, ids } = paid(20);
    await publish(redis, prefix, ...starts, ...ends);
    expect(await readWithoutAck('cp-committed', 100)).toHaveLength(40);
    // It committed its transaction, then died before XACK.
    await transaction(pool, (client) => applyEvents(client, [...starts, ...ends]));
    const committed = await ledgerTotals(pool, ids);
    expect(committed).toEqual({ payments: 20, refunds: 5, entries: 75, total: '0' });
    const { rows: before } = await pool.query('SELECT id FROM ledger_entries ORDER BY id');

    const survivor = await consumer('cp-a', { claimIdleMs: 200 });
    await survivor.drain();
    expect(survivor.stats().processed).toBe(40);
    expect(await ledgerTotals(pool, ids)).toEqual(committed);
    expect((await pool.query('SELECT id FROM ledger_entries ORDER BY id')).rows).toEqual(before);
  });

  it('posts once what a consumer killed mid-transaction left, after another consumer claims it', async () => {
    const { starts, ends, ids } = paid(20);
    await publish(redis, prefix, ...starts, ...ends);
    expect(await readWithoutAck('cp-killed', 100)).toHaveLength(40);
    // The crashed consumer's transaction: applied, not committed, and holding its locks while the survivor starts.
    const client = await pool.connect();
    client.on('error', () => {}); // its connection is about to be killed
    await client.query('BEGIN');
    await applyEvents(client, [...starts, ...ends]);
    const survivor = await consumer('cp-b', { claimIdleMs: 200 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    await pool.query('SELECT pg_terminate_backend($1)', [pid]); // the process dies: PostgreSQL rolls back
    client.release(true);

    await survivor.drain();
    expect(survivor.stats()).toMatchObject({ processed: 40, deadLettered: 0 });
    expect(await ledgerTotals(pool, ids)).toEqual({ payments: 20, refunds: 5, entries: 75, total: '0' });
    expect(await unbalancedJournals(pool)).toEqual([]);
  });

  it('dead-letters a start whose payment is malformed after maxDeliveries, and posts the rest', async () => {
    const { starts, ends, ids } = paid(4);
    const bad = paidStart(call, 5000n);
    const badStart = { ...bad, payment: { ...bad.payment!, network: 42 } };
    const badEnd = paidEnd(bad);
    await publish(redis, prefix, ...starts);
    const [badStartId] = await publishRaw(redis, prefix, JSON.stringify(badStart));
    await publish(redis, prefix, badEnd);
    await publish(redis, prefix, ...ends);
    const c = await consumer('cp-c', { claimIdleMs: 200, maxDeliveries: 3 });
    await c.drain();
    expect(await ledgerTotals(pool, ids)).toEqual({ payments: 4, refunds: 1, entries: 15, total: '0' });
    expect(await ledgerTotals(pool, [bad.id])).toEqual({ payments: 0, refunds: 0, entries: 0, total: '0' });
    const dead = await redis.xrange(redisKeys(prefix).eventsDead, '-', '+');
    expect(dead).toHaveLength(1);
    const fields = dead[0]![1];
    expect(fields[fields.indexOf('id') + 1]).toBe(badStartId);
    expect(fields[fields.indexOf('error') + 1]).toMatch(/payment is missing or malformed/);
    expect(fields[fields.indexOf('deliveries') + 1]).toBe('3');
    expect(c.stats()).toMatchObject({ deadLettered: 1 });
  });
});
