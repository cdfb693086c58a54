import { newId, ulid } from '@crochet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, migrate, type Pool, type PoolClient, transaction } from '../src/db.js';
import { applyEvents } from '../src/events-consumer.js';
import { type HistoryReport, maintainHistory, monthStartMs, partitionName } from '../src/history-partitions.js';
import { type Call, endEvent, startEvent } from './events-support.js';
import { createTestDatabase } from './helpers.js';
import { insertListing } from './ledger-support.js';

/**
 * The history job drops a month while the events consumer is between reading the dropped months and writing a late
 * event of a call in it: the event must neither come back as a partial row outside every month nor be lost — the
 * consumer's lock on the parent table makes the drop wait (and give up after its lock timeout) until the batch is in.
 */
describe('history retention against the events consumer', () => {
  const call: Call = { listingId: newId('listing'), sellerId: newId('agent'), buyerId: newId('agent') };
  const silent = { info: () => {}, warn: () => {}, error: () => {} };
  const nowMs = Date.now();
  const inMonth = (months: number) => monthStartMs(nowMs, months) + 3 * 86_400_000;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let pool: Pool;

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, 4);
    await migrate(pool);
    await insertListing(pool, call);
  });
  afterAll(async () => {
    await pool?.end();
    await db?.drop();
  });

  it('never lets a month go between the read of the dropped months and the batch that writes into it', async () => {
    const free = startEvent(call, { id: `gr_${ulid(inMonth(-8))}`, at: inMonth(-8), price_atomic: '0' });
    await transaction(pool, (client) => applyEvents(client, [free, endEvent(free)]));
    for (const at of [inMonth(-8), inMonth(-5), inMonth(-2), undefined]) {
      await maintainHistory({ pool, retentionDays: 0, log: silent, nowMs: at });
    }
    let report: HistoryReport | undefined;
    await transaction(pool, async (client: PoolClient) => {
      // The job runs, on its own connection, right after the consumer read the dropped months.
      const interleaved = new Proxy(client, {
        get(target, prop, receiver) {
          if (prop !== 'query') return Reflect.get(target, prop, receiver);
          return async (...args: unknown[]) => {
            const result = await (target.query as (...a: unknown[]) => Promise<unknown>)(...args);
            if (typeof args[0] === 'string' && args[0].includes('FROM gateway_requests_dropped') && !report) {
              report = await maintainHistory({ pool, retentionDays: 100, log: silent });
            }
            return result;
          };
        },
      });
      await applyEvents(interleaved, [endEvent(free, { at: free.at + 500 })]);
    });
    // The drop waited for the batch and gave up: the month and the late end are both there, in that month.
    expect(report!.dropped).toEqual([]);
    expect(report!.deferred).toContain(partitionName(monthStartMs(nowMs, -8)));
    const where = async () =>
      (await pool.query('SELECT tableoid::regclass::text AS p FROM gateway_requests WHERE id = $1', [free.id])).rows;
    expect(await where()).toEqual([{ p: partitionName(monthStartMs(nowMs, -8)) }]);
    // The next run drops it; a late event after that is ignored, never a partial row in the default partition.
    expect((await maintainHistory({ pool, retentionDays: 100, log: silent })).dropped).toContain(
      partitionName(monthStartMs(nowMs, -8)),
    );
    await transaction(pool, (client) => applyEvents(client, [endEvent(free, { at: free.at + 900 })]));
    expect(await where()).toEqual([]);
  });
});
