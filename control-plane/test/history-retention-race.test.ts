import { type GatewayEvent, newId, ulid } from '@crochet/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createPool, migrate, type Pool, type PoolClient, transaction } from '../src/db.js';
import { applyEvents, OPEN_BATCH_SQL, openedDropped } from '../src/events-consumer.js';
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

  beforeEach(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, 4);
    await migrate(pool);
    await insertListing(pool, call);
  });
  afterEach(async () => {
    await pool?.end();
    await db?.drop();
  });

  /** A late end of a call `months` ago, written by `write` while the history job runs at the worst moment. */
  const race = async (
    months: number,
    write: (late: GatewayEvent, job: () => Promise<void>) => Promise<void>,
  ): Promise<void> => {
    const free = startEvent(call, { id: `gr_${ulid(inMonth(months))}`, at: inMonth(months), price_atomic: '0' });
    await transaction(pool, (client) => applyEvents(client, [free, endEvent(free)]));
    for (const at of [inMonth(months), inMonth(-5), inMonth(-2), undefined]) {
      await maintainHistory({ pool, retentionDays: 0, log: silent, nowMs: at });
    }
    let report: HistoryReport | undefined;
    await write(endEvent(free, { at: free.at + 500 }), async () => {
      report ??= await maintainHistory({ pool, retentionDays: 100, log: silent });
    });
    // The drop waited for the batch and gave up: the month and the late end are both there, in that month.
    expect(report!.dropped).toEqual([]);
    expect(report!.deferred).toContain(partitionName(monthStartMs(nowMs, months)));
    const where = async () =>
      (await pool.query('SELECT tableoid::regclass::text AS p FROM gateway_requests WHERE id = $1', [free.id])).rows;
    expect(await where()).toEqual([{ p: partitionName(monthStartMs(nowMs, months)) }]);
    // The next run drops it; a late event after that is ignored, never a partial row in the default partition.
    expect((await maintainHistory({ pool, retentionDays: 100, log: silent })).dropped).toContain(
      partitionName(monthStartMs(nowMs, months)),
    );
    await transaction(pool, (client) => applyEvents(client, [endEvent(free, { at: free.at + 900 })]));
    expect(await where()).toEqual([]);
  };

  it('never lets a month go between the read of the dropped months and the batch that writes into it', async () => {
    await race(-8, (late, job) =>
      transaction(pool, async (client: PoolClient) => {
        // The job runs, on its own connection, right after the consumer read the dropped months.
        const interleaved = new Proxy(client, {
          get(target, prop, receiver) {
            if (prop !== 'query') return Reflect.get(target, prop, receiver);
            return async (...args: unknown[]) => {
              const result = await (target.query as (...a: unknown[]) => Promise<unknown>)(...args);
              if (typeof args[0] === 'string' && args[0].includes('FROM gateway_requests_dropped')) await job();
              return result;
            };
          },
        });
        await applyEvents(interleaved, [late]);
      }),
    );
  });

  it('the same when the batch read them in the round trip that opened its transaction (the consumer’s way)', async () => {
    await race(-8, (late, job) =>
      transaction(
        pool,
        async (client, opened) => {
          await job(); // right after the opening round trip locked the history and read the dropped months
          await applyEvents(client, [late], undefined, openedDropped(opened));
        },
        OPEN_BATCH_SQL,
      ),
    );
  });
});
