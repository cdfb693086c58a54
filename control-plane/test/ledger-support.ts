import { randomBytes } from 'node:crypto';
import type { GatewayEndEvent, GatewayStartEvent, PaymentOutcome } from '@crochet/protocol';
import type { Pool } from '../src/db.js';
import { type Call, endEvent, startEvent } from './events-support.js';

/**
 * Shared by the ledger test files: paid gateway calls in the events' shape, and the ledger's invariants as queries.
 */

/** A paid gateway.start: price in atomic units, a settlement transaction of its own unless given. */
export const paidStart = (call: Call, priceAtomic = 10_000n, fields: Partial<GatewayStartEvent> = {}) => {
  const tx = `0x${randomBytes(32).toString('hex')}`;
  return startEvent(call, {
    price_atomic: priceAtomic.toString(),
    payment: {
      rail: 'evm-transfer',
      network: 'eip155:8453',
      payer: '0x0000000000000000000000000000000000000001',
      amount_atomic: priceAtomic.toString(),
      asset: '0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913',
      tx,
      proof_ids: [`evm:${tx}`],
    },
    ...fields,
  });
};

/** The end of a paid call with the given payment outcome (settled by default, with the start's transaction). */
export const paidEnd = (
  start: GatewayStartEvent,
  outcome: PaymentOutcome['status'] = 'settled',
  fields: Partial<GatewayEndEvent> = {},
): GatewayEndEvent =>
  endEvent(start, {
    ...(outcome === 'refund_due' ? { status: 'upstream_error', http_status: 502, error_code: 'UPSTREAM_ERROR' } : {}),
    payment_outcome: { status: outcome, tx: start.payment?.tx ?? null },
    ...fields,
  });

/** Journals whose entries do not sum to zero (or have fewer than two): must always be empty. */
export const unbalancedJournals = async (pool: Pool): Promise<unknown[]> =>
  (
    await pool.query(`SELECT j.id, coalesce(sum(e.amount_atomic), 0)::text AS total, count(e.id)::int AS n
                        FROM ledger_journals j LEFT JOIN ledger_entries e ON e.journal_id = j.id
                       GROUP BY j.id HAVING coalesce(sum(e.amount_atomic), 0) <> 0 OR count(e.id) < 2`)
  ).rows;

/** Counts of journals per kind, entries, and the sum of every entry (a string: bigint). */
export const ledgerTotals = async (pool: Pool, gatewayRequestIds?: string[]) => {
  const filter = gatewayRequestIds ? 'WHERE j.gateway_request_id = ANY ($1)' : '';
  const params = gatewayRequestIds ? [gatewayRequestIds] : [];
  const { rows } = await pool.query(
    `SELECT count(*) FILTER (WHERE kind = 'payment')::int AS payments,
            count(*) FILTER (WHERE kind = 'refund')::int AS refunds
       FROM ledger_journals j ${filter}`,
    params,
  );
  const { rows: entries } = await pool.query(
    `SELECT count(*)::int AS entries, coalesce(sum(e.amount_atomic), 0)::text AS total
       FROM ledger_entries e JOIN ledger_journals j ON j.id = e.journal_id ${filter}`,
    params,
  );
  return { ...rows[0], ...entries[0] } as { payments: number; refunds: number; entries: number; total: string };
};

/** A seller, a buyer and a listing in the database (posting reads the listing's fee_bps). */
export const insertListing = async (
  pool: Pool,
  ids: { sellerId: string; buyerId: string; listingId: string },
  feeBps: number | null = null,
  priceAtomic = 10_000n,
): Promise<void> => {
  await pool.query(`INSERT INTO agents (id, name) VALUES ($1, 'seller'), ($2, 'buyer') ON CONFLICT DO NOTHING`, [
    ids.sellerId,
    ids.buyerId,
  ]);
  await pool.query(
    `INSERT INTO listings (id, seller_id, name, description, pricing_model, price_atomic, endpoint_url_enc,
                           endpoint_scheme, endpoint_host, fee_bps)
     VALUES ($1, $2, 'Paid', 'A paid listing', 'per_call', $3, 'x', 'http', 'seller.test', $4)`,
    [ids.listingId, ids.sellerId, priceAtomic.toString(), feeBps],
  );
};
