import { newId } from '@crochet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, migrate, type Pool, transaction } from '../src/db.js';
import { applyEvents } from '../src/events-consumer.js';
import type { Call } from './events-support.js';
import { createTestDatabase } from './helpers.js';
import { ledgerTotals, paidEnd, paidStart, unbalancedJournals } from './ledger-support.js';

/** §3.5 "nothing is posted twice": many transactions posting the same request at once leave one journal. */
describe('ledger posting under concurrency', () => {
  const call: Call = { listingId: newId('listing'), sellerId: newId('agent'), buyerId: newId('agent') };
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let pool: Pool;

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, 50);
    await migrate(pool);
  });
  afterAll(async () => {
    await pool?.end();
    await db?.drop();
  });

  it('50 concurrent postings of one gateway request make one journal', async () => {
    const start = paidStart(call, 10_000n);
    const end = paidEnd(start);
    // Half deliver start then end in one batch, half the reverse order.
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        transaction(pool, (client) => applyEvents(client, i % 2 === 0 ? [start, end] : [end, start])),
      ),
    );
    expect(await ledgerTotals(pool, [start.id])).toEqual({ payments: 1, refunds: 0, entries: 3, total: '0' });
    expect(await unbalancedJournals(pool)).toEqual([]);
    const { rows: alarms } = await pool.query('SELECT * FROM ledger_alarms');
    expect(alarms).toEqual([]);
  });

  it('50 concurrent deliveries of a refunded request make one payment and one reversal', async () => {
    const start = paidStart(call, 777n);
    const end = paidEnd(start, 'refund_due');
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        transaction(pool, (client) => applyEvents(client, i % 3 === 0 ? [end] : i % 3 === 1 ? [start] : [start, end])),
      ),
    );
    expect(await ledgerTotals(pool, [start.id])).toEqual({ payments: 1, refunds: 1, entries: 6, total: '0' });
    const { rows } = await pool.query(
      `SELECT r.reverses_journal_id::text = p.id::text AS reverses FROM ledger_journals r
         JOIN ledger_journals p ON p.idempotency_key = $1 WHERE r.idempotency_key = $2`,
      [`${start.id}:payment`, `${start.id}:refund`],
    );
    expect(rows).toEqual([{ reverses: true }]);
  });
});
