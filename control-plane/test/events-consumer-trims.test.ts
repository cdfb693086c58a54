import { EVENT_FIELD, EVENT_PAYMENT_FIELD, EVENT_TIME_FIELD, EVENTS_GROUP, newId, redisKeys } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, migrate, type Pool } from '../src/db.js';
import { type EventsConsumer, startEventsConsumer } from '../src/events-consumer.js';
import { type Call, endEvent, publish, startEvent } from './events-support.js';
import { startRedisProcess } from './fault-services.js';
import { createTestDatabase, deleteRedisPrefix, TEST_REDIS_URL, testRedisPrefix } from './helpers.js';

/**
 * The events stream does not grow forever: what is committed to PostgreSQL is trimmed from Redis (two entries per
 * gateway call otherwise stay for good). What is not committed — read by a consumer whose PostgreSQL was down, still
 * pending — is never trimmed, however far the others got, and is written once a consumer can.
 */
describe('the events consumer trims what it committed', () => {
  const silent = { info: () => {}, warn: () => {}, error: () => {} };
  const call: Call = { listingId: newId('listing'), sellerId: newId('agent'), buyerId: newId('agent') };
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let pool: Pool;
  let down: Pool;
  let redis: Redis;
  let prefix: string;
  let stream: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, 4);
    // A PostgreSQL that refuses every connection.
    down = createPool('postgres://postgres@127.0.0.1:1/none', 1);
    await migrate(pool);
    redis = new Redis(TEST_REDIS_URL);
    prefix = testRedisPrefix();
    stream = redisKeys(prefix).events;
    await redis.xgroup('CREATE', stream, EVENTS_GROUP, '0', 'MKSTREAM');
  });
  afterAll(async () => {
    redis?.disconnect();
    await pool?.end();
    await down?.end();
    await deleteRedisPrefix(prefix);
    await db?.drop();
  });

  const consumer = (name: string, on: Pool): Promise<EventsConsumer> =>
    startEventsConsumer({ pool: on, redis, prefix, consumerName: name, blockMs: 50, holdStartsMs: 0, log: silent });
  /** `n` free calls, start and end, into the stream; their ids. */
  const calls = async (n: number): Promise<string[]> => {
    const starts = Array.from({ length: n }, () => startEvent(call, { price_atomic: '0' }));
    await publish(redis, prefix, ...starts.flatMap((start) => [start, endEvent(start)]));
    return starts.map((s) => s.id);
  };
  const recorded = async (ids: string[]): Promise<number> =>
    Number((await pool.query('SELECT count(*) FROM gateway_requests WHERE id = ANY ($1)', [ids])).rows[0].count);

  it('keeps the whole of an entry it dead-letters, since the original is trimmed once acknowledged', async () => {
    const dead = redisKeys(prefix).eventsDead;
    const start = startEvent(call);
    // A paid start whose payment record is malformed: refused, dead-lettered at its first delivery.
    const fields = [
      EVENT_FIELD,
      JSON.stringify(start),
      EVENT_PAYMENT_FIELD,
      '{"rail":',
      EVENT_TIME_FIELD,
      '1733300000000',
    ];
    const id = (await redis.xadd(stream, '*', ...fields))!;
    const running = await startEventsConsumer({
      pool,
      redis,
      prefix,
      consumerName: 'd',
      blockMs: 50,
      holdStartsMs: 0,
      maxDeliveries: 1,
      log: silent,
    });
    await expect.poll(() => redis.xlen(dead), { timeout: 5_000 }).toBe(1);
    await calls(200);
    await running.drain();
    await expect.poll(async () => (await redis.xrange(stream, id, id)).length, { timeout: 5_000 }).toBe(0);
    await running.stop();
    const letters = await redis.xrange(dead, '-', '+');
    expect(letters).toHaveLength(1);
    const copy = letters[0]![1];
    expect(copy.slice(0, fields.length)).toEqual(fields);
    expect(
      Object.fromEntries(Array.from({ length: copy.length / 2 }, (_, i) => [copy[2 * i], copy[2 * i + 1]])),
    ).toMatchObject({
      id,
      error: expect.stringContaining('payment'),
      deliveries: '1',
      consumer: 'd',
    });
  });

  it("completes an earlier release's dead letters (the event field alone) from their originals before trimming", async () => {
    const dead = redisKeys(prefix).eventsDead;
    const start = startEvent(call);
    const fields = [EVENT_FIELD, JSON.stringify(start), EVENT_PAYMENT_FIELD, '{"rail":', EVENT_TIME_FIELD, '17'];
    const id = (await redis.xadd(stream, '*', ...fields))!;
    const letter = ['id', id, 'error', 'payment is malformed', 'deliveries', '5', 'consumer', 'old'];
    await redis.del(dead);
    await redis.xadd(dead, '*', EVENT_FIELD, JSON.stringify(start), ...letter);
    // Acknowledged by that release, as it dead-lettered it.
    await redis.xreadgroup('GROUP', EVENTS_GROUP, 'old', 'STREAMS', stream, '>');
    await redis.xack(stream, EVENTS_GROUP, id);
    const running = await consumer('c', pool);
    await calls(200);
    await running.drain();
    await expect.poll(async () => (await redis.xrange(stream, id, id)).length, { timeout: 5_000 }).toBe(0);
    await running.stop();
    const letters = await redis.xrange(dead, '-', '+');
    expect(letters.map(([, f]) => f)).toEqual([[...fields, ...letter]]);
  });

  it('trims the committed entries, never the pending ones, and loses nothing', async () => {
    // Committed: trimmed (whole stream nodes only — at most 100 entries or 4 kB each — so some may stay).
    const first = await consumer('b', pool);
    const early = await calls(1_000);
    await first.drain();
    expect(await recorded(early)).toBe(1_000);
    await expect.poll(() => redis.xlen(stream), { timeout: 5_000 }).toBeLessThan(200);
    await first.stop();

    // Read by a consumer whose PostgreSQL is down: pending, not committed.
    const failing = await consumer('a', down);
    const stuck = await calls(50);
    await expect
      .poll(async () => ((await redis.xpending(stream, EVENTS_GROUP)) as [number])[0], { timeout: 5_000 })
      .toBe(100);
    await failing.stop();
    const stuckEntries = (await redis.xrange(stream, '-', '+')).slice(-100);

    // Another consumer commits everything after them; the watermark stops before the pending ones, so neither they
    // nor anything after them is trimmed.
    const second = await consumer('b', pool);
    const late = await calls(1_000);
    await expect.poll(() => recorded(late), { timeout: 10_000 }).toBe(1_000);
    await new Promise((resolve) => setTimeout(resolve, 300)); // a few watermark publications
    await second.stop();
    const left = await redis.xrange(stream, '-', '+');
    expect(left.length).toBeGreaterThanOrEqual(100 + 2_000);
    const ids = new Set(left.map(([id]) => id));
    for (const [id] of stuckEntries) expect(ids.has(id)).toBe(true);
    expect(await recorded(stuck)).toBe(0);

    // The consumer that read them, back with its PostgreSQL: written once, and then trimmed like the rest.
    const back = await consumer('a', pool);
    await back.drain();
    expect(await recorded(stuck)).toBe(50);
    await expect.poll(() => redis.xlen(stream), { timeout: 5_000 }).toBeLessThan(200);
    await back.stop();
    expect(await recorded([...early, ...late])).toBe(2_000);
  });

  it('frees a Redis that filled up while PostgreSQL was away: the trim runs even out of memory', async () => {
    const full = await startRedisProcess();
    const own = new Redis(full.url);
    try {
      const fullPrefix = testRedisPrefix();
      const events = redisKeys(fullPrefix).events;
      await own.xgroup('CREATE', events, EVENTS_GROUP, '0', 'MKSTREAM');
      await own.config('SET', 'maxmemory', '4mb');
      await own.config('SET', 'maxmemory-policy', 'noeviction');
      // The proxies' events pile up until Redis refuses more (what a long PostgreSQL outage leaves).
      const ids: string[] = [];
      for (;;) {
        const batch = Array.from({ length: 200 }, () => startEvent(call, { price_atomic: '0' }));
        const pipeline = own.pipeline();
        for (const start of batch) pipeline.xadd(events, '*', EVENT_FIELD, JSON.stringify(start));
        const results = (await pipeline.exec()) ?? [];
        const written = results.filter(([error]) => !error).length;
        ids.push(...batch.slice(0, written).map((start) => start.id));
        if (written < batch.length) break;
      }
      // A pipeline's own buffers count until it is read, and Redis shrinks an idle client's query buffer on its own
      // schedule: once freed, Redis may have room again. Redis also counts a command's own arguments when it decides
      // OOM, so a few hundred bytes below the limit refuse every event and take every small write. So: one event at a
      // time until one is refused, then a small write of a new key each time (which takes memory, so the loop moves
      // on) until even that is refused. Redis may still free a little later; what follows needs only that it was full.
      let refused = false;
      for (let tries = 0; !refused && tries < 10_000; tries++) {
        const start = startEvent(call, { price_atomic: '0' });
        const added = await own.xadd(events, '*', EVENT_FIELD, JSON.stringify(start)).catch(() => null);
        if (added !== null) {
          ids.push(start.id);
          continue;
        }
        const probe = await own.set(`probe:${tries}`, '1').catch((error: Error) => error);
        refused = probe instanceof Error && /OOM/.test(probe.message);
      }
      expect(refused).toBe(true);
      // PostgreSQL is back: a consumer commits everything, and its trims give Redis its memory back.
      const running = await startEventsConsumer({
        pool,
        redis: own,
        prefix: fullPrefix,
        consumerName: 'oom',
        blockMs: 50,
        holdStartsMs: 0,
        log: silent,
      });
      await running.drain();
      expect(await recorded(ids)).toBe(ids.length);
      await expect.poll(() => own.xlen(events), { timeout: 5_000 }).toBeLessThan(ids.length / 10);
      expect(await own.set('probe', '1')).toBe('OK');
      await running.stop();
    } finally {
      own.disconnect();
      await full.stop();
    }
  });
});
