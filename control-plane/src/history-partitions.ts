import { ID_PREFIX, TRANSIENT_STATES, ulid } from '@crochet/protocol';
import { type Pool, type PoolClient, transaction, withAdvisoryLock, withStatementTimeout } from './db.js';
import { BOOKABLE_SQL, FIRST_JOURNAL_SQL } from './ledger/posting.js';
import { type PeriodicJob, startPeriodic } from './periodic.js';
import { SCORE } from './score/formula.js';

/**
 * Gateway-request history by month (migration 020: gateway_requests is partitioned by RANGE (id), one partition per
 * UTC month, plus a DEFAULT one). The history job, on one control plane at a time (an advisory lock), at start and
 * every CROCHET_HISTORY_INTERVAL_SECONDS:
 *
 * 1. adds the partitions of this month and the next MONTHS_AHEAD months that are missing, so an insert never waits
 *    for the job to run at a month's boundary (and one that comes anyway lands in the DEFAULT partition, whose rows
 *    of that month move into the new partition when it is added);
 * 2. with CROCHET_HISTORY_RETENTION_DAYS set (> 0), drops each month that ended before now − retention — unless a
 *    money path still needs one of its rows (`heldSql`): a request still in flight, a bookable one whose journals
 *    are not all posted, one whose refund is booked and not yet confirmed sent, or one whose end says money moved
 *    while its start never arrived. Such a month is kept, and the report names the row; the next run looks again.
 *    A dropped month's id range is recorded (gateway_requests_dropped) for the events consumer and reconciliation. The ledger is never touched: journals keep their
 *    gateway_request_id as text (no foreign key) forever, and reviews outlive the calls they are about.
 *
 * DDL waits for its locks at most LOCK_TIMEOUT_MS: a month that cannot be added or dropped now (a long reader in the
 * way) is left for the next run rather than queueing every insert behind it. Rows in the DEFAULT partition whose
 * month has no partition move into it when it is added; those no month will ever hold (ids that are not ULIDs) stay
 * there, outside the retention.
 */

/** Months after the current one whose partitions always exist. */
export const MONTHS_AHEAD = 2;
/** The DEFAULT partition (ids outside every month's range). */
export const DEFAULT_PARTITION = 'gateway_requests_default';
// Any constant works; the same in every control plane, and distinct from the other advisory locks (reconcile.ts).
export const HISTORY_LOCK = 7_312_004_121;
// Short enough that an insert queued behind our lock request waits little, and shorter than deadlock_timeout (1 s
// by default), so that this job, not the events consumer, is the one that gives up.
const LOCK_TIMEOUT_MS = 500;
/** Checking a month for held rows reads the whole month. */
const CHECK_TIMEOUT_MS = 300_000;
const DAY_MS = 86_400_000;

export const DROPPED_RANGES_SQL = 'SELECT from_id, to_id FROM gateway_requests_dropped';
/** The id ranges of the months retention dropped (gateway_requests_dropped), read in a transaction of the caller's. */
export const droppedRanges = async (client: Pick<PoolClient, 'query'>): Promise<DroppedRanges> =>
  new DroppedRanges((await client.query<{ from_id: string; to_id: string }>(DROPPED_RANGES_SQL)).rows);

export class DroppedRanges {
  constructor(private readonly ranges: readonly { from_id: string; to_id: string }[]) {}
  /** True when the request `id` was in a month retention dropped. */
  has(id: string): boolean {
    return this.ranges.some((r) => id >= r.from_id && id < r.to_id);
  }
  get empty(): boolean {
    return this.ranges.length === 0;
  }
}

/** The partition bound of a time: `gr_` and the ULID time part of its millisecond (the SQL gateway_request_id_bound). */
export const partitionBound = (timeMs: number): string => `${ID_PREFIX.gatewayRequest}_${ulid(timeMs).slice(0, 10)}`;

/** The start (UTC) of the month `timeMs` falls in, moved by `months`. */
export const monthStartMs = (timeMs: number, months = 0): number => {
  const at = new Date(timeMs);
  return Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + months, 1);
};

/** The partition of the month starting at `startMs`: gateway_requests_pYYYY_MM. */
export const partitionName = (startMs: number): string => {
  const at = new Date(startMs);
  return `gateway_requests_p${at.getUTCFullYear()}_${String(at.getUTCMonth() + 1).padStart(2, '0')}`;
};

/**
 * The shortest retention allowed, in days: the history every reader of gateway_requests needs — the Crochet Score's
 * window (SCORE.windowDays, 90), reconciliation's staleness limit (a paid request with no end is reported once it is
 * this old), the payment acceptance window (a proof's request is looked up while the proof can be presented), and
 * today's spend per buyer (epoch.ts, one UTC day).
 */
export const minimumRetentionDays = (windows: { reconcileStaleSeconds: number; acceptWindowSeconds: number }): number =>
  Math.max(
    SCORE.windowDays,
    Math.ceil(windows.reconcileStaleSeconds / 86_400),
    Math.ceil(windows.acceptWindowSeconds / 86_400),
    1,
  );

export interface HistoryLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface HistoryOptions {
  pool: Pool;
  /** CROCHET_HISTORY_RETENTION_DAYS; 0 keeps everything. */
  retentionDays: number;
  log: HistoryLog;
  /** Tests: the time to maintain for (default: the database's clock). */
  nowMs?: number;
}

export interface HeldMonth {
  partition: string;
  /**
   * `open`: still forwarded; `unposted`: bookable with a journal missing; `refund_unsent`: refund not yet sent;
   * `unbooked`: its end says money moved (or was lost) but its start never arrived, so it cannot be booked.
   */
  reason: 'open' | 'unposted' | 'refund_unsent' | 'unbooked';
  gateway_request_id: string;
}

export interface HistoryReport {
  created: string[];
  dropped: string[];
  /** Months past the retention kept because a money path still needs a row of theirs. */
  held: HeldMonth[];
  /** Partitions whose change had to wait for a lock; tried again at the next run. */
  deferred: string[];
}

interface Partition {
  name: string;
  from: string;
  to: string;
}

const PARTITIONS_SQL = `
  SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
   WHERE i.inhparent = 'gateway_requests'::regclass`;
const RANGE = /^FOR VALUES FROM \('([^']*)'\) TO \('([^']*)'\)$/;

const partitions = async (pool: Pool): Promise<Partition[]> => {
  const { rows } = await pool.query<{ name: string; bound: string }>(PARTITIONS_SQL);
  return rows.flatMap((r) => {
    const range = RANGE.exec(r.bound);
    return range ? [{ name: r.name, from: range[1]!, to: range[2]! }] : [];
  });
};

const TRANSIENT_SQL = TRANSIENT_STATES.map((s) => `'${s}'`).join(', ');
const REFUND_DUE = `g.payment -> 'outcome' ->> 'status' = 'refund_due'`;
/** The request's journal of `kind` (an SQL expression) exists. */
const journal = (kind: string): string =>
  `SELECT 1 FROM ledger_journals j WHERE j.idempotency_key = g.id || ':' || ${kind}`;

/**
 * The first row of a month (`g`) that a money path still reads: in flight (the end may still come and be booked);
 * bookable with its first journal or its refund journal not posted (posting and reconciliation read the row); with
 * a refund journal and no confirmed refund transfer (the transfers job reads the payer from the row); or whose end
 * says the payment settled, is due a refund or was lost while its start (who paid whom) never arrived — not
 * bookable, and the only record of that money.
 */
const heldSql = (partition: string): string => `
  SELECT id, reason FROM (
    SELECT g.id,
           CASE WHEN g.status IN (${TRANSIENT_SQL}) THEN 'open'
                WHEN ${BOOKABLE_SQL}
                     AND (NOT EXISTS (${journal(FIRST_JOURNAL_SQL)})
                          OR (${REFUND_DUE} AND NOT EXISTS (${journal("'refund'")}))) THEN 'unposted'
                WHEN ${REFUND_DUE} AND EXISTS (${journal("'refund'")})
                     AND NOT EXISTS (SELECT 1 FROM money_transfers t
                                      WHERE t.gateway_request_id = g.id AND t.status = 'confirmed') THEN 'refund_unsent'
                WHEN g.payment -> 'outcome' ->> 'status' IN ('settled', 'refund_due', 'unpaid')
                     AND g.buyer_id IS NULL THEN 'unbooked'
           END AS reason
      FROM ${partition} g) held
   WHERE reason IS NOT NULL
   ORDER BY id
   LIMIT 1`;

const isLockTimeout = (error: unknown): boolean => (error as { code?: string })?.code === '55P03';

/** Adds the month [from, to) as `name`, moving its rows out of the DEFAULT partition first. */
const createPartition = (pool: Pool, name: string, from: string, to: string): Promise<void> =>
  transaction(pool, async (client) => {
    await client.query(`SET LOCAL lock_timeout = ${LOCK_TIMEOUT_MS}`);
    // Taken first (ATTACH needs it anyway, to scan it): a row of the month inserted between the move and the ATTACH
    // would make the ATTACH fail.
    await client.query(`LOCK TABLE ${DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE`);
    const table = client.escapeIdentifier(name);
    await client.query(`CREATE TABLE ${table} (LIKE gateway_requests INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`);
    // Empty unless ids of that month came before it had a partition (the job stopped for months, say): then a move
    // and a scan of the whole DEFAULT partition, given the time a long check gets, not an ordinary statement's.
    const query = await withStatementTimeout(client, CHECK_TIMEOUT_MS);
    await query(
      `WITH moved AS (DELETE FROM ${DEFAULT_PARTITION} WHERE id >= $1 AND id < $2 RETURNING *)
       INSERT INTO ${table} SELECT * FROM moved`,
      [from, to],
    );
    // ATTACH locks the parent SHARE UPDATE EXCLUSIVE (inserts and reads go on), unlike CREATE TABLE … PARTITION OF.
    await query(
      `ALTER TABLE gateway_requests ATTACH PARTITION ${table}
         FOR VALUES FROM (${client.escapeLiteral(from)}) TO (${client.escapeLiteral(to)})`,
    );
  });

/** The first held row of the month `table` (an escaped identifier), read within the check's time. */
const heldRow = async (client: PoolClient, table: string): Promise<Omit<HeldMonth, 'partition'> | null> => {
  const query = await withStatementTimeout(client, CHECK_TIMEOUT_MS);
  const { rows } = await query<{ id: string; reason: HeldMonth['reason'] }>(heldSql(table));
  return rows[0] ? { reason: rows[0].reason, gateway_request_id: rows[0].id } : null;
};

/**
 * Drops the month `name` unless a row of it is held; returns the held row. The month is read once without a lock
 * (a held month, the usual case for one kept, blocks nobody); only when nothing in it was held is it locked SHARE
 * (its rows cannot change; writes to other months go on) and checked again before the DROP, which locks the parent
 * ACCESS EXCLUSIVE for a moment (DETACH … CONCURRENTLY would not, but PostgreSQL refuses it while a DEFAULT partition
 * exists): hence the short lock timeout. The month's id range is recorded as dropped in the same transaction.
 */
const dropPartition = async (pool: Pool, p: Partition): Promise<Omit<HeldMonth, 'partition'> | null> => {
  const held = await transaction(pool, (client) => heldRow(client, client.escapeIdentifier(p.name)));
  if (held) return held;
  return transaction(pool, async (client: PoolClient) => {
    await client.query(`SET LOCAL lock_timeout = ${LOCK_TIMEOUT_MS}`);
    const table = client.escapeIdentifier(p.name);
    await client.query(`LOCK TABLE ${table} IN SHARE MODE`);
    const still = await heldRow(client, table);
    if (still) return still;
    await client.query(`DROP TABLE ${table}`);
    await client.query(
      'INSERT INTO gateway_requests_dropped (from_id, to_id) VALUES ($1, $2) ON CONFLICT (from_id) DO NOTHING',
      [p.from, p.to],
    );
    return null;
  });
};

/** One maintenance pass (the caller holds HISTORY_LOCK); see the module comment. */
export const maintainHistory = async (options: HistoryOptions): Promise<HistoryReport> => {
  const { pool, retentionDays, log } = options;
  const report: HistoryReport = { created: [], dropped: [], held: [], deferred: [] };
  const nowMs =
    options.nowMs ??
    Number((await pool.query<{ ms: string }>('SELECT (extract(epoch FROM now()) * 1000)::bigint AS ms')).rows[0]!.ms);
  let existing = await partitions(pool);

  for (let months = 0; months <= MONTHS_AHEAD; months++) {
    const start = monthStartMs(nowMs, months);
    const from = partitionBound(start);
    const to = partitionBound(monthStartMs(start, 1));
    // A month some partition already covers, even in part, is left as it is.
    if (existing.some((p) => p.from < to && from < p.to)) continue;
    const name = partitionName(start);
    try {
      await createPartition(pool, name, from, to);
      report.created.push(name);
      existing = [...existing, { name, from, to }];
    } catch (error) {
      if (!isLockTimeout(error)) throw error;
      report.deferred.push(name);
    }
  }

  if (retentionDays > 0) {
    const cutoff = partitionBound(nowMs - retentionDays * DAY_MS);
    const expired = existing.filter((p) => p.to <= cutoff).sort((a, b) => (a.from < b.from ? -1 : 1));
    for (const p of expired) {
      try {
        const held = await dropPartition(pool, p);
        if (held) report.held.push({ partition: p.name, ...held });
        else report.dropped.push(p.name);
      } catch (error) {
        if (!isLockTimeout(error)) throw error;
        report.deferred.push(p.name);
      }
    }
  }

  // PostgreSQL never analyzes a partitioned table by itself: the parent's statistics (what plans over all months
  // start from) would stay as the migration left them. Only when the months changed (PostgreSQL 15 analyzes every
  // partition with it), within the check's time; a failure costs the statistics, not this run's report.
  if (report.created.length > 0 || report.dropped.length > 0) {
    log.info({ created: report.created, dropped: report.dropped }, 'history partitions maintained');
    await transaction(pool, async (client) => {
      const query = await withStatementTimeout(client, CHECK_TIMEOUT_MS);
      await query('ANALYZE gateway_requests');
    }).catch((error: unknown) =>
      log.warn({ err: error }, 'gateway_requests not analyzed; tried again at the next change'),
    );
  }
  for (const held of report.held) {
    log.warn({ ...held }, 'history month past the retention kept: a money path still needs one of its rows');
  }
  if (report.deferred.length > 0) {
    log.warn({ deferred: report.deferred }, 'history partitions left for the next run: a lock was not free');
  }
  return report;
};

export interface HistoryStats {
  runs: number;
  skipped: number;
  failures: number;
  dropped: number;
  /** Months past the retention held at the last run. */
  held: number;
}

const stats: HistoryStats = { runs: 0, skipped: 0, failures: 0, dropped: 0, held: 0 };

/** This process's history runs, for the metrics. */
export const historyStats = (): HistoryStats => ({ ...stats });

/** One run at a time here and across control planes; null when another run holds the lock. */
export type HistoryJob = PeriodicJob<HistoryReport>;

/** The periodic job: a run every `intervalMs` (the first after one interval; start() runs one at once); 0: on demand. */
export const startHistoryJob = (options: Omit<HistoryOptions, 'nowMs'> & { intervalMs: number }): HistoryJob => {
  const { pool, log, intervalMs } = options;
  return startPeriodic({
    intervalMs,
    run: async () => {
      try {
        const report = await withAdvisoryLock(pool, HISTORY_LOCK, () => maintainHistory(options));
        if (report === null) {
          stats.skipped++;
          return null;
        }
        stats.runs++;
        stats.dropped += report.dropped.length;
        stats.held = report.held.length;
        return report;
      } catch (error) {
        stats.failures++;
        throw error;
      }
    },
    onSkip: () => {
      stats.skipped++;
    },
    onError: (error) => log.error({ err: error }, 'history maintenance failed; retried at the next interval'),
  });
};
