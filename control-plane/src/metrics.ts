import {
  Counter,
  createMetricsRegistry,
  Gauge,
  Histogram,
  LATENCY_BUCKETS,
  processGuardMetric,
  type Registry,
  statusClass,
} from '@crochet/plugins';
import { EVENTS_GROUP, redisKeys } from '@crochet/protocol';
import type { App, Deps } from './app.js';
import type { EventsConsumer } from './events-consumer.js';
import { historyStats } from './history-partitions.js';
import { ledgerPostingStats } from './ledger/posting.js';
import { reconcileStats } from './ledger/reconcile.js';
import type { Transfers } from './payouts/transfers.js';
import { scoreStats } from './score/job.js';

/**
 * Every metric the control plane exports (DESIGN §4), in one place. Labels are bounded: route template (never the
 * raw URL), method, status class, posting kind. Never a key, agent, IP or request id.
 */
export const CONTROL_PLANE_METRIC_LABELS = {
  crochet_cp_http_requests_total: ['route', 'method', 'status_class'],
  crochet_cp_http_request_duration_seconds: ['route', 'method', 'status_class'],
  crochet_ledger_postings_total: ['kind'],
  crochet_events_consumer_lag: [],
  crochet_events_consumer_pending: [],
  crochet_events_dead_letters: [],
  crochet_events_processed_total: [],
  crochet_events_dead_lettered_total: [],
  crochet_reconcile_runs_total: [],
  crochet_reconcile_failures_total: [],
  crochet_reconcile_mismatches_total: [],
  crochet_reconcile_last_mismatches: [],
  crochet_score_runs_total: [],
  crochet_score_failures_total: [],
  crochet_score_last_run_seconds: [],
  crochet_score_verified_listings: [],
  crochet_history_runs_total: [],
  crochet_history_failures_total: [],
  crochet_history_dropped_partitions_total: [],
  crochet_history_held_months: [],
  crochet_transfers_confirmed_total: [],
  crochet_transfers_failed_total: [],
  crochet_transfers_errors_total: [],
  crochet_transfers_open: [],
  crochet_transfers_oldest_open_seconds: [],
  crochet_config_publishes_total: [],
  crochet_db_pool_connections: [],
  crochet_db_pool_idle_connections: [],
  crochet_db_pool_waiting_clients: [],
  crochet_process_unhandled_errors_total: ['kind'],
} as const satisfies Record<string, readonly string[]>;

type Name = keyof typeof CONTROL_PLANE_METRIC_LABELS;
const labels = <N extends Name>(name: N) =>
  CONTROL_PLANE_METRIC_LABELS[name] as unknown as (typeof CONTROL_PLANE_METRIC_LABELS)[N][number][];

/** Redis replies of XINFO GROUPS: flat [field, value, …] arrays. */
const field = (flat: unknown[], name: string): unknown => {
  for (let i = 0; i + 1 < flat.length; i += 2) if (flat[i] === name) return flat[i + 1];
  return undefined;
};

export const createControlPlaneMetrics = (deps: Pick<Deps, 'pool' | 'redis' | 'publisher' | 'config'>) => {
  const { pool, redis, publisher } = deps;
  const keys = redisKeys(deps.config.redisPrefix);
  const register: Registry = createMetricsRegistry();
  const registers = [register];
  /** Set once the consumer runs (it starts after the app is built). */
  let consumer: EventsConsumer | undefined;
  /** Likewise, the transfers job (payouts and refunds). */
  let transfers: Transfers | undefined;
  /** A counter mirroring a number kept elsewhere, read at scrape time. */
  const mirror = (name: Name, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  const gauge = (name: Name, help: string, read: () => number | Promise<number | undefined> | undefined) =>
    new Gauge({
      name,
      help,
      registers,
      async collect() {
        const value = await read();
        if (value !== undefined) this.set(value);
      },
    });

  const http = new Counter({
    name: 'crochet_cp_http_requests_total',
    help: 'Control plane HTTP requests by route template, method and status class.',
    labelNames: labels('crochet_cp_http_requests_total'),
    registers,
  });
  const httpDuration = new Histogram({
    name: 'crochet_cp_http_request_duration_seconds',
    help: 'Control plane HTTP latency by route template.',
    labelNames: labels('crochet_cp_http_request_duration_seconds'),
    buckets: LATENCY_BUCKETS,
    registers,
  });
  new Counter({
    name: 'crochet_ledger_postings_total',
    help: 'Ledger journals posted by this process, by kind (payment, refund).',
    labelNames: labels('crochet_ledger_postings_total'),
    registers,
    collect() {
      this.reset();
      for (const [kind, count] of Object.entries(ledgerPostingStats())) this.inc({ kind }, count);
    },
  });

  // One XINFO GROUPS per scrape gives both lag and pending.
  let groupInfo: Promise<{ lag: number; pending: number } | undefined> | undefined;
  const readGroup = () =>
    (groupInfo ??= (async () => {
      try {
        const groups = (await redis.xinfo('GROUPS', keys.events)) as unknown[][];
        const group = groups.find((g) => field(g, 'name') === EVENTS_GROUP);
        if (!group) return undefined;
        return { lag: Number(field(group, 'lag') ?? 0), pending: Number(field(group, 'pending') ?? 0) };
      } catch {
        return undefined;
      } finally {
        setImmediate(() => {
          groupInfo = undefined;
        });
      }
    })());
  gauge(
    'crochet_events_consumer_lag',
    'Gateway events not yet delivered to the consumer group.',
    async () => (await readGroup())?.lag,
  );
  gauge(
    'crochet_events_consumer_pending',
    'Gateway events delivered but not acknowledged.',
    async () => (await readGroup())?.pending,
  );
  gauge('crochet_events_dead_letters', 'Entries in the dead-letter stream.', () =>
    redis.xlen(keys.eventsDead).catch(() => undefined),
  );
  mirror('crochet_events_processed_total', 'Gateway events applied by this process.', () =>
    consumer ? consumer.stats().processed : 0,
  );
  mirror('crochet_events_dead_lettered_total', 'Gateway events this process moved to the dead-letter stream.', () =>
    consumer ? consumer.stats().deadLettered : 0,
  );
  mirror('crochet_reconcile_runs_total', 'Reconciliation runs in this process.', () => reconcileStats().runs);
  mirror('crochet_reconcile_failures_total', 'Reconciliation runs that failed.', () => reconcileStats().failures);
  mirror('crochet_reconcile_mismatches_total', 'Mismatches reconciliation found.', () => reconcileStats().mismatches);
  gauge(
    'crochet_reconcile_last_mismatches',
    'Mismatches found by the last reconciliation run.',
    () => reconcileStats().last?.mismatches ?? 0,
  );
  mirror('crochet_score_runs_total', 'Crochet Score runs in this process.', () => scoreStats().runs);
  mirror('crochet_score_failures_total', 'Crochet Score runs that failed.', () => scoreStats().failures);
  gauge('crochet_score_last_run_seconds', 'How long the last Crochet Score run took.', () => {
    const last = scoreStats().last;
    return last ? last.duration_ms / 1000 : undefined;
  });
  gauge(
    'crochet_score_verified_listings',
    'Listings verified by the last Crochet Score run.',
    () => scoreStats().last?.verified,
  );
  mirror('crochet_history_runs_total', 'History partition runs in this process.', () => historyStats().runs);
  mirror('crochet_history_failures_total', 'History partition runs that failed.', () => historyStats().failures);
  mirror(
    'crochet_history_dropped_partitions_total',
    'Months of gateway-request history dropped past CROCHET_HISTORY_RETENTION_DAYS.',
    () => historyStats().dropped,
  );
  gauge(
    'crochet_history_held_months',
    'Months past the retention the last history run kept because a money path still needs one of their rows.',
    () => historyStats().held,
  );
  mirror('crochet_transfers_confirmed_total', 'Payouts and refunds this process confirmed and booked.', () =>
    transfers ? transfers.stats.confirmed : 0,
  );
  mirror('crochet_transfers_failed_total', 'Payouts and refunds that failed (nothing sent).', () =>
    transfers ? transfers.stats.failed : 0,
  );
  mirror(
    'crochet_transfers_errors_total',
    'Times a transfer could not be advanced (chain RPC or treasury balance): retried at the next run.',
    () => (transfers ? transfers.stats.errors : 0),
  );
  // One query per scrape gives both: the open transfers and how long the oldest has waited.
  let openInfo: Promise<{ open: number; oldest: number } | undefined> | undefined;
  const readOpen = () =>
    (openInfo ??= (async () => {
      try {
        const { rows } = await pool.query<{ open: number; oldest: number | null }>(
          `SELECT count(*)::int AS open, extract(epoch FROM now() - min(created_at))::float8 AS oldest
             FROM money_transfers WHERE status IN ('pending', 'broadcast')`,
        );
        return { open: rows[0]!.open, oldest: rows[0]!.oldest ?? 0 };
      } catch {
        return undefined;
      } finally {
        setImmediate(() => {
          openInfo = undefined;
        });
      }
    })());
  gauge(
    'crochet_transfers_open',
    'Payouts and refunds waiting to be sent or to be final on chain.',
    async () => (await readOpen())?.open,
  );
  gauge(
    'crochet_transfers_oldest_open_seconds',
    'How long the oldest open payout or refund has waited (0 when none).',
    async () => (await readOpen())?.oldest,
  );
  mirror('crochet_config_publishes_total', 'Config versions this process published.', () => publisher.published);
  gauge('crochet_db_pool_connections', 'PostgreSQL pool: open connections.', () => pool.totalCount);
  gauge('crochet_db_pool_idle_connections', 'PostgreSQL pool: idle connections.', () => pool.idleCount);
  gauge(
    'crochet_db_pool_waiting_clients',
    'PostgreSQL pool: queries waiting for a connection.',
    () => pool.waitingCount,
  );

  processGuardMetric(registers);

  return {
    register,
    setConsumer: (c: EventsConsumer) => {
      consumer = c;
    },
    setTransfers: (t: Transfers) => {
      transfers = t;
    },
    /** HTTP RED by route template (`routeOptions.url`, never the raw URL). Served apart: `startMetricsListener`. */
    install: (app: App) => {
      app.addHook('onResponse', async (request, reply) => {
        const route = request.routeOptions.url ?? 'unmatched';
        const l = { route, method: request.method, status_class: statusClass(reply.statusCode) };
        http.inc(l);
        httpDuration.observe(l, reply.elapsedTime / 1000);
      });
    },
  };
};

export type ControlPlaneMetrics = ReturnType<typeof createControlPlaneMetrics>;
