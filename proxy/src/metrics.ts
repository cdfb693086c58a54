import {
  Counter,
  createMetricsRegistry,
  Gauge,
  Histogram,
  HotCounter,
  HotHistogram,
  LATENCY_BUCKETS,
  processGuardMetric,
  type Registry,
} from '@crochet/plugins';
import { ERRORS, type ErrorCode } from '@crochet/protocol';

/**
 * Every metric the proxy exports (DESIGN §4), in one place. Labels are bounded: listing id, method, status class,
 * outcome, step, rail, kind, direction, command. Never a key, agent, IP or request id.
 */

/** Every label name any proxy metric uses (a test checks that none has unbounded cardinality). */
export const PROXY_METRIC_LABELS = {
  crochet_gateway_requests_total: ['listing', 'method', 'status_class', 'outcome'],
  crochet_gateway_request_duration_seconds: ['listing', 'method', 'status_class', 'outcome'],
  crochet_gateway_upstream_duration_seconds: ['listing'],
  crochet_gateway_proxy_added_seconds: [],
  crochet_gateway_step_duration_seconds: ['step'],
  crochet_gateway_errors_total: ['code', 'status'],
  crochet_payment_verifications_total: ['rail', 'outcome'],
  crochet_payment_verification_duration_seconds: ['rail', 'outcome'],
  crochet_upstream_errors_total: ['kind'],
  crochet_gateway_bytes_total: ['direction'],
  crochet_redis_command_duration_seconds: ['command'],
  crochet_redis_errors_total: ['command'],
  crochet_redis_up: [],
  crochet_config_version: [],
  crochet_config_age_seconds: [],
  crochet_config_last_apply_timestamp_seconds: [],
  crochet_config_rejected_entries: [],
  crochet_open_streams: [],
  crochet_payment_ambiguous_total: ['command'],
  crochet_events_outbox: ['queue'],
  crochet_events_dropped_total: [],
  crochet_events_forgotten_total: [],
  crochet_events_write_failures_total: [],
  crochet_redis_epoch_restoring: [],
  crochet_redis_epoch_changes_total: [],
  crochet_process_unhandled_errors_total: ['kind'],
} as const satisfies Record<string, readonly string[]>;

type Labels<N extends keyof typeof PROXY_METRIC_LABELS> = (typeof PROXY_METRIC_LABELS)[N][number];
const labels = <N extends keyof typeof PROXY_METRIC_LABELS>(name: N) =>
  PROXY_METRIC_LABELS[name] as unknown as Labels<N>[];

/** What a gateway call came to (the `outcome` label). */
export type GatewayOutcome = 'forwarded' | 'payment_required' | 'denied' | 'upstream_error' | 'client_aborted';
export type UpstreamErrorKind = 'timeout' | 'reset' | 'refused' | 'ssrf_blocked' | 'other';
export type VerificationOutcome = 'verified' | 'pending' | 'timeout' | 'rejected' | 'error';

const UPSTREAM_ERROR_KINDS: readonly UpstreamErrorKind[] = ['timeout', 'reset', 'refused', 'ssrf_blocked', 'other'];
/**
 * Codes the dashboards and alerts (grafana/) watch, exported at 0 from the start: a series that first appears at 1
 * loses that first call to rate(), and a panel of a code that never happened would show "no data" instead of 0.
 */
const WATCHED_ERROR_CODES: readonly ErrorCode[] = [
  'PAYMENT_REQUIRED',
  'PAYMENT_PENDING',
  'PAYMENT_UNCONFIRMED',
  'PAYMENT_VERIFIER_UNAVAILABLE',
  'PAYMENT_ALREADY_USED',
  'PAYMENT_SETTLEMENT_FAILED',
  'PAYMENT_RAILS_UNAVAILABLE',
  'SPEND_CAP_EXCEEDED',
  'RATE_LIMITED',
  'STATE_UNAVAILABLE',
  'UPSTREAM_TIMEOUT',
  'UPSTREAM_UNAVAILABLE',
  'UPSTREAM_FORBIDDEN',
];

/** The config store's fields the gauges read at scrape time. */
export interface ConfigSource {
  version: number;
  appliedAtMs: number;
  rejected: number;
}

/** The outbox's and the Redis state's fields the gauges read at scrape time. */
export interface DurabilitySource {
  outbox: { unsent: number; uncommitted: number; dropped: number; forgotten: number; failedWrites: number };
  state: { restoring: boolean; changes: number };
}

export const createProxyMetrics = (
  store?: ConfigSource,
  redis?: { readonly status: string },
  durability?: DurabilitySource,
) => {
  const register: Registry = createMetricsRegistry();
  const registers = [register];
  const m = {
    register,
    requests: new HotCounter({
      name: 'crochet_gateway_requests_total',
      help: 'Gateway calls by listing, method, status class and outcome.',
      labelNames: labels('crochet_gateway_requests_total'),
      registers,
    }),
    requestDuration: new HotHistogram({
      name: 'crochet_gateway_request_duration_seconds',
      help: 'Total latency of a gateway call, arrival to last byte.',
      labelNames: labels('crochet_gateway_request_duration_seconds'),
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    upstreamDuration: new HotHistogram({
      name: 'crochet_gateway_upstream_duration_seconds',
      help: 'Seller latency: forward to response headers.',
      labelNames: labels('crochet_gateway_upstream_duration_seconds'),
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    proxyAdded: new HotHistogram({
      name: 'crochet_gateway_proxy_added_seconds',
      help: 'Latency the gateway added: from arrival to the forward (the exchange with the seller is not counted).',
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    stepDuration: new HotHistogram({
      name: 'crochet_gateway_step_duration_seconds',
      help: 'Time per pipeline step (resolve, authenticate, admit, settle, read_body, sign, upstream_headers).',
      labelNames: labels('crochet_gateway_step_duration_seconds'),
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    errors: new Counter({
      name: 'crochet_gateway_errors_total',
      help: 'Gateway answers with a registry error code (402, 409, 429 rates and the rest).',
      labelNames: labels('crochet_gateway_errors_total'),
      registers,
    }),
    verifications: new Counter({
      name: 'crochet_payment_verifications_total',
      help: 'Payment proofs verified with a rail, by outcome.',
      labelNames: labels('crochet_payment_verifications_total'),
      registers,
    }),
    verificationDuration: new Histogram({
      name: 'crochet_payment_verification_duration_seconds',
      help: 'Time a rail took to verify a proof.',
      labelNames: labels('crochet_payment_verification_duration_seconds'),
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    upstreamErrors: new Counter({
      name: 'crochet_upstream_errors_total',
      help: 'Failed forwards to sellers by kind.',
      labelNames: labels('crochet_upstream_errors_total'),
      registers,
    }),
    bytes: new HotCounter({
      name: 'crochet_gateway_bytes_total',
      help: 'Body bytes through the gateway: in (buyer to seller) and out (seller to buyer).',
      labelNames: labels('crochet_gateway_bytes_total'),
      registers,
    }),
    redisDuration: new HotHistogram({
      name: 'crochet_redis_command_duration_seconds',
      help: 'Latency of the hot-path Redis calls (admission scripts).',
      labelNames: labels('crochet_redis_command_duration_seconds'),
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    redisErrors: new Counter({
      name: 'crochet_redis_errors_total',
      help: 'Hot-path Redis calls that failed.',
      labelNames: labels('crochet_redis_errors_total'),
      registers,
    }),
    openStreams: new Gauge({
      name: 'crochet_open_streams',
      help: 'Seller responses being streamed to buyers now.',
      registers,
    }),
    paymentAmbiguous: new Counter({
      name: 'crochet_payment_ambiguous_total',
      help: 'Payment state changes in Redis whose outcome was unknown (timeout, dropped connection) and was resolved.',
      labelNames: labels('crochet_payment_ambiguous_total'),
      registers,
    }),
  };
  processGuardMetric(registers);
  for (const kind of UPSTREAM_ERROR_KINDS) m.upstreamErrors.inc({ kind }, 0);
  for (const direction of ['in', 'out']) m.bytes.inc({ direction }, 0);
  for (const code of WATCHED_ERROR_CODES) m.errors.inc({ code, status: String(ERRORS[code].status) }, 0);
  if (redis) {
    new Gauge({
      name: 'crochet_redis_up',
      help: 'Whether the hot-path Redis connection is ready (1) or not (0).',
      registers,
      collect() {
        this.set(redis.status === 'ready' ? 1 : 0);
      },
    });
  }
  /** A counter that follows a count the source keeps itself. */
  const counterOf = (o: { name: string; help: string; read: () => number }) => {
    let seen = 0;
    return new Counter({
      name: o.name,
      help: o.help,
      registers,
      collect() {
        const now = o.read();
        if (now > seen) this.inc(now - seen);
        seen = now;
      },
    });
  };
  if (durability) {
    const { outbox, state } = durability;
    new Gauge({
      name: 'crochet_events_outbox',
      help: 'Gateway events the proxy holds: unsent (not in Redis yet) and uncommitted (in the stream, not yet in PostgreSQL).',
      labelNames: labels('crochet_events_outbox'),
      registers,
      collect() {
        this.set({ queue: 'unsent' }, outbox.unsent);
        this.set({ queue: 'uncommitted' }, outbox.uncommitted);
      },
    });
    counterOf({
      name: 'crochet_events_dropped_total',
      help: 'Unsent gateway events dropped because the outbox was full (reconciliation reports what they left).',
      read: () => outbox.dropped,
    });
    counterOf({
      name: 'crochet_events_forgotten_total',
      help: 'Sent gateway events forgotten before their commit because the outbox was full.',
      read: () => outbox.forgotten,
    });
    counterOf({
      name: 'crochet_events_write_failures_total',
      help: 'Writes of gateway events to Redis that failed (retried on a backoff timer).',
      read: () => outbox.failedWrites,
    });
    new Gauge({
      name: 'crochet_redis_epoch_restoring',
      help: '1 while Redis is on an epoch this proxy has not adopted (paid calls wait), else 0.',
      registers,
      collect() {
        this.set(state.restoring ? 1 : 0);
      },
    });
    counterOf({
      name: 'crochet_redis_epoch_changes_total',
      help: 'Redis epoch changes (a Redis that lost its data) this proxy has lived through.',
      read: () => state.changes,
    });
  }
  if (store) {
    new Gauge({
      name: 'crochet_config_version',
      help: 'Version of the published config in memory (0: not loaded).',
      registers,
      collect() {
        this.set(store.version);
      },
    });
    new Gauge({
      name: 'crochet_config_age_seconds',
      help: 'Seconds since the config in memory was last loaded or changed.',
      registers,
      collect() {
        this.set(store.appliedAtMs > 0 ? (Date.now() - store.appliedAtMs) / 1000 : -1);
      },
    });
    new Gauge({
      name: 'crochet_config_last_apply_timestamp_seconds',
      help: 'Unix time of the last config load or applied change.',
      registers,
      collect() {
        this.set(store.appliedAtMs / 1000);
      },
    });
    new Gauge({
      name: 'crochet_config_rejected_entries',
      help: 'Config entries refused by validation since start.',
      registers,
      collect() {
        this.set(store.rejected);
      },
    });
  }
  return m;
};

export type ProxyMetrics = ReturnType<typeof createProxyMetrics>;

/** Times an async Redis call under `command`; a throw counts as an error and is rethrown. */
export const timedRedis = <A extends unknown[], R>(
  metrics: ProxyMetrics,
  command: string,
  call: (...args: A) => Promise<R>,
) => {
  const labels = { command };
  metrics.redisErrors.inc(labels, 0);
  const duration = metrics.redisDuration.series(labels);
  return async (...args: A): Promise<R> => {
    const startedAt = performance.now();
    try {
      return await call(...args);
    } catch (error) {
      metrics.redisErrors.inc(labels);
      throw error;
    } finally {
      duration.observe((performance.now() - startedAt) / 1000);
    }
  };
};

const TIMEOUT_CODES = new Set([
  'FST_REPLY_FROM_GATEWAY_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'ETIMEDOUT',
]);

/** The `kind` of a failed forward, from the error and its causes. */
export const upstreamErrorKind = (error: unknown, ssrfBlocked: boolean): UpstreamErrorKind => {
  if (ssrfBlocked) return 'ssrf_blocked';
  for (let e = error as { code?: string; cause?: unknown } | undefined, depth = 0; e && depth < 5; depth++) {
    const code = e.code ?? '';
    if (TIMEOUT_CODES.has(code)) return 'timeout';
    if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') return 'reset';
    if (code === 'ECONNREFUSED') return 'refused';
    e = e.cause as typeof e;
  }
  return 'other';
};
