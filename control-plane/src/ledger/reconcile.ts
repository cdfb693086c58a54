import { createHash } from 'node:crypto';
import { checkEvmPayment, type EvmRailConfig, evmClient, type SolanaRailConfig } from '@crochet/plugins';
import { type GatewayEndEvent, type GatewayEvent, isId, type RedisKeys } from '@crochet/protocol';
import { createSolanaRpc, type Signature } from '@solana/kit';
import type { Redis } from 'ioredis';
import type { PublicClient } from 'viem';
import { type Pool, type PoolClient, transaction, withAdvisoryLock } from '../db.js';
import { droppedRanges } from '../history-partitions.js';
import { type PeriodicJob, startPeriodic } from '../periodic.js';
import { BOOKABLE_SQL, DEFAULT_FEE_BPS, FIRST_JOURNAL_SQL, LedgerDataError, postLedger } from './posting.js';

/**
 * §3.5 reconciliation: settled payments seen by the proxies ↔ journals ↔ (where a rail is configured) on-chain
 * transfers to the marketplace. Run periodically by the control plane (`startReconciler`) and by `npm run reconcile`.
 *
 * 1. Paid requests that ended settled / refund_due with no payment journal (or no reversal) are posted now, through
 *    posting's own function in a transaction ("re-emits what is missing"); idempotent, so a second run posts nothing.
 * 2. Payment journals whose amount or currency differ from the request's price, that the payment underpaid, or whose
 *    settlement reference (network, tx) differs from the request's → mismatches, each also a `ledger_alarms` row.
 * 3. Paid requests still `forwarded` past `staleSeconds` (the completion event was lost), and consumed proofs in
 *    Redis (`pay:used:*`) whose gateway request has no row at all (the start was lost) → `incomplete`.
 * 4. With a rail configured: each payment journal on its network not yet checked is looked up on chain; one whose
 *    transaction did not pay the marketplace its amount is a mismatch. Checked journals are remembered in
 *    `ledger_reconciliations` (journals themselves are append-only), so a periodic run checks each once.
 *
 * Nothing here changes history: the only writes are postings (through posting.ts), alarms and check records.
 */

export interface ReconcileLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** The rails whose chains reconciliation may read (plugins' `loadPaymentsConfig`); clients are injectable. */
export interface ReconcilePayments {
  evm?: EvmRailConfig | undefined;
  solana?: SolanaRailConfig | undefined;
  evmClient?: PublicClient;
  solanaRpc?: ReturnType<typeof createSolanaRpc>;
}

export interface ReconcileOptions {
  pool: Pool;
  redis: Redis;
  keys: RedisKeys;
  payments?: ReconcilePayments | undefined;
  /** A paid request with no end (or a used proof with no row) older than this is reported incomplete. */
  staleSeconds: number;
  /** `CROCHET_FEE_BPS`, for what is posted now; default DEFAULT_FEE_BPS. */
  feeBps?: number;
  log: ReconcileLog;
  /** Where the `pay:used:*` SCAN starts ('0' = from the beginning); the report says where it stopped. */
  scanCursor?: string;
  /** SCAN COUNT hint per call, and the most SCAN calls in one run (bounds a run over a huge keyspace). */
  scanCount?: number;
  maxScanCalls?: number;
  /** The most on-chain lookups in one run. */
  maxOnchainChecks?: number;
  /** The most items of each list in the report (the counts stay exact). */
  maxReported?: number;
}

export type MismatchKind =
  | 'journal_amount_mismatch'
  | 'journal_settlement_mismatch'
  | 'unpostable'
  | 'onchain_mismatch';
export type IncompleteKind = 'end_missing' | 'start_missing';

export interface ReconcileIssue<K extends string = string> {
  kind: K;
  gateway_request_id: string;
  detail: string;
}

export interface ReconcileReport {
  /** Paid requests that ended settled or due a refund, compared with their journals. */
  checked: number;
  /** Journals posted by this run (payments and reversals that were missing). */
  reposted: number;
  mismatches: ReconcileIssue<MismatchKind>[];
  incomplete: ReconcileIssue<IncompleteKind>[];
  /** Payment journals looked up on chain by this run, and those left for later (not confirmed yet, RPC failure). */
  onchain_checked: number;
  onchain_deferred: number;
  /** `pay:used:*` keys examined, and the SCAN cursor to resume from ('0': the whole keyspace was covered). */
  proofs_scanned: number;
  next_scan_cursor: string;
}

export interface ReconcileStats {
  runs: number;
  /** Periodic runs skipped because another run (here or on another control plane) held the lock. */
  skipped: number;
  failures: number;
  reposted: number;
  mismatches: number;
  incomplete: number;
  lastRunAt: string | null;
  lastDurationMs: number | null;
  lastError: string | null;
  last: { checked: number; reposted: number; mismatches: number; incomplete: number } | null;
}

const stats: ReconcileStats = {
  runs: 0,
  skipped: 0,
  failures: 0,
  reposted: 0,
  mismatches: 0,
  incomplete: 0,
  lastRunAt: null,
  lastDurationMs: null,
  lastError: null,
  last: null,
};

/** Counters of this process's reconciliation runs (for /metrics). */
export const reconcileStats = (): ReconcileStats => ({ ...stats, last: stats.last ? { ...stats.last } : null });

const BATCH = 500;

// The same conditions as posting's candidates: paid, reached an outcome that books a journal.
const MISSING_SQL = `
  SELECT g.id, g.listing_id, g.status, g.http_status, g.error_code, g.latency_ms, g.upstream_latency_ms,
         g.bytes_in::text AS bytes_in, g.bytes_out::text AS bytes_out, g.completed_at, g.created_at,
         g.payment -> 'outcome' AS outcome,
         NOT EXISTS (SELECT 1 FROM ledger_journals j WHERE j.idempotency_key = g.id || ':' || ${FIRST_JOURNAL_SQL})
           AS payment_missing
    FROM gateway_requests g
   WHERE ${BOOKABLE_SQL}
     AND g.id > $1
     AND (NOT EXISTS (SELECT 1 FROM ledger_journals j WHERE j.idempotency_key = g.id || ':' || ${FIRST_JOURNAL_SQL})
          OR (g.payment -> 'outcome' ->> 'status' = 'refund_due'
              AND NOT EXISTS (SELECT 1 FROM ledger_journals j WHERE j.idempotency_key = g.id || ':refund')))
   ORDER BY g.id
   LIMIT ${BATCH}`;

const CHECKED_SQL = `
  SELECT count(*)::int AS n FROM gateway_requests g
   WHERE ${BOOKABLE_SQL}`;

const JOURNALS_OF_SQL = `
  SELECT gateway_request_id, kind FROM ledger_journals WHERE gateway_request_id = ANY ($1::text[])`;

const REQUEST_TX = `coalesce(g.payment -> 'outcome' ->> 'tx', g.payment ->> 'tx')`;
const PAID_ATOMIC = `CASE WHEN g.payment ->> 'amount_atomic' ~ '^[0-9]{1,30}$'
                          THEN (g.payment ->> 'amount_atomic')::numeric END`;

const DIFFERING_SQL = `
  SELECT j.id::text AS journal_id, j.gateway_request_id, j.idempotency_key, j.currency AS journal_currency,
         j.amount_atomic::text AS journal_amount, j.network AS journal_network, j.tx AS journal_tx,
         g.price_atomic::text AS price_atomic, g.currency, g.payment ->> 'amount_atomic' AS paid_atomic,
         g.payment ->> 'network' AS network, ${REQUEST_TX} AS tx,
         (g.price_atomic IS DISTINCT FROM j.amount_atomic OR g.currency IS DISTINCT FROM j.currency
          OR coalesce(${PAID_ATOMIC} < j.amount_atomic, false)) AS amount_differs
    FROM ledger_journals j
    JOIN gateway_requests g ON g.id = j.gateway_request_id
   WHERE j.kind = 'payment'
     AND j.id > $1
     AND (g.price_atomic IS DISTINCT FROM j.amount_atomic
          OR g.currency IS DISTINCT FROM j.currency
          OR coalesce(${PAID_ATOMIC} < j.amount_atomic, false)
          OR (g.payment -> 'outcome' ->> 'status' = 'settled'
              AND (g.payment ->> 'network' IS DISTINCT FROM j.network OR ${REQUEST_TX} IS DISTINCT FROM j.tx)))
   ORDER BY j.id
   LIMIT ${BATCH}`;

const STALE_SQL = `
  SELECT g.id, g.created_at FROM gateway_requests g
   WHERE g.status = 'forwarded' AND g.payment ? 'rail'
     AND g.created_at < now() - $1 * interval '1 second'
   ORDER BY g.created_at
   LIMIT $2`;

const STALE_COUNT_SQL = `
  SELECT count(*)::int AS n FROM gateway_requests g
   WHERE g.status = 'forwarded' AND g.payment ? 'rail' AND g.created_at < now() - $1 * interval '1 second'`;

const ONCHAIN_SQL = `
  SELECT j.id::text AS journal_id, j.gateway_request_id, j.idempotency_key, j.network, j.tx,
         j.amount_atomic::text AS amount_atomic
    FROM ledger_journals j
   WHERE j.kind = 'payment' AND j.tx IS NOT NULL AND j.network = ANY ($1::text[])
     AND NOT EXISTS (SELECT 1 FROM ledger_reconciliations r WHERE r.journal_id = j.id)
     AND j.id > $2
   ORDER BY j.id
   LIMIT $3`;

const FAILED_ONCHAIN_SQL = `
  SELECT j.gateway_request_id, r.detail, r.reconciled_at
    FROM ledger_reconciliations r JOIN ledger_journals j ON j.id = r.journal_id
   WHERE NOT r.ok
   ORDER BY r.journal_id
   LIMIT $1`;

const ALARM_SQL = `
  INSERT INTO ledger_alarms (reason, idempotency_key, journal_id, posted, received, fingerprint)
  VALUES ($1, $2, $3, $4, $5, $6)
  ON CONFLICT DO NOTHING`;

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** The millisecond time in a ULID-based id (`gr_<ULID>`), or null when it is not one. */
export const idTimeMs = (id: string): number | null => {
  const ulid = id.slice(id.indexOf('_') + 1);
  if (ulid.length !== 26) return null;
  let time = 0;
  for (const char of ulid.slice(0, 10)) {
    const digit = CROCKFORD.indexOf(char);
    if (digit < 0) return null;
    time = time * 32 + digit;
  }
  return time;
};

const raiseAlarm = async (
  client: Pool | PoolClient,
  reason: MismatchKind,
  key: string,
  journalId: string | null,
  posted: object | null,
  received: object,
): Promise<void> => {
  const fingerprint = createHash('sha256')
    .update(JSON.stringify(['reconcile', reason, key, received]))
    .digest('hex');
  await client.query(ALARM_SQL, [
    reason,
    key,
    journalId,
    posted ? JSON.stringify(posted) : null,
    JSON.stringify(received),
    fingerprint,
  ]);
};

interface MissingRow {
  id: string;
  listing_id: string;
  status: GatewayEndEvent['status'];
  http_status: number | null;
  error_code: string | null;
  latency_ms: number | null;
  upstream_latency_ms: number | null;
  bytes_in: string | null;
  bytes_out: string | null;
  completed_at: Date | null;
  created_at: Date;
  outcome: GatewayEndEvent['payment_outcome'];
  payment_missing: boolean;
}

/** The end event the row records: posting reads the rows, the events only say which requests to look at. */
const endOf = (row: MissingRow): GatewayEvent => ({
  type: 'gateway.end',
  v: 1,
  id: row.id,
  listing_id: row.listing_id,
  status: row.status,
  http_status: row.http_status ?? 0,
  error_code: row.error_code,
  latency_ms: row.latency_ms ?? 0,
  upstream_latency_ms: row.upstream_latency_ms,
  bytes_in: Number(row.bytes_in ?? 0),
  bytes_out: Number(row.bytes_out ?? 0),
  at: (row.completed_at ?? row.created_at).getTime(),
  ...(row.outcome ? { payment_outcome: row.outcome } : {}),
});

type Verdict = { ok: true } | { ok: false; detail: string } | 'later';

const checkEvm = async (client: PublicClient, config: EvmRailConfig, tx: string, amount: bigint): Promise<Verdict> => {
  if (!/^0x[0-9a-fA-F]{64}$/.test(tx)) return { ok: false, detail: `not an EVM transaction hash: ${tx}` };
  const checked = await checkEvmPayment(client, config, tx as `0x${string}`, amount);
  if (checked.ok) return { ok: true };
  const v = checked.verdict;
  if (v.ok === 'pending') return 'later';
  if (v.ok === true) return { ok: true };
  return { ok: false, detail: v.message ? `${v.code}: ${v.message}` : v.code };
};

interface TokenBalance {
  accountIndex: number;
  mint: string;
  owner?: string;
  uiTokenAmount: { amount: string };
}

const checkSolana = async (
  rpc: ReturnType<typeof createSolanaRpc>,
  config: SolanaRailConfig,
  tx: string,
  amount: bigint,
): Promise<Verdict> => {
  const found = await rpc
    .getTransaction(tx as Signature, {
      commitment: config.commitment, // as final as a payment must be (CROCHET_SOLANA_COMMITMENT)
      encoding: 'jsonParsed',
      maxSupportedTransactionVersion: 0,
    })
    .send();
  if (!found) return 'later';
  const meta = found.meta as unknown as {
    err: unknown;
    preTokenBalances?: TokenBalance[];
    postTokenBalances?: TokenBalance[];
  } | null;
  if (!meta || meta.err) return { ok: false, detail: 'PAYMENT_TX_FAILED: the transaction failed' };
  const before = new Map((meta.preTokenBalances ?? []).map((b) => [b.accountIndex, b]));
  // The net change of the marketplace's USDC accounts (moving USDC between them pays nothing).
  const paid = (meta.postTokenBalances ?? [])
    .filter((after) => after.owner === config.payTo && after.mint === config.usdcMint)
    .reduce(
      (sum, after) =>
        sum + BigInt(after.uiTokenAmount.amount) - BigInt(before.get(after.accountIndex)?.uiTokenAmount.amount ?? '0'),
      0n,
    );
  if (paid < amount) {
    return { ok: false, detail: `PAYMENT_UNDERPAID: the transaction paid ${paid} of ${amount} atomic USDC` };
  }
  return { ok: true };
};

/** One reconciliation pass; see the module comment. Throws when PostgreSQL or Redis fail. */
export const reconcile = async (options: ReconcileOptions): Promise<ReconcileReport> => {
  const { pool, redis, keys, log } = options;
  const feeBps = options.feeBps ?? DEFAULT_FEE_BPS;
  const maxReported = options.maxReported ?? 1000;
  const started = Date.now();
  const report: ReconcileReport = {
    checked: 0,
    reposted: 0,
    mismatches: [],
    incomplete: [],
    onchain_checked: 0,
    onchain_deferred: 0,
    proofs_scanned: 0,
    next_scan_cursor: '0',
  };
  let mismatchCount = 0;
  let incompleteCount = 0;
  const mismatch = (issue: ReconcileIssue<MismatchKind>): void => {
    mismatchCount++;
    if (report.mismatches.length < maxReported) report.mismatches.push(issue);
    log.warn(issue, 'reconciliation mismatch');
  };
  const incomplete = (issue: ReconcileIssue<IncompleteKind>): void => {
    incompleteCount++;
    if (report.incomplete.length < maxReported) report.incomplete.push(issue);
  };

  try {
    // --- 1. settled / refund_due requests without their journals: post them now ---------------------------------
    report.checked = (await pool.query<{ n: number }>(CHECKED_SQL)).rows[0]?.n ?? 0;
    let after = '';
    for (;;) {
      const { rows } = await pool.query<MissingRow>(MISSING_SQL, [after]);
      if (rows.length === 0) break;
      after = rows[rows.length - 1]!.id;
      const post = async (batch: MissingRow[]): Promise<number> =>
        transaction(pool, async (client) => {
          const ids = batch.map((r) => r.id);
          const count = async (): Promise<number> => (await client.query(JOURNALS_OF_SQL, [ids])).rowCount ?? 0;
          const before = await count();
          await postLedger(client, batch.map(endOf), { feeBps, log });
          return (await count()) - before;
        });
      const unposted: { row: MissingRow; why: string }[] = [];
      try {
        report.reposted += await post(rows);
      } catch (error) {
        if (!(error instanceof LedgerDataError) && (error as { code?: string }).code?.startsWith('2') !== true) {
          throw error;
        }
        // One request's data cannot be booked: post the others one by one, report that one.
        for (const row of rows) {
          try {
            report.reposted += await post([row]);
          } catch (single) {
            if (!(single instanceof LedgerDataError) && (single as { code?: string }).code?.startsWith('2') !== true) {
              throw single;
            }
            unposted.push({ row, why: messageOf(single) });
          }
        }
      }
      // Still missing after posting: posting refused it (e.g. its settlement is booked by another request, which
      // posting raised as a settlement_reused alarm).
      const { rows: journals } = await pool.query<{ gateway_request_id: string; kind: string }>(JOURNALS_OF_SQL, [
        rows.map((r) => r.id),
      ]);
      const have = new Set(journals.map((j) => `${j.gateway_request_id}:${j.kind}`));
      for (const row of rows) {
        const known = unposted.find((u) => u.row === row);
        const first = row.outcome?.status === 'unpaid' ? 'loss' : 'payment';
        const missing = [`${row.id}:${first}`, ...(row.outcome?.status === 'refund_due' ? [`${row.id}:refund`] : [])]
          .filter((k) => !have.has(k))
          .map((k) => k.slice(k.lastIndexOf(':') + 1));
        if (!known && missing.length === 0) continue;
        const detail = known
          ? `cannot be posted: ${known.why}`
          : `${missing.join(' and ')} journal still missing after posting (see ledger_alarms: settlement_reused?)`;
        mismatch({ kind: 'unpostable', gateway_request_id: row.id, detail });
        await raiseAlarm(pool, 'unpostable', `${row.id}:payment`, null, null, { detail });
      }
    }
    if (report.reposted > 0) log.info({ reposted: report.reposted }, 'reconciliation posted missing journals');

    // --- 2. journals that disagree with their request -------------------------------------------------------------
    let afterJournal = '0';
    for (;;) {
      const { rows } = await pool.query<{
        journal_id: string;
        gateway_request_id: string;
        idempotency_key: string;
        journal_currency: string;
        journal_amount: string;
        journal_network: string | null;
        journal_tx: string | null;
        price_atomic: string | null;
        currency: string | null;
        paid_atomic: string | null;
        network: string | null;
        tx: string | null;
        amount_differs: boolean;
      }>(DIFFERING_SQL, [afterJournal]);
      if (rows.length === 0) break;
      afterJournal = rows[rows.length - 1]!.journal_id;
      for (const r of rows) {
        const posted = {
          currency: r.journal_currency,
          amount_atomic: r.journal_amount,
          network: r.journal_network,
          tx: r.journal_tx,
        };
        const received = {
          currency: r.currency,
          price_atomic: r.price_atomic,
          paid_atomic: r.paid_atomic,
          network: r.network,
          tx: r.tx,
        };
        const kind: MismatchKind = r.amount_differs ? 'journal_amount_mismatch' : 'journal_settlement_mismatch';
        const detail = r.amount_differs
          ? `journal ${r.journal_id} books ${r.journal_amount} ${r.journal_currency}; the request's price is ` +
            `${r.price_atomic} ${r.currency}, its payment ${r.paid_atomic ?? 'unknown'}`
          : `journal ${r.journal_id} books settlement ${r.journal_network}/${r.journal_tx}; the request settled ` +
            `${r.network}/${r.tx}`;
        mismatch({ kind, gateway_request_id: r.gateway_request_id, detail });
        await raiseAlarm(pool, kind, r.idempotency_key, r.journal_id, posted, received);
      }
    }

    // --- 3a. paid requests whose end never arrived ----------------------------------------------------------------
    const staleTotal = (await pool.query<{ n: number }>(STALE_COUNT_SQL, [options.staleSeconds])).rows[0]?.n ?? 0;
    const { rows: stale } = await pool.query<{ id: string; created_at: Date }>(STALE_SQL, [
      options.staleSeconds,
      maxReported,
    ]);
    for (const s of stale) {
      incomplete({
        kind: 'end_missing',
        gateway_request_id: s.id,
        detail: `paid request forwarded at ${s.created_at.toISOString()} has no completion event`,
      });
    }
    incompleteCount += staleTotal - stale.length;

    // --- 3b. consumed proofs whose request has no row (the start record was lost) ---------------------------------
    const match = `${keys.paymentUsed('')}*`;
    const scanCount = options.scanCount ?? 1000;
    const maxScanCalls = options.maxScanCalls ?? 1000;
    const staleBefore = Date.now() - options.staleSeconds * 1000;
    let cursor = options.scanCursor ?? '0';
    let calls = 0;
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', match, 'COUNT', scanCount);
      cursor = next;
      calls++;
      if (found.length === 0) continue;
      report.proofs_scanned += found.length;
      const values = await redis.mget(...found);
      const byRequest = new Map<string, string>();
      found.forEach((key, i) => {
        const id = values[i];
        // Recent ones may still wait in the stream; only the old enough are reported.
        if (!id || !isId('gatewayRequest', id)) return;
        const at = idTimeMs(id);
        if (at === null || at > staleBefore) return;
        byRequest.set(id, key.slice(match.length - 1));
      });
      if (byRequest.size === 0) continue;
      const { rows } = await pool.query<{ id: string }>('SELECT id FROM gateway_requests WHERE id = ANY ($1::text[])', [
        [...byRequest.keys()],
      ]);
      const present = new Set(rows.map((r) => r.id));
      // A request in a month the history retention dropped has no row, and none is expected (read after the rows, so
      // a month dropped meanwhile is known dropped here).
      const dropped = rows.length < byRequest.size ? await droppedRanges(pool) : null;
      for (const [id, proof] of byRequest) {
        if (present.has(id) || dropped?.has(id)) continue;
        incomplete({
          kind: 'start_missing',
          gateway_request_id: id,
          detail: `proof ${proof} was consumed for this request, which has no record`,
        });
      }
    } while (cursor !== '0' && calls < maxScanCalls);
    report.next_scan_cursor = cursor;

    // --- 4. on chain, where a rail is configured -----------------------------------------------------------------
    const payments = options.payments;
    const networks: string[] = [];
    let evm: { config: EvmRailConfig; client: PublicClient } | undefined;
    let solana: { config: SolanaRailConfig; rpc: ReturnType<typeof createSolanaRpc> } | undefined;
    if (payments?.evm) {
      evm = { config: payments.evm, client: payments.evmClient ?? evmClient(payments.evm) };
      networks.push(payments.evm.network);
    }
    if (payments?.solana) {
      solana = { config: payments.solana, rpc: payments.solanaRpc ?? createSolanaRpc(payments.solana.rpcUrl) };
      networks.push(payments.solana.network);
    }
    if (networks.length > 0) {
      const limit = options.maxOnchainChecks ?? 200;
      const { rows } = await pool.query<{
        journal_id: string;
        gateway_request_id: string;
        idempotency_key: string;
        network: string;
        tx: string;
        amount_atomic: string;
      }>(ONCHAIN_SQL, [networks, '0', limit]);
      for (const j of rows) {
        let verdict: Verdict;
        try {
          const amount = BigInt(j.amount_atomic);
          verdict =
            evm && j.network === evm.config.network
              ? await checkEvm(evm.client, evm.config, j.tx, amount)
              : await checkSolana(solana!.rpc, solana!.config, j.tx, amount);
        } catch (error) {
          log.warn({ journal_id: j.journal_id, err: messageOf(error) }, 'reconciliation: on-chain lookup failed');
          verdict = 'later';
        }
        if (verdict === 'later') {
          report.onchain_deferred++;
          continue;
        }
        report.onchain_checked++;
        await transaction(pool, async (client) => {
          const { rowCount } = await client.query(
            `INSERT INTO ledger_reconciliations (journal_id, ok, detail) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING`,
            [j.journal_id, verdict.ok, verdict.ok ? null : verdict.detail],
          );
          if (rowCount && !verdict.ok) {
            await raiseAlarm(
              client,
              'onchain_mismatch',
              j.idempotency_key,
              j.journal_id,
              { network: j.network, tx: j.tx, amount_atomic: j.amount_atomic },
              { detail: verdict.detail },
            );
          }
        });
      }
    }
    // Every journal found not paid on chain (by this run or an earlier one) stays in the report until handled.
    const { rows: failed } = await pool.query<{ gateway_request_id: string; detail: string | null }>(
      FAILED_ONCHAIN_SQL,
      [maxReported],
    );
    for (const f of failed) {
      mismatch({ kind: 'onchain_mismatch', gateway_request_id: f.gateway_request_id, detail: f.detail ?? 'not paid' });
    }
  } catch (error) {
    stats.failures++;
    stats.lastError = messageOf(error);
    throw error;
  }

  stats.runs++;
  stats.reposted += report.reposted;
  stats.mismatches += mismatchCount;
  stats.incomplete += incompleteCount;
  stats.lastRunAt = new Date(started).toISOString();
  stats.lastDurationMs = Date.now() - started;
  stats.lastError = null;
  stats.last = {
    checked: report.checked,
    reposted: report.reposted,
    mismatches: mismatchCount,
    incomplete: incompleteCount,
  };
  log.info(
    {
      checked: report.checked,
      reposted: report.reposted,
      mismatches: mismatchCount,
      incomplete: incompleteCount,
      onchain_checked: report.onchain_checked,
      onchain_deferred: report.onchain_deferred,
      proofs_scanned: report.proofs_scanned,
      duration_ms: stats.lastDurationMs,
    },
    'reconciliation finished',
  );
  return report;
};

// Any constant works; the same in every control plane so that only one reconciles at a time. It must differ from
// the other advisory locks (db.ts 7_312_004_117, config-publisher.ts 7_312_004_118, score/job.ts 7_312_009_001):
// they share one key space, and sharing the publisher's key made every config publish wait for a reconciliation run.
export const RECONCILE_LOCK = 7_312_004_119;

/**
 * One run at a time under the cluster-wide advisory lock; `runOnce` answers null (counted as skipped) when a run is
 * already going here or on another control plane.
 */
export type Reconciler = PeriodicJob<ReconcileReport>;

/** The periodic job: a run every `intervalMs` (the first after one interval); 0 disables the timer. */
export const startReconciler = (options: Omit<ReconcileOptions, 'scanCursor'> & { intervalMs: number }): Reconciler => {
  const { pool, log, intervalMs } = options;
  let scanCursor = '0';

  const runLocked = async (): Promise<ReconcileReport | null> => {
    const report = await withAdvisoryLock(pool, RECONCILE_LOCK, () => reconcile({ ...options, scanCursor }));
    if (report === null) {
      stats.skipped++;
      log.info({}, 'reconciliation skipped: another control plane is running it');
      return null;
    }
    scanCursor = report.next_scan_cursor;
    return report;
  };

  return startPeriodic({
    intervalMs,
    run: runLocked,
    onSkip: () => {
      stats.skipped++;
    },
    onError: (error) => log.error({ err: error }, 'reconciliation failed; retried at the next interval'),
  });
};
