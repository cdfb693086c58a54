import { newId } from '@crochet/protocol';
import type { Pool, PoolClient } from '../db.js';
import { transaction, withAdvisoryLock } from '../db.js';
import { ACCOUNTS_SQL } from '../ledger/posting.js';
import { normalizeWalletAddress } from '../wallets.js';
import {
  chainOf,
  createPayout,
  payableAtomic,
  TRANSFER_COLUMNS,
  TRANSFER_CURRENCY,
  type TransferRow,
} from './payouts.js';
import type { Treasury } from './treasury.js';

/**
 * §3.9 money out, exactly once: the job that sends what `money_transfers` says is due — seller payouts and refunds
 * of calls booked `refund_due` — and books each in the ledger once it is final on chain.
 *
 * A transfer moves through its row, and every step is written before the next is taken, so a process that dies
 * anywhere finds on restart exactly where it was:
 *
 *   pending, unsigned  → signed: the transaction is signed and stored (bytes and id) BEFORE it is sent;
 *   signed             → broadcast: the stored bytes are sent (again, after a crash: the same bytes are the same
 *                        transaction, which a chain includes once);
 *   signed, pending    → broadcast: `broadcast` is written BEFORE the bytes are first sent, so a row still
 *                        `pending` was never sent, and one whose lifetime ran out is signed anew at no risk;
 *   broadcast          → confirmed: final on chain → its journal and `confirmed` in one PostgreSQL transaction;
 *                        failed on chain, final (nothing moved) → `failed`, the amount is payable (or owed) again —
 *                        a refund gets a new transfer after a while (REFUND_RETRY), at most REFUND_ATTEMPTS times;
 *                        can never land, while the chain can still say so (Solana: its blockhash expired within
 *                        the status window) → signed anew, the earlier attempt kept in `attempts`;
 *                        cannot be told (an expiry long past, an EVM nonce taken with no receipt) → stays open,
 *                        NEVER signed anew, with `review` saying why: its amount stays reserved, the open-transfer
 *                        metrics and alerts call an operator, and it is booked if the chain shows it after all.
 *
 * Before anything is sent, the chain is asked about the stored transaction, so one that landed before a crash is
 * booked, not sent again. One control plane runs the job at a time (an advisory lock): transfers of one treasury go
 * out one by one, which also keeps its EVM nonces in order.
 */

export interface TransfersLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Named points of a transfer's way out, for tests that stop the process there (a real crash). */
export type TransferFailpoint = 'signed' | 'broadcast';

export interface TransfersOptions {
  pool: Pool;
  /** The marketplace's treasury per CAIP-2 network (only networks with a key can send). */
  treasuries: ReadonlyMap<string, Treasury>;
  /** How often the job looks (0: only when kicked). */
  intervalMs: number;
  log: TransfersLog;
  /** `CROCHET_PAYOUT_MINIMUM`: automatic payouts wait for max(threshold, minimum). */
  payoutMinimumAtomic?: bigint;
  /** Tests: called at each failpoint (a test process kills itself there). */
  failpoint?: (point: TransferFailpoint, transferId: string) => Promise<void> | void;
}

export interface TransfersReport {
  refundsQueued: number;
  autoPayouts: number;
  confirmed: number;
  failed: number;
  waiting: number;
  errors: number;
}

export interface TransfersStats {
  runs: number;
  confirmed: number;
  failed: number;
  errors: number;
  /** Open transfers (pending or broadcast) at the end of the last run. */
  open: number;
}

// Any constant works; the same in every control plane, and distinct from the other advisory locks (reconcile.ts).
export const TRANSFERS_LOCK = 7_312_004_120;
const BATCH = 100;

/** A refund whose transfer failed on chain gets a new one after this long, at most REFUND_ATTEMPTS transfers in all. */
const REFUND_RETRY = '10 minutes';
const REFUND_ATTEMPTS = 5;

// Refunds booked (a refund journal with a refund_owed entry) with no transfer on its way or confirmed: never given
// one, or given only failed ones (the last a while ago, fewer than REFUND_ATTEMPTS).
const REFUNDS_OWED_SQL = `
  SELECT j.id::text AS journal_id, j.gateway_request_id, j.buyer_id, e.amount_atomic::text, j.currency, j.network,
         g.payment ->> 'payer' AS payer, g.payment ->> 'rail' AS rail
    FROM ledger_journals j
    JOIN ledger_entries e ON e.journal_id = j.id AND e.entry_type = 'refund_owed'
    JOIN gateway_requests g ON g.id = j.gateway_request_id
   WHERE j.kind = 'refund' AND j.id > $1
     AND NOT EXISTS (SELECT 1 FROM money_transfers t
                      WHERE t.gateway_request_id = j.gateway_request_id
                        AND (t.status <> 'failed' OR t.updated_at > now() - interval '${REFUND_RETRY}'))
     AND (SELECT count(*) FROM money_transfers t WHERE t.gateway_request_id = j.gateway_request_id) < ${REFUND_ATTEMPTS}
   ORDER BY j.id
   LIMIT ${BATCH}`;

const OPEN_SQL = `
  SELECT ${TRANSFER_COLUMNS} FROM money_transfers
   WHERE status IN ('pending', 'broadcast') AND network = ANY ($1::text[])
   ORDER BY review IS NOT NULL, created_at, id
   LIMIT ${BATCH}`;

export class Transfers {
  readonly #o: TransfersOptions;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<TransfersReport | null> | undefined;
  #again = false;
  #stopped = false;
  /** Refund journals looked at up to here (those that could not be queued yet are looked at again after a lap). */
  #refundCursor = '0';
  readonly stats: TransfersStats = { runs: 0, confirmed: 0, failed: 0, errors: 0, open: 0 };

  constructor(options: TransfersOptions) {
    this.#o = options;
  }

  start(): void {
    if (this.#o.intervalMs <= 0) return;
    this.#timer = setInterval(() => this.kick(), this.#o.intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.idle();
  }

  /** Resolves once no run is going in this process. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running.catch(() => {});
  }

  /** Runs soon: now, or right after the run in progress (a payout asked for meanwhile is not left for the timer). */
  kick(): void {
    if (this.#running) {
      this.#again = true;
      return;
    }
    void this.runOnce().catch((error: unknown) => this.#o.log.error({ err: error }, 'transfers run failed'));
  }

  /** One run; null when one is going here or on another control plane. */
  runOnce(): Promise<TransfersReport | null> {
    if (this.#running) return Promise.resolve(null);
    this.#running = this.#locked().finally(() => {
      this.#running = undefined;
      if (this.#again && !this.#stopped) {
        this.#again = false;
        this.kick();
      }
    });
    return this.#running;
  }

  #locked(): Promise<TransfersReport | null> {
    return withAdvisoryLock(this.#o.pool, TRANSFERS_LOCK, () => this.#run());
  }

  async #run(): Promise<TransfersReport> {
    const report: TransfersReport = {
      refundsQueued: 0,
      autoPayouts: 0,
      confirmed: 0,
      failed: 0,
      waiting: 0,
      errors: 0,
    };
    this.stats.runs++;
    report.refundsQueued = await this.#queueRefunds();
    report.autoPayouts = await this.#queueAutoPayouts();
    const networks = [...this.#o.treasuries.keys()];
    const { rows } = await this.#o.pool.query<TransferRow>(OPEN_SQL, [networks]);
    for (const row of rows) {
      if (this.#stopped) break;
      try {
        const outcome = await this.#advance(row);
        if (outcome === 'confirmed') report.confirmed++;
        else if (outcome === 'failed') report.failed++;
        else report.waiting++;
      } catch (error) {
        // A chain or PostgreSQL that does not answer: the transfer stays where its row says, and the next run goes on.
        report.errors++;
        this.#o.log.warn({ err: error, transfer: row.id }, 'transfer not advanced; retried at the next run');
      }
    }
    this.stats.confirmed += report.confirmed;
    this.stats.failed += report.failed;
    this.stats.errors += report.errors;
    this.stats.open = report.waiting + report.errors;
    return report;
  }

  /** Takes one transfer as far as it can go now. */
  async #advance(row: TransferRow): Promise<'confirmed' | 'failed' | 'waiting'> {
    const treasury = this.#o.treasuries.get(row.network)!;
    if (row.signed_tx === null) {
      if (row.kind === 'payout' && !(await this.#walletStillVerified(row))) {
        await this.#fail(row, 'the wallet is no longer a verified wallet of the seller; nothing was sent');
        return 'failed';
      }
      const signed = await treasury.sign(row.to_address, BigInt(row.amount_atomic));
      // Stored before it is sent: after a crash the same bytes are sent, or found on chain — never a second transfer.
      const { rowCount } = await this.#o.pool.query(
        `UPDATE money_transfers SET tx = $2, signed_tx = $3, valid_until = $4, updated_at = now()
          WHERE id = $1 AND signed_tx IS NULL AND status = 'pending'`,
        [row.id, signed.tx, signed.signedTx, signed.validUntil.toString()],
      );
      if (rowCount !== 1) return 'waiting'; // changed under us (cannot, under the lock): looked at again next run
      row = { ...row, tx: signed.tx, signed_tx: signed.signedTx, valid_until: signed.validUntil.toString() };
      await this.#o.failpoint?.('signed', row.id);
    }
    const validUntil = row.valid_until === null ? null : BigInt(row.valid_until);
    let state = await treasury.status(row.tx!, validUntil);
    if (row.status === 'pending' && (state === 'dropped' || state === 'unknown')) {
      // Signed, never sent (`broadcast` is written before the first send), and past its lifetime: it cannot land.
      await this.#resign(row, 'expired before it was sent');
      return 'waiting';
    }
    if (state === 'pending') {
      if (row.status === 'pending') {
        // Written before the bytes leave: from here on, a crash leaves a row that says they may have.
        const { rowCount } = await this.#o.pool.query(
          `UPDATE money_transfers SET status = 'broadcast', updated_at = now()
            WHERE id = $1 AND status = 'pending' AND tx = $2`,
          [row.id, row.tx],
        );
        if (rowCount !== 1) return 'waiting'; // changed under us (a second job after a lost lock): next run
        row = { ...row, status: 'broadcast' };
      }
      await treasury.broadcast(row.signed_tx!);
      await this.#o.failpoint?.('broadcast', row.id);
      state = await treasury.status(row.tx!, validUntil);
    }
    switch (state) {
      case 'confirmed':
        await this.#book(row);
        return 'confirmed';
      case 'failed':
        await this.#fail(row, 'the transaction failed on chain; nothing was sent');
        return 'failed';
      case 'dropped':
        // It can never land, and the chain can still tell (it said twice it does not have it): signed anew.
        await this.#resign(row, 'dropped by the chain');
        return 'waiting';
      case 'unknown': {
        // Not seen, and the chain can no longer be trusted to say it never landed: held, never sent again.
        const review =
          treasury.chain === 'solana'
            ? 'not found on chain long after its blockhash expired: it may have landed on an RPC that keeps no history; not sent again — check the transaction on an archival node'
            : "the treasury's nonce moved past this transaction with no receipt for it: not sent again — check the treasury's transactions at this nonce";
        if (row.review !== review) {
          this.#o.log.error({ transfer: row.id, tx: row.tx, review }, 'transfer held for an operator');
          await this.#o.pool.query(`UPDATE money_transfers SET review = $2, updated_at = now() WHERE id = $1`, [
            row.id,
            review,
          ]);
        }
        return 'waiting';
      }
      default: // landed (not final yet) or pending (sent, not seen yet): looked at again next run
        return 'waiting';
    }
  }

  /** Clears the signed transaction for a new one at the next run; the attempt is kept in `attempts`. */
  async #resign(row: TransferRow, why: string): Promise<void> {
    this.#o.log.warn({ transfer: row.id, tx: row.tx, why }, 'transfer signed anew');
    await this.#o.pool.query(
      `UPDATE money_transfers
          SET attempts = attempts || jsonb_build_array(jsonb_build_object(
                'tx', tx, 'valid_until', valid_until::text, 'outcome', $3::text, 'at', now())),
              status = 'pending', tx = NULL, signed_tx = NULL, valid_until = NULL, review = NULL, updated_at = now()
        WHERE id = $1 AND tx = $2 AND status = $4`,
      [row.id, row.tx, why, row.status],
    );
  }

  async #walletStillVerified(row: TransferRow): Promise<boolean> {
    const { rows } = await this.#o.pool.query(
      `SELECT 1 FROM wallets WHERE agent_id = $1 AND chain = $2 AND address = $3 AND verified_at IS NOT NULL`,
      [row.owner_id, chainOf(row.network), row.to_address],
    );
    return rows.length === 1;
  }

  async #fail(row: TransferRow, error: string): Promise<void> {
    this.#o.log.warn({ transfer: row.id, tx: row.tx, error }, 'transfer failed');
    await this.#o.pool.query(
      `UPDATE money_transfers SET status = 'failed', error = $2, updated_at = now()
        WHERE id = $1 AND status IN ('pending', 'broadcast')`,
      [row.id, error],
    );
  }

  /** The transfer's journal and its confirmation, in one transaction (idempotent: booked once, whatever reruns). */
  async #book(row: TransferRow): Promise<void> {
    await transaction(this.#o.pool, async (client) => {
      const { rows: locked } = await client.query<{ status: string }>(
        'SELECT status FROM money_transfers WHERE id = $1 FOR UPDATE',
        [row.id],
      );
      if (locked[0]?.status === 'confirmed') return;
      const journal = row.kind === 'payout' ? await bookPayout(client, row) : await bookRefund(client, row);
      await client.query(
        `UPDATE money_transfers SET status = 'confirmed', journal_id = $2, confirmed_at = now(), updated_at = now()
          WHERE id = $1`,
        [row.id, journal],
      );
    });
    this.#o.log.info(
      { transfer: row.id, kind: row.kind, amount_atomic: row.amount_atomic, network: row.network, tx: row.tx },
      'transfer confirmed and booked',
    );
  }

  /**
   * Gives each refund owed (a refund journal whose price is owed back) a transfer to the payer, on the payment's
   * network: to the address that paid when it is one of that chain (a Relay payment's sender may be on another chain:
   * then the buyer's verified wallet there). Refunds that cannot go yet (no key for the network, no address) stay
   * owed, and are looked at again after a lap.
   */
  async #queueRefunds(): Promise<number> {
    const { pool, treasuries } = this.#o;
    const { rows } = await pool.query<{
      journal_id: string;
      gateway_request_id: string;
      buyer_id: string;
      amount_atomic: string;
      currency: string;
      network: string | null;
      payer: string | null;
      rail: string | null;
    }>(REFUNDS_OWED_SQL, [this.#refundCursor]);
    this.#refundCursor = rows.length < BATCH ? '0' : rows.at(-1)!.journal_id;
    let queued = 0;
    for (const row of rows) {
      if (row.network === null || !treasuries.has(row.network) || row.currency !== TRANSFER_CURRENCY) continue;
      const chain = chainOf(row.network)!;
      const payer = row.payer && row.rail !== 'relay' ? normalizeWalletAddress(chain, row.payer) : null;
      const to = payer ?? (await verifiedWallet(pool, row.buyer_id, chain));
      if (to === null) continue;
      const { rowCount } = await pool.query(
        `INSERT INTO money_transfers (id, kind, owner_id, gateway_request_id, network, to_address, amount_atomic,
                                      currency, status, requested_by)
         VALUES ($1, 'refund', $2, $3, $4, $5, $6, $7, 'pending', 'refund')
         ON CONFLICT (gateway_request_id) WHERE status <> 'failed' DO NOTHING`,
        [newId('refund'), row.buyer_id, row.gateway_request_id, row.network, to, row.amount_atomic, row.currency],
      );
      queued += rowCount ?? 0;
    }
    return queued;
  }

  /** Sellers that asked for automatic payouts, whose payable reached their threshold, with no payout on its way. */
  async #queueAutoPayouts(): Promise<number> {
    const { pool, treasuries, log } = this.#o;
    const { rows } = await pool.query<{ id: string; payout_network: string; payout_threshold_atomic: string }>(
      `SELECT a.id, a.payout_network, a.payout_threshold_atomic::text FROM agents a
        WHERE a.payout_network IS NOT NULL AND a.payout_network = ANY ($1::text[])
          AND NOT EXISTS (SELECT 1 FROM money_transfers t
                           WHERE t.owner_id = a.id AND t.kind = 'payout' AND t.status IN ('pending', 'broadcast'))`,
      [[...treasuries.keys()]],
    );
    let created = 0;
    const minimum = this.#o.payoutMinimumAtomic ?? 1n;
    for (const seller of rows) {
      // A threshold set before the minimum was raised waits for the minimum.
      const threshold = BigInt(seller.payout_threshold_atomic);
      if ((await payableAtomic(pool, seller.id)) < (threshold > minimum ? threshold : minimum)) continue;
      try {
        await createPayout(pool, treasuries, {
          ownerId: seller.id,
          network: seller.payout_network,
          amountAtomic: null,
          to: null,
          idempotencyKey: null,
          requestedBy: 'auto',
          minimumAtomic: minimum,
        });
        created++;
      } catch (error) {
        // No verified wallet on that chain (removed since), say: nothing is sent, the seller sees it in its settings.
        log.warn({ err: error, seller: seller.id }, 'automatic payout not created');
      }
    }
    return created;
  }
}

const verifiedWallet = async (pool: Pool, agentId: string, chain: 'solana' | 'evm'): Promise<string | null> => {
  const { rows } = await pool.query<{ address: string }>(
    `SELECT address FROM wallets WHERE agent_id = $1 AND chain = $2 AND verified_at IS NOT NULL
      ORDER BY verified_at DESC LIMIT 1`,
    [agentId, chain],
  );
  return rows[0]?.address ?? null;
};

/** Accounts by role for one owner (created when missing). */
const accountsOf = async (
  client: PoolClient,
  owner: string,
  roles: readonly string[],
  currency: string,
): Promise<Map<string, string>> => {
  const sorted = [...roles].sort();
  const { rows } = await client.query<{ id: string; role: string }>(ACCOUNTS_SQL, [
    sorted.map(() => owner),
    sorted,
    sorted.map(() => currency),
  ]);
  return new Map(rows.map((r) => [r.role, r.id]));
};

const ENTRIES_SQL = `
  INSERT INTO ledger_entries (journal_id, account_id, entry_type, amount_atomic)
  SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[])`;

/** payout journal: seller_payable −amount (seller_payout) · seller_paid +amount (payout_sent). */
const bookPayout = async (client: PoolClient, row: TransferRow): Promise<string> => {
  const accounts = await accountsOf(client, row.owner_id, ['seller_payable', 'seller_paid'], row.currency);
  const { rows } = await client.query<{ id: string }>(
    `INSERT INTO ledger_journals (kind, idempotency_key, seller_id, currency, amount_atomic, fee_atomic, fee_bps,
                                  network, tx, transfer_id)
     VALUES ('payout', $1 || ':payout', $2, $3, $4, 0, 0, $5, $6, $1)
     RETURNING id::text`,
    [row.id, row.owner_id, row.currency, row.amount_atomic, row.network, row.tx],
  );
  const journal = rows[0]!.id;
  await client.query(ENTRIES_SQL, [
    [journal, journal],
    [accounts.get('seller_payable'), accounts.get('seller_paid')],
    ['seller_payout', 'payout_sent'],
    [`-${row.amount_atomic}`, row.amount_atomic],
  ]);
  return journal;
};

/** refund_transfer journal: refund_payable −price (refund_sent) · buyer +price (buyer_debit_reversal). */
const bookRefund = async (client: PoolClient, row: TransferRow): Promise<string> => {
  const accounts = await accountsOf(client, row.owner_id, ['buyer', 'refund_payable'], row.currency);
  const { rows } = await client.query<{ id: string }>(
    `INSERT INTO ledger_journals (kind, gateway_request_id, idempotency_key, listing_id, buyer_id, seller_id, currency,
                                  amount_atomic, fee_atomic, fee_bps, network, tx, transfer_id)
     SELECT 'refund_transfer', r.gateway_request_id, r.gateway_request_id || ':refund_transfer', r.listing_id,
            r.buyer_id, r.seller_id, r.currency, $2, 0, 0, $3, $4, $5
       FROM ledger_journals r WHERE r.idempotency_key = $1 || ':refund'
     RETURNING id::text`,
    [row.gateway_request_id, row.amount_atomic, row.network, row.tx, row.id],
  );
  const journal = rows[0]?.id;
  if (journal === undefined) throw new Error(`transfers: ${row.id}: the refund journal it pays is missing`);
  await client.query(ENTRIES_SQL, [
    [journal, journal],
    [accounts.get('refund_payable'), accounts.get('buyer')],
    ['refund_sent', 'buyer_debit_reversal'],
    [`-${row.amount_atomic}`, row.amount_atomic],
  ]);
  return journal;
};
