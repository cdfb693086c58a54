import { createHash } from 'node:crypto';
import type { GatewayEvent } from '@crochet/protocol';
import type { PoolClient } from '../db.js';

/**
 * §3.5: books paid gateway requests as balanced journals, in the transaction that records their events (called by
 * `applyEvents`). Posting reads the request's row, not the events: start and end may come in any order and in
 * different batches, and a request is posted by whichever transaction first sees both its payment and its outcome.
 *
 *   payment journal   buyer_debit −price · seller_credit +(price − fee) · marketplace_fee +fee
 *   refund journal    the exact negation of the payment journal's entries (`*_reversal`), reverses_journal_id set
 *
 * Idempotent on `<gateway request id>:<kind>`: a redelivery inserts nothing. One that would post different amounts
 * under an existing key (or claim a settlement another request already booked) becomes a `ledger_alarms` row and a
 * log line, never a posting.
 */

export interface LedgerLog {
  warn(obj: object, msg: string): void;
}

export interface LedgerOptions {
  /** `CROCHET_FEE_BPS`: the marketplace fee when the listing has no `fee_bps` of its own. */
  feeBps: number;
  log?: LedgerLog;
}

/** The default of `CROCHET_FEE_BPS` (5 %). */
export const DEFAULT_FEE_BPS = 500;

/** A request whose recorded payment cannot be booked as it is; SQLSTATE 22023 so the consumer dead-letters it. */
export class LedgerDataError extends Error {
  readonly code = '22023';
}

/**
 * An account another transaction created after this statement's snapshot: not the data's fault, and gone when the
 * batch is applied again (SQLSTATE 40001, as a serialization failure, so that the consumer retries it at once).
 */
export class LedgerAccountRaceError extends Error {
  readonly code = '40001';
}

/** `floor(price × fee_bps / 10000)`, in integer atomic units. */
export const feeAtomic = (priceAtomic: bigint, feeBps: number): bigint => (priceAtomic * BigInt(feeBps)) / 10_000n;

interface Candidate {
  id: string;
  listing_id: string;
  buyer_id: string;
  seller_id: string;
  price_atomic: string;
  currency: string;
  network: unknown;
  tx: unknown;
  outcome: 'settled' | 'refund_due' | 'unpaid';
  fee_bps: number | null;
}

interface Posting {
  kind: 'payment' | 'loss';
  key: string;
  candidate: Candidate;
  amountAtomic: bigint;
  feeAtomic: bigint;
  feeBps: number;
  network: string | null;
  tx: string | null;
}

/**
 * Which gateway requests (alias `g`) book a journal — the one rule posting and reconciliation share. A paid request
 * is booked once it reached the seller (completed, or failed there) and its payment ended settled or due a refund,
 * or when it was refused after its transfer was consumed (the buyer's spend cap): booked and reversed, so the
 * buyer's money shows as due back. `payment ? 'rail'` means the start's payment record is in; the outcome comes with
 * the end.
 */
export const BOOKABLE_SQL = `g.buyer_id IS NOT NULL AND g.seller_id IS NOT NULL AND g.price_atomic > 0
     AND g.payment ? 'rail'
     AND g.payment -> 'outcome' ->> 'status' IN ('settled', 'refund_due', 'unpaid')
     AND (g.status IN ('completed', 'upstream_error', 'client_aborted')
          OR (g.status = 'refused' AND g.payment -> 'outcome' ->> 'status' = 'refund_due'))`;

/**
 * The journal a bookable request books first: a payment, or — when its settlement was refused after the seller
 * served (`unpaid`, an after_response listing) — the marketplace's loss, which pays the seller its share anyway.
 */
export const FIRST_JOURNAL_SQL = `CASE WHEN g.payment -> 'outcome' ->> 'status' = 'unpaid' THEN 'loss' ELSE 'payment' END`;

// The requests are read one primary-key lookup each (a lateral subquery kept apart by OFFSET 0): given the ids as a
// set, the planner guesses from statistics that lag behind a table growing this fast, and scans a whole index (a
// bitmap of buyer_id IS NOT NULL) or the whole table instead.
const CANDIDATES_SQL = `
  SELECT g.id, g.listing_id, g.buyer_id, g.seller_id, g.price_atomic::text AS price_atomic, g.currency,
         g.payment -> 'network' AS network, coalesce(g.payment -> 'outcome' -> 'tx', g.payment -> 'tx') AS tx,
         g.payment -> 'outcome' ->> 'status' AS outcome, l.fee_bps
    FROM unnest($1::text[]) AS w (id)
   CROSS JOIN LATERAL (SELECT * FROM gateway_requests g WHERE g.id = w.id AND ${BOOKABLE_SQL} OFFSET 0) g
    LEFT JOIN listings l ON l.id = g.listing_id
   ORDER BY g.id`;

export const ACCOUNTS_SQL = `
  WITH wanted AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS w (owner_id, role, currency)),
  created AS (
    INSERT INTO ledger_accounts (owner_id, role, currency) SELECT owner_id, role, currency FROM wanted
    ON CONFLICT DO NOTHING RETURNING id, owner_id, role, currency)
  SELECT id::text, owner_id, role, currency FROM created
  UNION ALL
  SELECT a.id::text, a.owner_id, a.role, a.currency FROM ledger_accounts a JOIN wanted w USING (owner_id, role, currency)`;

// One statement for a batch's payments: the accounts they need (created when missing, as ACCOUNTS_SQL does, in the
// order given), the journals, the entries of the journals inserted (by gateway request: one journal each here, and
// by account key) in the order given, and for those of the requests due a refund ($4) their reversal, as
// REFUNDS_SQL makes it (which still reverses the payments posted before). ON CONFLICT without a target covers the
// idempotency key and the settlement reference alike; what was not inserted gets no entries and is examined
// afterwards. Each row returned carries the number of entries inserted, to be compared with the number due. The
// journals ($1), accounts ($2) and entries ($3) come as JSON arrays of objects, read in their order.
const PAYMENTS_SQL = `
  WITH wanted AS (
    SELECT * FROM ROWS FROM (json_to_recordset($2::json) AS (owner_id text, role text, currency text))
           WITH ORDINALITY AS w (owner_id, role, currency, n)),
  created AS (
    INSERT INTO ledger_accounts (owner_id, role, currency) SELECT owner_id, role, currency FROM wanted ORDER BY n
    ON CONFLICT DO NOTHING RETURNING id, owner_id, role, currency),
  accounts AS (
    SELECT id, owner_id, role, currency FROM created
    UNION ALL
    SELECT a.id, a.owner_id, a.role, a.currency FROM ledger_accounts a JOIN wanted w USING (owner_id, role, currency)),
  inserted AS (
    INSERT INTO ledger_journals (kind, gateway_request_id, idempotency_key, listing_id, buyer_id, seller_id, currency,
                                 amount_atomic, fee_atomic, fee_bps, network, tx)
    SELECT p.kind, p.id, p.id || ':' || p.kind, p.listing_id, p.buyer_id, p.seller_id, p.currency, p.amount, p.fee,
           p.fee_bps, p.network, p.tx
      FROM json_to_recordset($1::json)
           AS p (id text, listing_id text, buyer_id text, seller_id text, currency text, amount bigint, fee bigint,
                 fee_bps int, network text, tx text, kind text)
    ON CONFLICT DO NOTHING
    RETURNING id, gateway_request_id, kind, listing_id, buyer_id, seller_id, currency, amount_atomic, fee_atomic,
              fee_bps, network, tx),
  reversed AS (
    INSERT INTO ledger_journals (kind, gateway_request_id, idempotency_key, listing_id, buyer_id, seller_id, currency,
                                 amount_atomic, fee_atomic, fee_bps, network, tx, reverses_journal_id)
    SELECT 'refund', i.gateway_request_id, i.gateway_request_id || ':refund', i.listing_id, i.buyer_id, i.seller_id,
           i.currency, i.amount_atomic, i.fee_atomic, i.fee_bps, i.network, i.tx, i.id
      FROM inserted i
     WHERE i.kind = 'payment' AND i.gateway_request_id = ANY ($4::text[])
     ORDER BY i.id
    ON CONFLICT DO NOTHING
    RETURNING id, gateway_request_id, buyer_id, currency),
  given AS (
    SELECT * FROM ROWS FROM (json_to_recordset($3::json)
                             AS (gateway_request_id text, owner_id text, role text, currency text, entry_type text,
                                 amount_atomic bigint))
           WITH ORDINALITY AS e (gateway_request_id, owner_id, role, currency, entry_type, amount_atomic, n)),
  entries AS (
    INSERT INTO ledger_entries (journal_id, account_id, entry_type, amount_atomic)
    SELECT journal_id, account_id, entry_type, amount_atomic FROM (
      SELECT i.id AS journal_id, a.id AS account_id, e.entry_type, e.amount_atomic, 0 AS part, e.n
        FROM given e
        JOIN inserted i ON i.gateway_request_id = e.gateway_request_id
        JOIN accounts a ON a.owner_id = e.owner_id AND a.role = e.role AND a.currency = e.currency
      UNION ALL
      -- REFUNDS_SQL's reversal, of the entries just given: the buyer's debit becomes owed to the buyer.
      SELECT r.id, a.id,
             CASE WHEN e.entry_type = 'buyer_debit' THEN 'refund_owed' ELSE e.entry_type || '_reversal' END,
             -e.amount_atomic, 1, e.n
        FROM given e
        JOIN reversed r ON r.gateway_request_id = e.gateway_request_id
       CROSS JOIN LATERAL (
             SELECT CASE WHEN e.entry_type = 'buyer_debit' THEN r.buyer_id ELSE e.owner_id END AS owner_id,
                    CASE WHEN e.entry_type = 'buyer_debit' THEN 'refund_payable' ELSE e.role END AS role) k
        JOIN accounts a ON a.owner_id = k.owner_id AND a.role = k.role AND a.currency = r.currency) t
     ORDER BY part, n
    RETURNING 1)
  SELECT id::text, gateway_request_id, (SELECT count(*) FROM entries)::int AS entries,
         (SELECT count(*) FROM reversed)::int AS refunds
    FROM inserted`;

const EXISTING_SQL = `
  SELECT id::text, gateway_request_id, idempotency_key, currency, amount_atomic::text AS amount_atomic,
         fee_atomic::text AS fee_atomic, network, tx
    FROM ledger_journals WHERE idempotency_key = ANY ($1::text[])`;

// A refund reverses the payment: the seller's credit and the fee are taken back, and the price the buyer paid becomes
// owed to the buyer (refund_payable) until the refund transfer sends it back on chain (transfers.ts books that). The
// reversed journals' entries are read journal by journal (a lateral subquery kept apart by OFFSET 0): joined as a
// whole, the planner does not know how few journals the CTE returns and scans every entry.
const REFUNDS_SQL = `
  WITH reversed AS (
    INSERT INTO ledger_journals (kind, gateway_request_id, idempotency_key, listing_id, buyer_id, seller_id, currency,
                                 amount_atomic, fee_atomic, fee_bps, network, tx, reverses_journal_id)
    SELECT 'refund', j.gateway_request_id, j.gateway_request_id || ':refund', j.listing_id, j.buyer_id, j.seller_id,
           j.currency, j.amount_atomic, j.fee_atomic, j.fee_bps, j.network, j.tx, j.id
      FROM ledger_journals j
     WHERE j.idempotency_key = ANY ($1::text[])
     ORDER BY j.id
    ON CONFLICT DO NOTHING
    RETURNING id, reverses_journal_id, buyer_id, currency)
  INSERT INTO ledger_entries (journal_id, account_id, entry_type, amount_atomic)
  SELECT r.id,
         CASE WHEN e.entry_type = 'buyer_debit' THEN owed.id ELSE e.account_id END,
         CASE WHEN e.entry_type = 'buyer_debit' THEN 'refund_owed' ELSE e.entry_type || '_reversal' END,
         -e.amount_atomic
    FROM reversed r
    JOIN ledger_accounts owed ON owed.owner_id = r.buyer_id AND owed.role = 'refund_payable' AND owed.currency = r.currency
   CROSS JOIN LATERAL (
         SELECT e.account_id, e.entry_type, e.amount_atomic FROM ledger_entries e
          WHERE e.journal_id = r.reverses_journal_id ORDER BY e.id OFFSET 0) e`;

const ALARMS_SQL = `
  INSERT INTO ledger_alarms (reason, idempotency_key, journal_id, posted, received, fingerprint)
  SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::jsonb[], $5::jsonb[], $6::text[])
  ON CONFLICT DO NOTHING`;

const optionalText = (value: unknown, field: string, id: string): string | null => {
  if (value === null || value === undefined) return null;
  if (typeof value !== 'string' || value.length === 0 || value.length > 256) {
    throw new LedgerDataError(`ledger: ${id}: payment ${field} is malformed`);
  }
  return value;
};

/** Posts what the requests touched by `events` make due; a no-op for requests already posted. */
/**
 * Journals this process posted since start, by kind (for /metrics). Counted when the statement ran inside the
 * caller's transaction, so a batch rolled back afterwards and retried may count twice.
 */
const postingCounts = { payment: 0, refund: 0 };
export const ledgerPostingStats = (): { payment: number; refund: number } => ({ ...postingCounts });

export const postLedger = async (
  client: PoolClient,
  events: readonly GatewayEvent[],
  options: LedgerOptions,
): Promise<void> => {
  // Only a paid request can be booked: its start carries the payment, its end the payment's outcome.
  const ids = [
    ...new Set(
      events.filter((e) => (e.type === 'gateway.start' ? e.payment : e.payment_outcome) !== undefined).map((e) => e.id),
    ),
  ];
  if (ids.length === 0) return;
  const { rows: candidates } = await client.query<Candidate>(CANDIDATES_SQL, [ids]);
  if (candidates.length === 0) return;

  // --- amounts ---------------------------------------------------------------------------------------------------
  const all: Posting[] = candidates.map((candidate) => {
    const feeBps = candidate.fee_bps ?? options.feeBps;
    const amountAtomic = BigInt(candidate.price_atomic);
    const kind = candidate.outcome === 'unpaid' ? ('loss' as const) : ('payment' as const);
    return {
      kind,
      key: `${candidate.id}:${kind}`,
      candidate,
      amountAtomic,
      feeAtomic: feeAtomic(amountAtomic, feeBps),
      feeBps,
      network: optionalText(candidate.network, 'network', candidate.id),
      tx: optionalText(candidate.tx, 'tx', candidate.id),
    };
  });
  // A loss of nothing (a 100 % fee leaves the seller no share) is no journal: a journal needs two entries.
  const postings = all.filter((p) => p.kind === 'payment' || p.amountAtomic > p.feeAtomic);
  if (postings.length === 0) return;

  // --- accounts (sorted, so that concurrent transactions creating the same ones wait instead of deadlocking) -----
  const wanted = new Map<string, [string, string, string]>();
  for (const { candidate: c } of postings) {
    for (const account of [
      [c.buyer_id, 'buyer', c.currency],
      [c.seller_id, 'seller_payable', c.currency],
      ['marketplace', 'marketplace_fee', c.currency],
      ...(c.outcome === 'refund_due' ? [[c.buyer_id, 'refund_payable', c.currency]] : []),
    ] as [string, string, string][]) {
      wanted.set(account.join('\u0000'), account);
    }
  }
  const sorted = [...wanted.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => v);

  // --- payment journals and their entries, with the accounts, in one statement -------------------------------------
  type Account = [owner: string, role: string, currency: string];
  const entries: [request: string, account: Account, type: string, amount: bigint][] = [];
  for (const p of postings) {
    const { id, buyer_id, seller_id, currency } = p.candidate;
    const share = p.amountAtomic - p.feeAtomic;
    const seller: Account = [seller_id, 'seller_payable', currency];
    const fees: Account = ['marketplace', 'marketplace_fee', currency];
    if (p.kind === 'loss') {
      // The buyer never paid: the marketplace pays the seller's share out of its fees.
      entries.push([id, seller, 'seller_credit', share], [id, fees, 'marketplace_loss', -share]);
      continue;
    }
    entries.push([id, [buyer_id, 'buyer', currency], 'buyer_debit', -p.amountAtomic]);
    entries.push([id, seller, 'seller_credit', share]);
    if (p.feeAtomic > 0n) entries.push([id, fees, 'marketplace_fee', p.feeAtomic]);
  }
  // A 100 % fee leaves the seller nothing: a zero entry says nothing, so it is left out.
  const nonZero = entries.filter((e) => e[3] !== 0n);
  const refundDue = postings.filter((p) => p.candidate.outcome === 'refund_due');
  const { rows: inserted } = await client.query<{
    id: string;
    gateway_request_id: string;
    entries: number;
    refunds: number;
  }>(PAYMENTS_SQL, [
    JSON.stringify(
      postings.map((p) => ({
        id: p.candidate.id,
        listing_id: p.candidate.listing_id,
        buyer_id: p.candidate.buyer_id,
        seller_id: p.candidate.seller_id,
        currency: p.candidate.currency,
        amount: p.amountAtomic.toString(),
        fee: p.feeAtomic.toString(),
        fee_bps: p.feeBps,
        network: p.network,
        tx: p.tx,
        kind: p.kind,
      })),
    ),
    JSON.stringify(sorted.map(([owner_id, role, currency]) => ({ owner_id, role, currency }))),
    JSON.stringify(
      nonZero.map(([gateway_request_id, [owner_id, role, currency], entry_type, amount]) => ({
        gateway_request_id,
        owner_id,
        role,
        currency,
        entry_type,
        amount_atomic: amount.toString(),
      })),
    ),
    refundDue.map((p) => p.candidate.id),
  ]);
  const journalOf = new Map(inserted.map((r) => [r.gateway_request_id, r.id]));
  // An account another transaction created meanwhile is neither inserted nor visible to this statement: its entries
  // are missing. Not the data's fault: the batch is retried (the journal would not balance anyway).
  const reversedHere = new Set(
    refundDue.filter((p) => p.kind === 'payment' && journalOf.has(p.candidate.id)).map((p) => p.candidate.id),
  );
  const due = nonZero.filter((e) => journalOf.has(e[0])).length + nonZero.filter((e) => reversedHere.has(e[0])).length;
  if ((inserted[0]?.entries ?? 0) !== due) {
    throw new LedgerAccountRaceError(
      `ledger: ${due - (inserted[0]?.entries ?? 0)} entries' accounts missing after upsert`,
    );
  }
  postingCounts.payment += inserted.length;
  postingCounts.refund += inserted[0]?.refunds ?? 0;

  // --- not inserted: a redelivery (nothing to do) or a conflict; a start of this batch with another price -------
  // The row keeps the first start's price, so a start that disagrees is only visible here, in its own event.
  const startPrices = new Map<string, string>();
  for (const e of events) if (e.type === 'gateway.start') startPrices.set(e.id, e.price_atomic);
  const checks = postings
    .map((p) => ({ p, receivedAtomic: BigInt(startPrices.get(p.candidate.id) ?? p.amountAtomic) }))
    .filter(({ p, receivedAtomic }) => !journalOf.has(p.candidate.id) || receivedAtomic !== p.amountAtomic);
  if (checks.length > 0) await raiseAlarms(client, checks, options.log);

  // --- refunds: the reversal of a payment journal an earlier delivery posted (those posted above are reversed) ----
  const refunds = refundDue.filter((p) => !reversedHere.has(p.candidate.id)).map((p) => p.key);
  if (refunds.length > 0) postingCounts.refund += (await client.query(REFUNDS_SQL, [refunds])).rowCount ?? 0;
};

const raiseAlarms = async (
  client: PoolClient,
  checks: { p: Posting; receivedAtomic: bigint }[],
  log?: LedgerLog,
): Promise<void> => {
  const { rows } = await client.query<{
    id: string;
    idempotency_key: string;
    currency: string;
    amount_atomic: string;
    fee_atomic: string;
    network: string | null;
    tx: string | null;
  }>(EXISTING_SQL, [checks.map(({ p }) => p.key)]);
  const posted = new Map(rows.map((r) => [r.idempotency_key, r]));
  const alarms: { reason: string; key: string; journal: string | null; posted: object | null; received: object }[] = [];
  for (const { p, receivedAtomic } of checks) {
    const received = {
      currency: p.candidate.currency,
      amount_atomic: receivedAtomic.toString(),
      fee_atomic: feeAtomic(receivedAtomic, p.feeBps).toString(),
      network: p.network,
      tx: p.tx,
    };
    const journal = posted.get(p.key);
    if (!journal) {
      // Nothing under this key, so the settlement reference refused it: another request booked this transaction.
      alarms.push({ reason: 'settlement_reused', key: p.key, journal: null, posted: null, received });
      continue;
    }
    // The fee is left out of the comparison: a listing's fee_bps may change between deliveries, and the journal
    // keeps the fee of its posting. The price is what the buyer paid; it must not differ.
    if (journal.amount_atomic !== received.amount_atomic || journal.currency !== received.currency) {
      const { id, idempotency_key: _, ...held } = journal;
      alarms.push({ reason: 'amount_mismatch', key: p.key, journal: id, posted: held, received });
    }
  }
  if (alarms.length === 0) return;
  const fingerprint = (a: (typeof alarms)[number]): string =>
    createHash('sha256')
      .update(JSON.stringify([a.reason, a.key, a.received]))
      .digest('hex');
  await client.query(ALARMS_SQL, [
    alarms.map((a) => a.reason),
    alarms.map((a) => a.key),
    alarms.map((a) => a.journal),
    alarms.map((a) => (a.posted ? JSON.stringify(a.posted) : null)),
    alarms.map((a) => JSON.stringify(a.received)),
    alarms.map(fingerprint),
  ]);
  for (const a of alarms) {
    log?.warn(
      { reason: a.reason, idempotency_key: a.key, journal_id: a.journal, received: a.received },
      'ledger alarm',
    );
  }
};
