import { newId } from '@crochet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, migrate, type Pool, transaction } from '../src/db.js';
import { applyEvents } from '../src/events-consumer.js';
import { feeAtomic } from '../src/ledger/posting.js';
import type { Call } from './events-support.js';
import { createTestDatabase } from './helpers.js';
import { insertListing, ledgerTotals, paidEnd, paidStart } from './ledger-support.js';

/** The ledger's own guarantees, enforced by PostgreSQL whatever the code does: append-only, balanced, exact fees. */
describe('ledger schema and amounts', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let pool: Pool;
  const call = (): Call => ({ listingId: newId('listing'), sellerId: newId('agent'), buyerId: newId('agent') });
  const entriesOf = async (gatewayRequestId: string) =>
    (
      await pool.query(
        `SELECT e.entry_type, e.amount_atomic::text AS amount, a.owner_id, a.role
           FROM ledger_entries e JOIN ledger_journals j ON j.id = e.journal_id
           JOIN ledger_accounts a ON a.id = e.account_id
          WHERE j.gateway_request_id = $1 ORDER BY e.id`,
        [gatewayRequestId],
      )
    ).rows;

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url);
    await migrate(pool);
  });
  afterAll(async () => {
    await pool?.end();
    await db?.drop();
  });

  it('rejects UPDATE, DELETE and TRUNCATE of entries and journals', async () => {
    const c = call();
    const start = paidStart(c);
    await transaction(pool, (client) => applyEvents(client, [start, paidEnd(start)]));
    await expect(pool.query('UPDATE ledger_entries SET amount_atomic = amount_atomic * 2')).rejects.toThrow(
      /append-only: UPDATE refused/,
    );
    await expect(pool.query('DELETE FROM ledger_entries')).rejects.toThrow(/append-only: DELETE refused/);
    await expect(pool.query('UPDATE ledger_journals SET fee_atomic = 0')).rejects.toThrow(/append-only/);
    await expect(pool.query('DELETE FROM ledger_journals')).rejects.toThrow(/append-only/);
    await expect(pool.query('TRUNCATE ledger_entries CASCADE')).rejects.toThrow(/append-only/);
    expect((await ledgerTotals(pool, [start.id])).entries).toBe(3);
  });

  it('rejects at commit a journal whose entries do not sum to zero, or that has none', async () => {
    const insertJournal = `INSERT INTO ledger_journals (kind, gateway_request_id, idempotency_key, listing_id, buyer_id,
        seller_id, currency, amount_atomic, fee_atomic, fee_bps)
      VALUES ('payment', $1, $1 || ':payment', 'lst_x', 'agt_b', 'agt_s', 'USDC', 100, 5, 500) RETURNING id`;
    const account = async (client: { query: Pool['query'] }) =>
      (
        await client.query(
          `INSERT INTO ledger_accounts (owner_id, role, currency) VALUES ('agt_b', 'buyer', 'USDC')
           ON CONFLICT (owner_id, role, currency) DO UPDATE SET currency = EXCLUDED.currency RETURNING id`,
        )
      ).rows[0].id;
    await expect(
      transaction(pool, async (client) => {
        const { rows } = await client.query(insertJournal, [newId('gatewayRequest')]);
        await client.query(
          `INSERT INTO ledger_entries (journal_id, account_id, entry_type, amount_atomic) VALUES ($1, $2, 'buyer_debit', -100)`,
          [rows[0].id, await account(client)],
        );
      }),
    ).rejects.toMatchObject({ code: '23514', message: expect.stringMatching(/not balanced/) });
    await expect(
      transaction(pool, (client) => client.query(insertJournal, [newId('gatewayRequest')])),
    ).rejects.toMatchObject({ code: '23514' });
    // An entry added later to a balanced journal unbalances it: refused too.
    const c = call();
    const start = paidStart(c);
    await transaction(pool, (client) => applyEvents(client, [start, paidEnd(start)]));
    await expect(
      transaction(pool, async (client) => {
        await client.query(
          `INSERT INTO ledger_entries (journal_id, account_id, entry_type, amount_atomic)
           SELECT e.journal_id, e.account_id, e.entry_type, e.amount_atomic FROM ledger_entries e
             JOIN ledger_journals j ON j.id = e.journal_id WHERE j.gateway_request_id = $1 LIMIT 1`,
          [start.id],
        );
      }),
    ).rejects.toMatchObject({ code: '23514' });
  });

  it('checks a transaction’s journals together at commit: one unbalanced among many balanced is refused', async () => {
    // Many calls in one transaction (one statement per kind, as the consumer writes them), then one more journal whose
    // entries do not sum to zero: the whole transaction is refused and nothing of it stays.
    const calls = Array.from({ length: 40 }, call);
    const events = calls.flatMap((c) => {
      const start = paidStart(c);
      return [start, paidEnd(start)];
    });
    const bad = newId('gatewayRequest');
    await expect(
      transaction(pool, async (client) => {
        await applyEvents(client, events);
        const { rows } = await client.query(
          `INSERT INTO ledger_journals (kind, gateway_request_id, idempotency_key, listing_id, buyer_id, seller_id,
                                        currency, amount_atomic, fee_atomic, fee_bps)
           VALUES ('payment', $1, $1 || ':payment', 'lst_x', 'agt_b', 'agt_s', 'USDC', 100, 5, 500) RETURNING id`,
          [bad],
        );
        // Two entries from a balanced journal of this transaction, with the amounts of the unbalanced one.
        await client.query(
          `INSERT INTO ledger_entries (journal_id, account_id, entry_type, amount_atomic)
           SELECT $1, e.account_id, e.entry_type, CASE WHEN e.amount_atomic < 0 THEN -100 ELSE 99 END
             FROM ledger_entries e JOIN ledger_journals j ON j.id = e.journal_id
            WHERE j.gateway_request_id = $2 AND e.entry_type IN ('buyer_debit', 'seller_credit')`,
          [rows[0].id, events[0]!.id],
        );
      }),
    ).rejects.toMatchObject({ code: '23514', message: expect.stringMatching(/not balanced/) });
    expect(await ledgerTotals(pool, [...events.map((e) => e.id), bad])).toMatchObject({ payments: 0 });
    // The same calls alone commit.
    await transaction(pool, (client) => applyEvents(client, events));
    expect(
      await ledgerTotals(
        pool,
        events.map((e) => e.id),
      ),
    ).toMatchObject({ payments: 40 });
  });

  it('refuses an entry whose journal or account does not exist, and the deletion of an account', async () => {
    const c = call();
    const start = paidStart(c);
    await transaction(pool, (client) => applyEvents(client, [start, paidEnd(start)]));
    const { rows } = await pool.query(
      `SELECT e.journal_id, e.account_id FROM ledger_entries e JOIN ledger_journals j ON j.id = e.journal_id
        WHERE j.gateway_request_id = $1 LIMIT 1`,
      [start.id],
    );
    const { journal_id: journal, account_id: account } = rows[0];
    const insert = `INSERT INTO ledger_entries (journal_id, account_id, entry_type, amount_atomic)
                    VALUES ($1, $2, 'buyer_debit', -1), ($1, $2, 'seller_credit', 1)`;
    await expect(pool.query(insert, [journal, 999_999_999])).rejects.toMatchObject({
      code: '23503',
      message: expect.stringMatching(/account 999999999 does not exist/),
    });
    await expect(pool.query(insert, [999_999_999, account])).rejects.toMatchObject({
      code: '23503',
      message: expect.stringMatching(/journal 999999999 does not exist/),
    });
    // A refund reverses a journal that exists, and a journal is reversed at most once (whatever the key).
    const refund = `INSERT INTO ledger_journals (kind, gateway_request_id, idempotency_key, listing_id, buyer_id,
        seller_id, currency, amount_atomic, fee_atomic, fee_bps, reverses_journal_id)
      VALUES ('refund', $1, $1 || ':refund', 'lst_x', 'agt_b', 'agt_s', 'USDC', 100, 5, 500, $2)`;
    await expect(pool.query(refund, [newId('gatewayRequest'), 999_999_999])).rejects.toMatchObject({
      code: '23503',
      message: expect.stringMatching(/journal 999999999 reversed does not exist/),
    });
    await expect(
      transaction(pool, async (client) => {
        await client.query(refund, [newId('gatewayRequest'), journal]);
        await client.query(refund, [newId('gatewayRequest'), journal]);
      }),
    ).rejects.toMatchObject({ code: '23505', constraint: 'ledger_journals_reverses_idx' });
    await expect(pool.query('DELETE FROM ledger_accounts WHERE id = $1', [account])).rejects.toThrow(/append-only/);
    await expect(pool.query('TRUNCATE ledger_accounts CASCADE')).rejects.toThrow(/append-only/);
    await expect(pool.query('UPDATE ledger_accounts SET id = DEFAULT WHERE id = $1', [account])).rejects.toThrow(
      /append-only/,
    );
  });

  it('takes floor(price × fee_bps / 10000): the listing override, else the configured fee', () => {
    expect(feeAtomic(10_000n, 500)).toBe(500n);
    expect(feeAtomic(999n, 500)).toBe(49n); // 49.95
    expect(feeAtomic(1n, 9_999)).toBe(0n);
    expect(feeAtomic(3n, 3_333)).toBe(0n); // 0.9999
    expect(feeAtomic(1_000_000_000_000n, 10_000)).toBe(1_000_000_000_000n);
  });

  it('posts buyer debit = price, seller credit = price − fee, fee = floor(…) with a per-listing override', async () => {
    const overridden = call();
    await insertListing(pool, overridden, 1_234, 999n);
    const a = paidStart(overridden, 999n);
    const configured = call();
    await insertListing(pool, configured, null, 999n);
    const b = paidStart(configured, 999n);
    const free = call();
    await insertListing(pool, free, 0, 999n);
    const c = paidStart(free, 999n);
    await transaction(pool, (client) =>
      applyEvents(client, [a, paidEnd(a), b, paidEnd(b), c, paidEnd(c)], { feeBps: 250 }),
    );
    // 999 × 1234 / 10000 = 123.27 → 123; 999 × 250 / 10000 = 24.975 → 24; a zero fee posts no fee entry.
    expect(await entriesOf(a.id)).toEqual([
      { entry_type: 'buyer_debit', amount: '-999', owner_id: overridden.buyerId, role: 'buyer' },
      { entry_type: 'seller_credit', amount: '876', owner_id: overridden.sellerId, role: 'seller_payable' },
      { entry_type: 'marketplace_fee', amount: '123', owner_id: 'marketplace', role: 'marketplace_fee' },
    ]);
    expect(await entriesOf(b.id)).toEqual([
      { entry_type: 'buyer_debit', amount: '-999', owner_id: configured.buyerId, role: 'buyer' },
      { entry_type: 'seller_credit', amount: '975', owner_id: configured.sellerId, role: 'seller_payable' },
      { entry_type: 'marketplace_fee', amount: '24', owner_id: 'marketplace', role: 'marketplace_fee' },
    ]);
    expect(await entriesOf(c.id)).toEqual([
      { entry_type: 'buyer_debit', amount: '-999', owner_id: free.buyerId, role: 'buyer' },
      { entry_type: 'seller_credit', amount: '999', owner_id: free.sellerId, role: 'seller_payable' },
    ]);
  });

  it("books a call the seller served whose settlement was refused afterwards as the marketplace's loss", async () => {
    const c = call();
    await insertListing(pool, c, null, 1_000n);
    const served = paidStart(c, 1_000n);
    await transaction(pool, (client) => applyEvents(client, [served, paidEnd(served, 'unpaid')], { feeBps: 500 }));
    // The buyer never paid: the seller gets its share (1000 − 5 %) from the marketplace's fees.
    expect(await entriesOf(served.id)).toEqual([
      { entry_type: 'seller_credit', amount: '950', owner_id: c.sellerId, role: 'seller_payable' },
      { entry_type: 'marketplace_loss', amount: '-950', owner_id: 'marketplace', role: 'marketplace_fee' },
    ]);
    const { rows } = await pool.query('SELECT kind FROM ledger_journals WHERE gateway_request_id = $1', [served.id]);
    expect(rows).toEqual([{ kind: 'loss' }]);
  });

  it('posts nothing for a free call, a released or pending payment, a refused call, or a start without its end', async () => {
    const c = call();
    const free = paidStart(c, 0n, { payment: undefined });
    const released = paidStart(c);
    const pending = paidStart(c);
    const denied = paidStart(c);
    const alone = paidStart(c);
    await transaction(pool, (client) =>
      applyEvents(client, [
        free,
        paidEnd(free),
        released,
        paidEnd(released, 'released'),
        pending,
        paidEnd(pending, 'pending'),
        denied,
        paidEnd(denied, 'settled', { status: 'refused', http_status: 413, error_code: 'BODY_TOO_LARGE' }),
        alone,
      ]),
    );
    const ids = [free, released, pending, denied, alone].map((s) => s.id);
    expect(await ledgerTotals(pool, ids)).toEqual({ payments: 0, refunds: 0, entries: 0, total: '0' });
  });

  it('raises an alarm, not a posting, for the same key with a different amount or a reused settlement', async () => {
    const warnings: object[] = [];
    const log = { warn: (details: object) => void warnings.push(details) };
    const c = call();
    const start = paidStart(c, 10_000n);
    await transaction(pool, (client) => applyEvents(client, [start, paidEnd(start)], { feeBps: 500, log }));
    // The same request again, claiming another price.
    const changed = { ...start, price_atomic: '20000' };
    await transaction(pool, (client) => applyEvents(client, [changed], { feeBps: 500, log }));
    await transaction(pool, (client) => applyEvents(client, [changed], { feeBps: 500, log })); // redelivered
    // Another request paid with the first one's transaction.
    const reuse = paidStart(c, 10_000n, { payment: start.payment! });
    await transaction(pool, (client) => applyEvents(client, [reuse, paidEnd(reuse)], { feeBps: 500, log }));

    expect(await ledgerTotals(pool, [start.id, reuse.id])).toEqual({
      payments: 1,
      refunds: 0,
      entries: 3,
      total: '0',
    });
    const { rows } = await pool.query(
      `SELECT reason, idempotency_key, journal_id IS NOT NULL AS has_journal, posted ->> 'amount_atomic' AS posted,
              received ->> 'amount_atomic' AS received
         FROM ledger_alarms WHERE idempotency_key = ANY ($1) ORDER BY id`,
      [[`${start.id}:payment`, `${reuse.id}:payment`]],
    );
    expect(rows).toEqual([
      {
        reason: 'amount_mismatch',
        idempotency_key: `${start.id}:payment`,
        has_journal: true,
        posted: '10000',
        received: '20000',
      },
      {
        reason: 'settlement_reused',
        idempotency_key: `${reuse.id}:payment`,
        has_journal: false,
        posted: null,
        received: '10000',
      },
    ]);
    expect(warnings).toHaveLength(3); // logged at every delivery; stored once
  });
});
