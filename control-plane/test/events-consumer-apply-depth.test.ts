import { newId } from '@crochet/protocol';
import type { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Pool, transaction } from '../src/db.js';
import { applyEvents, startEventsConsumer } from '../src/events-consumer.js';
import { type Call, publish } from './events-support.js';
import { type ConsumerServices, closeConsumerServices, openConsumerServices } from './helpers.js';
import { insertListing, ledgerTotals, paidEnd, paidStart, unbalancedJournals } from './ledger-support.js';

/**
 * The consumer applies two batches of new entries at once (the next is read while PostgreSQL writes the one before).
 * Shown with a row lock held on a request the first batch writes: the next batch commits meanwhile; and when the
 * waiting batch's connection is killed, its entries stay pending and are written once, after the other's.
 */
describe('events consumer: two batches in hand', () => {
  const silent = { info: () => {}, warn: () => {}, error: () => {} };
  const call: Call = { listingId: newId('listing'), sellerId: newId('agent'), buyerId: newId('agent') };
  let services: ConsumerServices | undefined;
  let pool: Pool;
  let redis: Redis;
  let prefix: string;

  beforeAll(async () => {
    services = await openConsumerServices();
    ({ pool, redis, prefix } = services);
    await insertListing(pool, call);
  });
  afterAll(async () => {
    await closeConsumerServices(services);
  });

  const recorded = async (ids: string[]): Promise<number> =>
    (await pool.query(`SELECT count(*)::int AS n FROM gateway_requests WHERE id = ANY ($1)`, [ids])).rows[0].n;

  /** The server process of a transaction waiting for a lock in the test database, once there is one. */
  const waiterOf = async (): Promise<number> => {
    for (;;) {
      const { rows } = await pool.query(
        `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
      );
      if (rows[0]) return rows[0].pid as number;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };

  for (const fault of ['released', 'killed'] as const) {
    it(`a batch waiting on a lock does not hold up the next; its connection ${fault}, every call is booked once`, async () => {
      const consume = () =>
        startEventsConsumer({
          pool,
          redis,
          prefix,
          consumerName: `depth-${fault}`,
          batchSize: 19,
          gatherMs: 0,
          holdStartsMs: 0,
          blockMs: 50,
          log: silent,
        });
      // A paid call whose start is recorded, and a transaction holding its row.
      const blocked = paidStart(call);
      await publish(redis, prefix, blocked);
      const before = await consume();
      await before.drain();
      await before.stop();
      const holder = new pg.Client({ connectionString: services!.db.url });
      await holder.connect();
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM gateway_requests WHERE id = $1 FOR UPDATE', [blocked.id]);

      // Two batches of 19, in the stream before the consumer starts: the first has the blocked call's end and 9 whole
      // calls, the second 9 other whole calls (a batch with a row the first is writing would wait for it too).
      const whole = () => Array.from({ length: 9 }, () => paidStart(call));
      const first = whole();
      const second = whole();
      await publish(redis, prefix, paidEnd(blocked), ...first.flatMap((s) => [s, paidEnd(s)]));
      await publish(redis, prefix, ...second.flatMap((s) => [s, paidEnd(s)]));
      const consumer = await consume();
      try {
        const waiting = await waiterOf();
        // The second batch is written while the first waits.
        const secondIds = second.map((s) => s.id);
        await expect.poll(() => recorded(secondIds), { timeout: 5_000 }).toBe(secondIds.length);
        expect(await recorded(first.map((s) => s.id))).toBe(0);
        // Killed: its transaction is gone, and its entries are read again from the pending list.
        if (fault === 'killed') await pool.query('SELECT pg_terminate_backend($1)', [waiting]);
        await holder.query('COMMIT');
        await consumer.drain();
      } finally {
        await holder.end();
        await consumer.stop();
      }
      const ids = [blocked, ...first, ...second].map((s) => s.id);
      expect(await recorded(ids)).toBe(ids.length);
      const totals = await ledgerTotals(pool, ids);
      expect(totals).toMatchObject({ payments: ids.length, refunds: 0, total: '0' });
      const { rows } = await pool.query(
        `SELECT count(*)::int AS n FROM gateway_requests WHERE id = ANY ($1)
                                            AND status = 'completed' AND completed_at IS NOT NULL`,
        [ids],
      );
      expect(rows[0].n).toBe(ids.length);
    });
  }

  it('two batches writing the same calls (starts in one, ends in the other, in any order) never deadlock', async () => {
    const failures: unknown[] = [];
    for (let attempt = 0; attempt < 10; attempt++) {
      const starts = Array.from({ length: 300 }, () => paidStart(call));
      const ends = [...starts].reverse().map((s) => paidEnd(s));
      const results = await Promise.allSettled([
        transaction(pool, (client) => applyEvents(client, starts)),
        new Promise((resolve) => setTimeout(resolve, 2)).then(() =>
          transaction(pool, (client) => applyEvents(client, ends)),
        ),
      ]);
      for (const r of results) if (r.status === 'rejected') failures.push(r.reason);
      expect(
        await ledgerTotals(
          pool,
          starts.map((s) => s.id),
        ),
      ).toMatchObject({ payments: 300, total: '0' });
    }
    expect(failures).toEqual([]);
  });

  it('an account the other batch created meanwhile: a retryable conflict (40001), booked once when applied again', async () => {
    const fresh: Call = { ...call, buyerId: newId('agent') };
    const [a, b] = [paidStart(fresh), paidStart(fresh)];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let applied!: () => void;
    const firstApplied = new Promise<void>((resolve) => {
      applied = resolve;
    });
    const first = transaction(pool, async (client) => {
      await applyEvents(client, [a, paidEnd(a)]);
      applied();
      await gate; // not committed yet while the second runs
    });
    await Promise.race([firstApplied, first]);
    const second = transaction(pool, (client) => applyEvents(client, [b, paidEnd(b)]));
    second.catch(() => {});
    await waiterOf();
    release();
    await first;
    await expect(second).rejects.toMatchObject({ code: '40001' });
    await transaction(pool, (client) => applyEvents(client, [b, paidEnd(b)]));
    expect(await ledgerTotals(pool, [a.id, b.id])).toMatchObject({ payments: 2, total: '0' });
  });

  it('books every call once across both faults, and every journal balances', async () => {
    const totals = await ledgerTotals(pool);
    expect(await unbalancedJournals(pool)).toEqual([]);
    expect(totals.total).toBe('0');
    const { rows } = await pool.query(
      `SELECT gateway_request_id, count(*)::int AS n FROM ledger_journals GROUP BY 1 HAVING count(*) > 1`,
    );
    expect(rows).toEqual([]);
  });
});
