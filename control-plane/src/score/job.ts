import { ID_PREFIX, ulid } from '@crochet/protocol';
import { type Pool, transaction, withStatementTimeout } from '../db.js';
import { type PeriodicJob, startPeriodic } from '../periodic.js';
import { type ListingScore, SCORE, type ScoreInputs, scoreListing, scoreSeller } from './formula.js';

/**
 * The score job (DESIGN §3.6): aggregates the gateway history of the last SCORE.windowDays and every review in SQL,
 * scores each listing with formula.ts, and writes listings.crochet_score / verified (what sort=score and the
 * checkmark read), listing_scores (the components) and seller_scores. Runs every CROCHET_SCORE_INTERVAL_SECONDS on
 * one control plane at a time (an advisory lock), and on demand (`runOnce`, `npx tsx control-plane/src/score/main.ts`).
 */

export interface ScoreLog {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface ScoreReport {
  listings: number;
  verified: number;
  sellers: number;
  computed_at: Date;
  duration_ms: number;
}

export interface ScoreStats {
  runs: number;
  failures: number;
  /** Runs skipped because a run was already going (here or on another control plane). */
  skipped: number;
  last: ScoreReport | null;
}

// Any constant works as long as every control plane uses the same one (db.ts and reconcile.ts hold the others).
const SCORE_LOCK = 7_312_009_001;
/** The aggregation reads up to the whole window of history: more than the pool's default statement timeout. */
const STATEMENT_TIMEOUT_MS = 300_000;

const stats: ScoreStats = { runs: 0, failures: 0, skipped: 0, last: null };

/** This process's score runs, for the metrics. */
export const scoreStats = (): ScoreStats => ({ ...stats, last: stats.last ? { ...stats.last } : null });

/**
 * Per listing: its paid calls judged success or failure (formula.ts ScoreInputs says which), their p95 seller
 * latency, paid calls per buyer, buyers with a success, and each reviewer's mean rating. Gateway request ids are
 * ULIDs, so the window is an id range ($1 is the id prefix of its first millisecond) and reads the primary key.
 */
const AGGREGATES_SQL = `
  WITH calls AS (
    SELECT g.listing_id, g.buyer_id, g.upstream_latency_ms,
           CASE WHEN g.status = 'completed' AND g.http_status BETWEEN 200 AND 299
                  THEN CASE WHEN g.payment -> 'outcome' ->> 'status' = 'settled' THEN 'success' END
                WHEN g.status = 'completed' AND g.http_status < 500 AND g.http_status NOT IN (408, 429) THEN NULL
                ELSE 'failure' END AS verdict
      FROM gateway_requests g
     WHERE g.id >= $1
       AND g.status IN ('completed', 'upstream_error')
       AND g.price_atomic > 0 AND g.payment ? 'rail'
       AND g.buyer_id IS NOT NULL AND g.buyer_id IS DISTINCT FROM g.seller_id
  ),
  judged AS (SELECT * FROM calls WHERE verdict IS NOT NULL),
  totals AS (
    SELECT listing_id, count(*) AS paid_calls, count(*) FILTER (WHERE verdict = 'success') AS successes,
           percentile_disc(0.95) WITHIN GROUP (ORDER BY upstream_latency_ms) AS p95_latency_ms,
           count(DISTINCT buyer_id) FILTER (WHERE verdict = 'success') AS distinct_buyers
      FROM judged GROUP BY listing_id
  ),
  buyers AS (
    SELECT listing_id, array_agg(calls ORDER BY calls DESC) AS paid_calls_by_buyer
      FROM (SELECT listing_id, buyer_id, count(*)::int AS calls FROM judged GROUP BY listing_id, buyer_id) b
     GROUP BY listing_id
  ),
  ratings AS (
    SELECT listing_id, array_agg(mean ORDER BY reviewer_id) AS ratings_by_reviewer
      FROM (SELECT listing_id, reviewer_id, avg(rating)::float8 AS mean FROM reviews GROUP BY listing_id, reviewer_id) r
     GROUP BY listing_id
  )
  SELECT l.id, l.seller_id, l.status,
         coalesce(t.paid_calls, 0)::int AS paid_calls, coalesce(t.successes, 0)::int AS successes,
         t.p95_latency_ms, coalesce(t.distinct_buyers, 0)::int AS distinct_buyers,
         coalesce(b.paid_calls_by_buyer, '{}') AS paid_calls_by_buyer,
         coalesce(r.ratings_by_reviewer, '{}') AS ratings_by_reviewer
    FROM listings l
    LEFT JOIN totals t ON t.listing_id = l.id
    LEFT JOIN buyers b ON b.listing_id = l.id
    LEFT JOIN ratings r ON r.listing_id = l.id
   ORDER BY l.id`;

interface AggregateRow {
  id: string;
  seller_id: string;
  status: string;
  paid_calls: number;
  successes: number;
  p95_latency_ms: number | null;
  distinct_buyers: number;
  paid_calls_by_buyer: number[];
  ratings_by_reviewer: number[];
}

const LISTING_SCORES_SQL = `
  INSERT INTO listing_scores (listing_id, score, components, computed_at)
  SELECT s.id, s.score, s.components, $4 FROM unnest($1::text[], $2::int[], $3::jsonb[]) AS s (id, score, components)
  ON CONFLICT (listing_id) DO UPDATE
    SET score = EXCLUDED.score, components = EXCLUDED.components, computed_at = EXCLUDED.computed_at`;

// updated_at is left alone: it says when the seller changed the listing, and a new score is not that.
const LISTINGS_SQL = `
  UPDATE listings l SET crochet_score = s.score, verified = s.verified
    FROM unnest($1::text[], $2::int[], $3::boolean[]) AS s (id, score, verified)
   WHERE l.id = s.id AND (l.crochet_score IS DISTINCT FROM s.score OR l.verified <> s.verified)`;

const SELLER_SCORES_SQL = `
  INSERT INTO seller_scores (seller_id, score, paid_calls, listings, computed_at)
  SELECT s.id, s.score, s.paid_calls, s.listings, $5
    FROM unnest($1::text[], $2::int[], $3::bigint[], $4::int[]) AS s (id, score, paid_calls, listings)
  ON CONFLICT (seller_id) DO UPDATE
    SET score = EXCLUDED.score, paid_calls = EXCLUDED.paid_calls, listings = EXCLUDED.listings,
        computed_at = EXCLUDED.computed_at`;

/** The id prefix of the first gateway request in the window: `gr_` and the ULID time part of its start. */
export const windowStartId = (nowMs: number): string =>
  `${ID_PREFIX.gatewayRequest}_${ulid(nowMs - SCORE.windowDays * 86_400_000).slice(0, 10)}`;

const inputsOf = (row: AggregateRow): ScoreInputs => ({
  paidCalls: row.paid_calls,
  successes: row.successes,
  p95LatencyMs: row.p95_latency_ms,
  paidCallsByBuyer: row.paid_calls_by_buyer,
  distinctBuyers: row.distinct_buyers,
  ratingsByReviewer: row.ratings_by_reviewer,
});

/**
 * One computation of every score, in one transaction under the advisory lock; null when another control plane holds
 * the lock, or when scores were computed less than `freshForMs` ago (several control planes share one schedule:
 * whichever comes first computes, the others skip). Listings created meanwhile keep a null score until the next run.
 */
export const computeScores = (pool: Pool, freshForMs = 0): Promise<ScoreReport | null> =>
  transaction(pool, async (client) => {
    const started = performance.now();
    const locked = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock($1) AS locked', [
      SCORE_LOCK,
    ]);
    if (!locked.rows[0]!.locked) return null;
    if (freshForMs > 0) {
      const { rows: recent } = await client.query(
        "SELECT 1 FROM listing_scores WHERE computed_at > now() - $1 * interval '1 millisecond' LIMIT 1",
        [freshForMs],
      );
      if (recent.length > 0) return null;
    }
    const query = await withStatementTimeout(client, STATEMENT_TIMEOUT_MS);
    const { rows: clock } = await query<{ now: Date }>('SELECT now() AS now');
    const computedAt = clock[0]!.now;
    const { rows } = await query<AggregateRow>(AGGREGATES_SQL, [windowStartId(computedAt.getTime())]);

    const scores: ListingScore[] = rows.map((row) => scoreListing(inputsOf(row)));
    await query(LISTING_SCORES_SQL, [
      rows.map((r) => r.id),
      scores.map((s) => s.value),
      scores.map((s) => JSON.stringify(s.components)),
      computedAt,
    ]);
    await query(LISTINGS_SQL, [rows.map((r) => r.id), scores.map((s) => s.value), scores.map((s) => s.verified)]);

    const bySeller = new Map<string, { score: number; paidCalls: number; archived: boolean }[]>();
    for (const [i, row] of rows.entries()) {
      const list = bySeller.get(row.seller_id) ?? [];
      list.push({ score: scores[i]!.value, paidCalls: row.paid_calls, archived: row.status === 'archived' });
      bySeller.set(row.seller_id, list);
    }
    const sellers = [...bySeller]
      .map(([id, listings]) => ({ id, score: scoreSeller(listings), listings }))
      .filter((s): s is typeof s & { score: number } => s.score !== null);
    await query(SELLER_SCORES_SQL, [
      sellers.map((s) => s.id),
      sellers.map((s) => s.score),
      sellers.map((s) => s.listings.reduce((total, l) => total + l.paidCalls, 0)),
      sellers.map((s) => s.listings.length),
      computedAt,
    ]);
    return {
      listings: rows.length,
      verified: scores.filter((s) => s.verified).length,
      sellers: sellers.length,
      computed_at: computedAt,
      duration_ms: Math.round(performance.now() - started),
    };
  });

/** The periodic job (one run at a time here; null when skipped here or because another control plane ran it). */
export type ScoreJob = PeriodicJob<ScoreReport>;

/** The periodic job: a run every `intervalMs` (the first after one interval); 0 disables the timer. */
export const startScoreJob = (options: { pool: Pool; intervalMs: number; log: ScoreLog }): ScoreJob => {
  const { pool, intervalMs, log } = options;
  return startPeriodic({
    intervalMs,
    // A scheduled run counts any control plane's run within most of an interval: K control planes compute once.
    run: (scheduled) =>
      computeScores(pool, scheduled ? intervalMs * 0.9 : 0).then(
        (report) => {
          if (report === null) {
            stats.skipped++;
            log.info({}, 'score run skipped: another control plane is computing or has just computed scores');
          } else {
            stats.runs++;
            stats.last = report;
            log.info({ ...report }, 'scores computed');
          }
          return report;
        },
        (error: unknown) => {
          stats.failures++;
          throw error;
        },
      ),
    onSkip: () => {
      stats.skipped++;
    },
    onError: (error) => log.error({ err: error }, 'score run failed; retried at the next interval'),
  });
};
