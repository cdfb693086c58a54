import { newId, ulid } from '@crochet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, migrate, type Pool, transaction, withAdvisoryLock } from '../src/db.js';
import { applyEvents } from '../src/events-consumer.js';
import {
  HISTORY_LOCK,
  type HistoryReport,
  maintainHistory,
  monthStartMs,
  partitionName,
  startHistoryJob,
} from '../src/history-partitions.js';
import { type Call, endEvent, startEvent } from './events-support.js';
import { createTestDatabase } from './helpers.js';
import { insertListing } from './ledger-support.js';

/**
 * The history job keeps months ahead, so inserts never wait for it at a month's boundary; runs are idempotent, and
 * two control planes running it at once do it once (the advisory lock).
 */
describe('history partitions ahead', () => {
  const call: Call = { listingId: newId('listing'), sellerId: newId('agent'), buyerId: newId('agent') };
  const silent = { info: () => {}, warn: () => {}, error: () => {} };
  const nowMs = Date.now();
  const inMonth = (months: number) => monthStartMs(nowMs, months) + 86_400_000;
  const month = (months: number) => partitionName(monthStartMs(nowMs, months));
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let pools: Pool[];
  const partitionOf = async (id: string) =>
    (await pools[0]!.query('SELECT tableoid::regclass::text AS p FROM gateway_requests WHERE id = $1', [id])).rows[0]
      ?.p;
  /** One run as a control plane does it: under the lock, null when another holds it. */
  const run = (pool: Pool, at: number) =>
    withAdvisoryLock(pool, HISTORY_LOCK, () => maintainHistory({ pool, retentionDays: 0, log: silent, nowMs: at }));

  beforeAll(async () => {
    db = await createTestDatabase();
    pools = [createPool(db.url, 3), createPool(db.url, 3)];
    await migrate(pools[0]!);
    await insertListing(pools[0]!, call);
  });
  afterAll(async () => {
    await Promise.all(pools.map((pool) => pool.end()));
    await db?.drop();
  });

  it('has this month and the next two from the migration on, so the job at start has nothing to add', async () => {
    const job = startHistoryJob({ pool: pools[0]!, retentionDays: 0, intervalMs: 0, log: silent });
    expect(await job.runOnce()).toEqual({ created: [], dropped: [], held: [], deferred: [] });
    await job.stop();
    const late = startEvent(call, { id: `gr_${ulid(inMonth(2))}`, at: inMonth(2) });
    await transaction(pools[0]!, (client) => applyEvents(client, [late, endEvent(late)]));
    expect(await partitionOf(late.id)).toBe(month(2));
  });

  it('adds the months ahead as time goes on, once, whichever control plane runs first', async () => {
    // A call recorded before its month has a partition (the job had not run for months) waits in the default one.
    const early = startEvent(call, { id: `gr_${ulid(inMonth(4))}`, at: inMonth(4) });
    await transaction(pools[0]!, (client) => applyEvents(client, [early, endEvent(early)]));
    expect(await partitionOf(early.id)).toBe('gateway_requests_default');

    const reports = await Promise.all(pools.map((pool) => run(pool, inMonth(3))));
    const ran = reports.filter((r): r is HistoryReport => r !== null);
    // Both at once: one takes the lock, the other skips; one after the other: the second finds nothing to do.
    expect(ran.length).toBeGreaterThanOrEqual(1);
    expect(ran.flatMap((r) => r.created)).toEqual([month(3), month(4), month(5)]);
    expect(await partitionOf(early.id)).toBe(month(4));
    for (const pool of pools) expect((await run(pool, inMonth(3)))?.created).toEqual([]);

    // Many runs from both control planes at once never add a month twice nor fail.
    const many = await Promise.all(Array.from({ length: 6 }, (_, i) => run(pools[i % 2]!, inMonth(6))));
    expect(many.flatMap((r) => r?.created ?? []).sort()).toEqual([month(6), month(7), month(8)]);
    expect(many.flatMap((r) => r?.deferred ?? [])).toEqual([]);
  });

  it('leaves a month for the next run while a reader holds what it must lock, rather than queue inserts behind it', async () => {
    const reader = await pools[1]!.connect();
    try {
      await reader.query('BEGIN');
      await reader.query('SELECT count(*) FROM gateway_requests'); // a long read: every partition, the default one too
      const started = Date.now();
      const report = await run(pools[0]!, inMonth(9));
      expect(report).toEqual({ created: [], dropped: [], held: [], deferred: [month(9), month(10), month(11)] });
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await reader.query('COMMIT');
      reader.release();
    }
    expect((await run(pools[0]!, inMonth(9)))?.created).toEqual([month(9), month(10), month(11)]);
  });
});
