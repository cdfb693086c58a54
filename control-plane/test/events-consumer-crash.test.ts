import { EVENTS_GROUP, type GatewayEndEvent, type GatewayStartEvent, newId, redisKeys } from '@crochet/protocol';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Pool, transaction } from '../src/db.js';
import { applyEvents, type EventsConsumer, startEventsConsumer } from '../src/events-consumer.js';
import { type Call, endEvent, expectedRow, publish, ROW_COLUMNS, startEvent } from './events-support.js';
import { type ConsumerServices, closeConsumerServices, openConsumerServices } from './helpers.js';

/**
 * §3.5: "Nothing is lost when either side crashes; nothing is posted twice." Entries a consumer read but never
 * acknowledged are recorded by the next run under its name (its own pending list) or taken over by another consumer
 * once idle; what a crashed consumer already committed, applied again, changes nothing.
 */
describe('events consumer after a crash', () => {
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
    // The group as the control plane creates it, so that the "crashed" consumers below can read before any starts.
    await redis.xgroup('CREATE', stream, EVENTS_GROUP, '0', 'MKSTREAM');
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((consumer) => consumer.stop()));
  });
  afterAll(async () => {
    await closeConsumerServices(services);
  });

  const consumer = async (
    name: string,
    options: { claimIdleMs?: number; batchSize?: number } = {},
  ): Promise<EventsConsumer> => {
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
  /** What a consumer that crashed after reading (and before acknowledging) leaves behind. */
  const readWithoutAck = async (name: string, count: number): Promise<string[]> => {
    const reply = (await redis.xreadgroup('GROUP', EVENTS_GROUP, name, 'COUNT', count, 'STREAMS', stream, '>')) as
      | [string, [string, string[]][]][]
      | null;
    return reply?.[0]?.[1].map(([id]) => id) ?? [];
  };
  const requests = (n: number) => {
    const starts = Array.from({ length: n }, (_, i) => startEvent(call, { path: `/crash/${i}` }));
    return { starts, ends: starts.map((start) => endEvent(start)) };
  };
  const rows = async (starts: GatewayStartEvent[]) =>
    (
      await pool.query(`SELECT ${ROW_COLUMNS} FROM gateway_requests WHERE id = ANY ($1) ORDER BY id`, [
        starts.map((s) => s.id),
      ])
    ).rows;
  const expected = (starts: GatewayStartEvent[], ends: GatewayEndEvent[]) =>
    starts.map((start, i) => expectedRow(start, ends[i]!)).sort((a, b) => (a.id < b.id ? -1 : 1));
  const pendingOf = async (name: string): Promise<number> => {
    const consumers = (await redis.xinfo('CONSUMERS', stream, EVENTS_GROUP)) as unknown[][];
    const entry = consumers.find((c) => c[1] === name);
    return entry ? Number(entry[3]) : 0;
  };

  it('records what a consumer read before it crashed when it restarts under the same name', async () => {
    const { starts, ends } = requests(10);
    await publish(redis, prefix, ...starts, ...ends);
    expect(await readWithoutAck('cp-1', 100)).toHaveLength(20);
    expect(await pendingOf('cp-1')).toBe(20);

    // Claiming is out of the picture (an hour): only reading its own pending list can find these entries.
    const restarted = await consumer('cp-1', { claimIdleMs: 3_600_000 });
    await restarted.drain();
    expect(await rows(starts)).toEqual(expected(starts, ends));
    expect(restarted.stats()).toMatchObject({ processed: 20, deadLettered: 0 });
    expect(await pendingOf('cp-1')).toBe(0);
  });

  it("takes over a dead consumer's entries once they are idle, and records each once", async () => {
    const { starts, ends } = requests(10);
    await publish(redis, prefix, ...ends.slice(0, 5), ...starts, ...ends.slice(5));
    expect(await readWithoutAck('cp-dead', 100)).toHaveLength(20);

    const survivor = await consumer('cp-2', { claimIdleMs: 200 });
    await survivor.drain();
    expect(await rows(starts)).toEqual(expected(starts, ends));
    expect(await pendingOf('cp-dead')).toBe(0);
    expect(survivor.stats().processed).toBe(20);
  });

  it('changes nothing when entries a crashed consumer already committed are applied again', async () => {
    const { starts, ends } = requests(10);
    await publish(redis, prefix, ...starts, ...ends);
    const read = await readWithoutAck('cp-committed', 100);
    expect(read).toHaveLength(20);
    // It committed its transaction, then died before XACK.
    await transaction(pool, (client) => applyEvents(client, [...starts, ...ends]));
    const committed = await rows(starts);
    expect(committed).toEqual(expected(starts, ends));

    const survivor = await consumer('cp-3', { claimIdleMs: 200 });
    await survivor.drain();
    expect(survivor.stats().processed).toBe(20);
    expect(await rows(starts)).toEqual(committed);
    const { rows: counts } = await pool.query('SELECT count(*)::int AS n FROM gateway_requests WHERE id = ANY ($1)', [
      starts.map((s) => s.id),
    ]);
    expect(counts[0].n).toBe(10);
  });

  it('loses nothing and records nothing twice when stopped in the middle of a stream', async () => {
    const { starts, ends } = requests(300);
    await publish(redis, prefix, ...starts, ...ends);
    const first = await consumer('cp-4', { claimIdleMs: 3_600_000, batchSize: 25 });
    while (first.stats().processed === 0) await new Promise((resolve) => setImmediate(resolve));
    await first.stop(); // lets the batch in hand commit and acknowledge

    const next = await consumer('cp-4', { claimIdleMs: 3_600_000 });
    await next.drain();
    expect(await rows(starts)).toEqual(expected(starts, ends));
    expect(first.stats().processed).toBeGreaterThan(0);
    expect(first.stats().processed + next.stats().processed).toBe(600);
  });
});
