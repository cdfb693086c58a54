import { EVENT_FIELD, EVENTS_GROUP, newId, redisKeys } from '@crochet/protocol';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../src/db.js';
import { type EventsConsumer, startEventsConsumer } from '../src/events-consumer.js';
import { type Call, endEvent, expectedRow, publish, publishRaw, ROW_COLUMNS, startEvent } from './events-support.js';
import {
  type ConsumerServices,
  closeConsumerServices,
  deleteRedisPrefix,
  openConsumerServices,
  testRedisPrefix,
} from './helpers.js';

/**
 * An entry that can never be applied must not block the stream behind it: after maxDeliveries failed deliveries it
 * moves to the dead-letter stream with its error, and every good event around it is recorded.
 */
describe('events consumer with poison entries', () => {
  const warnings: object[] = [];
  const log = { info: () => {}, warn: (details: object) => void warnings.push(details), error: () => {} };
  const call: Call = { listingId: newId('listing'), sellerId: newId('agent'), buyerId: newId('agent') };
  let services: ConsumerServices | undefined;
  let pool: Pool;
  let redis: Redis;
  let prefix: string;
  let consumer: EventsConsumer;

  beforeAll(async () => {
    services = await openConsumerServices();
    ({ pool, redis, prefix } = services);
    consumer = await startEventsConsumer({
      pool,
      redis,
      prefix,
      consumerName: 'cp',
      maxDeliveries: 3,
      blockMs: 50,
      log,
    });
  });
  afterAll(async () => {
    await consumer?.stop();
    await closeConsumerServices(services);
  });

  /** The dead letters under `of`, keyed by the original entry id (their order depends on how batches fell). */
  const deadLetters = async (of: string): Promise<Map<string, Record<string, string>>> => {
    const dead = new Map<string, Record<string, string>>();
    for (const [, fields] of await redis.xrange(redisKeys(of).eventsDead, '-', '+')) {
      const entry: Record<string, string> = {};
      for (let i = 0; i + 1 < fields.length; i += 2) entry[fields[i]!] = fields[i + 1]!;
      dead.set(entry['id']!, entry);
    }
    return dead;
  };

  it('dead-letters each poison entry after maxDeliveries and records the good ones around it', async () => {
    const good = Array.from({ length: 6 }, (_, i) => startEvent(call, { path: `/good/${i}` }));
    const ends = good.map((start) => endEvent(start));
    // Passes the consumer's checks but PostgreSQL refuses it (text cannot hold NUL): it fails the whole batch,
    // which is then retried entry by entry.
    const refusedByDatabase = JSON.stringify(startEvent(call, { path: '/nul\u0000' }));
    const poison = [
      'not json {',
      JSON.stringify({ type: 'gateway.teleport', v: 1, id: newId('gatewayRequest') }),
      JSON.stringify({ ...startEvent(call), v: 2 }),
      JSON.stringify({ ...startEvent(call), price_atomic: '-1' }),
      refusedByDatabase,
    ];
    const ids = {
      before: await publish(redis, prefix, ...good.slice(0, 3), ...ends.slice(0, 3)),
      poison: await publishRaw(redis, prefix, ...poison),
      after: await publish(redis, prefix, ...good.slice(3), ...ends.slice(3)),
    };
    // An entry without the event field at all.
    const fieldless = (await redis.xadd(redisKeys(prefix).events, '*', 'other', 'x')) as string;

    await consumer.drain();

    const { rows } = await pool.query(`SELECT ${ROW_COLUMNS} FROM gateway_requests ORDER BY id`);
    expect(rows).toEqual(good.map((start, i) => expectedRow(start, ends[i]!)).sort((a, b) => (a.id < b.id ? -1 : 1)));

    const dead = await deadLetters(prefix);
    const errors = [
      'event is not JSON',
      'unknown event type "gateway.teleport"',
      'gateway.start: unsupported version 2',
      'gateway.start: price_atomic is missing or malformed',
      expect.stringMatching(/0x00|null character|invalid byte sequence|\\u0000 cannot be converted/i),
      `entry has no "${EVENT_FIELD}" field`,
    ];
    expect(Object.fromEntries(dead)).toEqual(
      Object.fromEntries(
        [...ids.poison, fieldless].map((id, i) => [
          id,
          {
            [EVENT_FIELD]: poison[i] ?? '',
            // The whole entry is copied: the fieldless one's own field too.
            ...(id === fieldless ? { other: 'x' } : {}),
            id,
            error: errors[i],
            deliveries: '3',
            consumer: 'cp',
          },
        ]),
      ),
    );

    // Nothing is left pending, and nothing was added to the stream (the dead letters are copies in their own stream;
    // committed entries may be trimmed from this one).
    const pending = (await redis.xpending(redisKeys(prefix).events, EVENTS_GROUP)) as [number, ...unknown[]];
    expect(pending[0]).toBe(0);
    expect(await redis.xlen(redisKeys(prefix).events)).toBeLessThanOrEqual(
      ids.before.length + poison.length + ids.after.length + 1,
    );
    expect(consumer.stats()).toMatchObject({ processed: 12, deadLettered: 6 });
    expect(warnings).toHaveLength(6);
    expect(JSON.stringify(warnings)).not.toContain('/nul');
  });
  // A free start the database refuses is first held (unacknowledged) for its end; every pass over the pending list
  // while it is held delivers it again, which Redis counts. Those re-reads are not attempts (under load this test's
  // first case once saw 'deliveries 4').
  it('gives a held start the database refuses maxDeliveries attempts, its re-reads while held not counted', async () => {
    const own = testRedisPrefix();
    const said: object[] = [];
    const held = await startEventsConsumer({
      pool,
      redis,
      prefix: own,
      consumerName: 'cp',
      maxDeliveries: 3,
      blockMs: 50,
      log: { info: () => {}, warn: (details: object) => void said.push(details), error: () => {} },
    });
    try {
      const [, refused] = await publishRaw(
        redis,
        own,
        'not json {',
        JSON.stringify(startEvent(call, { path: '/n\u0000' })),
      );
      // Another poison entry read in a later batch, while the refused start is still held (< 250 ms).
      await new Promise((resolve) => setTimeout(resolve, 120));
      await redis.xadd(redisKeys(own).events, '*', 'other', 'x');
      await held.drain();
      const letter = (await deadLetters(own)).get(refused!);
      expect(letter).toMatchObject({
        deliveries: '3',
        error: expect.stringMatching(/0x00|null character|invalid byte|\\u0000 cannot be converted/i),
      });
      expect(held.stats()).toMatchObject({ processed: 0, deadLettered: 3 });
      expect(said).toHaveLength(3);
    } finally {
      await held.stop();
      await deleteRedisPrefix(own);
    }
  });
});
