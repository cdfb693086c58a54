import { newId } from '@crochet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, migrate, type Pool, type PoolClient, transaction } from '../src/db.js';
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
  it('two consumers — one with a request’s start, one with its end and a retry consuming its given-back proof — do not deadlock', async () => {
    // B gives its proof back (released) and the buyer's retry A consumes it again: the stream holds B.start, B.end,
    // A.start, A.end, read by two consumers. Each transaction locks rows before proofs, whichever requests they are.
    const b = paidStart(call, 10_000n);
    const bEnd = paidEnd(b, 'released', { at: b.at + 10 });
    const a = paidStart(call, 10_000n, { at: b.at + 20 });
    a.payment = { ...b.payment!, tx: a.payment!.tx };
    const aEnd = paidEnd(a, 'settled', { at: b.at + 30 });

    // The first consumer has written B's row and stops just before its proofs until the second one waits on a lock.
    let reachedProofs!: () => void;
    const atProofs = new Promise<void>((resolve) => {
      reachedProofs = resolve;
    });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const first = transaction(pool, (client) => {
      const query = client.query.bind(client) as (sql: unknown, params?: unknown) => Promise<unknown>;
      const held = Object.create(client) as PoolClient;
      held.query = (async (sql: unknown, params?: unknown) => {
        if (typeof sql === 'string' && sql.includes('INSERT INTO payment_proofs')) {
          reachedProofs();
          await gate;
        }
        return query(sql, params);
      }) as PoolClient['query'];
      return applyEvents(held, [b]);
    });
    await atProofs;
    const second = transaction(pool, (client) => applyEvents(client, [bEnd, a, aEnd]));
    for (let i = 0; i < 100; i++) {
      const { rows } = await pool.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
      );
      if (rows[0].n > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    release();
    const outcomes = await Promise.allSettled([first, second]);
    expect(
      outcomes.filter((o) => o.status === 'rejected').map((o) => String((o as PromiseRejectedResult).reason)),
    ).toEqual([]);
    expect(await ledgerTotals(pool, [a.id])).toEqual({ payments: 1, refunds: 0, entries: 3, total: '0' });
    const { rows: proofs } = await pool.query(
      'SELECT gateway_request_id FROM payment_proofs WHERE proof_id = ANY ($1)',
      [a.payment!.proof_ids],
    );
    expect(proofs.map((p) => p.gateway_request_id)).toEqual([a.id]);
  });
});
