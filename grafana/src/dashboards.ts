/**
 * The four Crochet dashboards as data: each panel's queries, unit and size, in the order it appears. `npm run
 * dashboards:build` turns them into the Grafana JSON model in grafana/dashboards/ (what Grafana provisions); the
 * dashboards test keeps those files in step with this module and runs every query against a real Prometheus.
 *
 * Metric names come from proxy/src/metrics.ts and control-plane/src/metrics.ts. Queries use Grafana's variables:
 * `$instance` and `$listing` (regexes, `.*` for All), `$__rate_interval` and `$__range`.
 */

export type PanelType = 'timeseries' | 'stat' | 'table' | 'bargauge';

export interface TargetSpec {
  expr: string;
  /** Legend (timeseries) or column name (table). */
  legend: string;
}

export interface PanelSpec {
  title: string;
  description: string;
  type: PanelType;
  /** A Grafana unit id: reqps, percentunit, s, bytes, Bps, short. */
  unit: string;
  targets: TargetSpec[];
  /** Width in Grafana's 24 grid columns. */
  width: number;
  height?: number;
  /** Table columns after the first target: their units, by legend. */
  columnUnits?: Record<string, string>;
  /** Stat thresholds: the value from which the panel turns orange, then red. */
  thresholds?: [number, number];
  decimals?: number;
}

export interface RowSpec {
  row: string;
  panels: PanelSpec[];
}

export interface VariableSpec {
  name: 'instance' | 'listing';
  label: string;
  /** A `label_values(…)` query. */
  query: string;
}

export interface DashboardSpec {
  /** File name under grafana/dashboards/ and of the rendered image (docs/images/dashboard-<name>.png). */
  name: string;
  uid: string;
  title: string;
  description: string;
  variables: VariableSpec[];
  rows: RowSpec[];
}

// --- query building blocks ----------------------------------------------------------------------------------------

const I = 'instance=~"$instance"';
const L = 'listing=~"$listing"';
const W = '[$__rate_interval]';

const m = (metric: string, ...matchers: string[]) => `${metric}{${matchers.join(', ')}}`;
const rate = (selector: string) => `rate(${selector}${W})`;
const sumRate = (selector: string, by: string[] = []) =>
  `sum${by.length ? ` by (${by.join(', ')})` : ''} (${rate(selector)})`;
/** A quantile of a histogram over the rate window, kept apart by `by`. */
const quantile = (q: number, bucket: string, by: string[] = []) =>
  `histogram_quantile(${q}, sum by (${['le', ...by].join(', ')}) (${rate(bucket)}))`;
/** part / whole, 0 (not absent) where `part` has no series but `whole` has: tables then show 0, not a gap. */
const ratio = (part: string, whole: string, by: string[] = []) => {
  const b = by.length ? ` by (${by.join(', ')})` : '';
  return `(sum${b} (${rate(part)}) or sum${b} (${rate(whole)}) * 0) / sum${b} (${rate(whole)})`;
};

const requests = (...matchers: string[]) => m('crochet_gateway_requests_total', I, L, ...matchers);
const duration = m('crochet_gateway_request_duration_seconds_bucket', I, L);
const upstream = m('crochet_gateway_upstream_duration_seconds_bucket', I, L);
const proxyAdded = m('crochet_gateway_proxy_added_seconds_bucket', I);
const errors = (...matchers: string[]) => m('crochet_gateway_errors_total', I, ...matchers);
const verifications = (...matchers: string[]) => m('crochet_payment_verifications_total', I, ...matchers);
const cpRequests = (...matchers: string[]) => m('crochet_cp_http_requests_total', I, ...matchers);

const instanceVar = (query: string): VariableSpec => ({ name: 'instance', label: 'Instance', query });
const listingVar = (query: string): VariableSpec => ({ name: 'listing', label: 'Listing', query });
const PROXY_INSTANCES = instanceVar('label_values(crochet_config_version, instance)');
const LISTINGS = listingVar(`label_values(crochet_gateway_requests_total{${I}}, listing)`);

const panel = (
  type: PanelType,
  title: string,
  unit: string,
  width: number,
  description: string,
  targets: [expr: string, legend: string][],
  extra: Partial<PanelSpec> = {},
): PanelSpec => ({
  type,
  title,
  unit,
  width,
  description,
  targets: targets.map(([expr, legend]) => ({ expr, legend })),
  ...extra,
});

// --- Gateway overview ---------------------------------------------------------------------------------------------

const gateway: DashboardSpec = {
  name: 'gateway',
  uid: 'crochet-gateway',
  title: 'Crochet / Gateway overview',
  description: 'Gateway calls on the proxies: rate, errors, duration; where the time goes; per listing.',
  variables: [PROXY_INSTANCES, LISTINGS],
  rows: [
    {
      row: 'Rate, errors, duration',
      panels: [
        panel('stat', 'Requests', 'reqps', 6, 'Gateway calls per second, every outcome.', [
          [sumRate(requests()), 'calls/s'],
        ]),
        panel(
          'stat',
          '5xx ratio',
          'percentunit',
          6,
          'Share of calls answered 5xx: ours (STATE_UNAVAILABLE, …), failed forwards and sellers’ own 5xx.',
          [[ratio(requests('status_class="5xx"'), requests()), '5xx']],
          { thresholds: [0.01, 0.05] },
        ),
        panel(
          'stat',
          '4xx ratio',
          'percentunit',
          6,
          'Share of calls answered 4xx: unpaid (402), bad keys, limits, replays.',
          [[ratio(requests('status_class="4xx"'), requests()), '4xx']],
        ),
        panel('stat', 'p99 duration', 's', 6, 'Arrival to last byte, 99th percentile.', [
          [quantile(0.99, duration), 'p99'],
        ]),
        panel(
          'timeseries',
          'Requests by outcome',
          'reqps',
          12,
          'forwarded, payment_required, denied, upstream_error.',
          [[sumRate(requests(), ['outcome']), '{{outcome}}']],
        ),
        panel('timeseries', 'Requests by status class', 'reqps', 12, 'What buyers were answered.', [
          [sumRate(requests(), ['status_class']), '{{status_class}}'],
        ]),
        panel('timeseries', 'Error ratio', 'percentunit', 12, '5xx and 4xx answers as a share of all calls.', [
          [ratio(requests('status_class="5xx"'), requests()), '5xx'],
          [ratio(requests('status_class="4xx"'), requests()), '4xx'],
        ]),
        panel('timeseries', 'Duration p50 / p95 / p99', 's', 12, 'Total duration, arrival to last byte.', [
          [quantile(0.5, duration), 'p50'],
          [quantile(0.95, duration), 'p95'],
          [quantile(0.99, duration), 'p99'],
        ]),
      ],
    },
    {
      row: 'Latency split: total = proxy-added + upstream',
      panels: [
        panel(
          'timeseries',
          'p99: total, proxy-added, upstream',
          's',
          12,
          'As Kong splits it: upstream is forward to the seller’s response headers; proxy-added is arrival to forward (auth, payment, limits, body, signing). The exchange with the seller, a streamed body included, is not gateway time. "Pipeline steps" breaks proxy-added down.',
          [
            [quantile(0.99, duration), 'total'],
            [quantile(0.99, proxyAdded), 'proxy-added'],
            [quantile(0.99, upstream), 'upstream'],
          ],
        ),
        panel('timeseries', 'p50: total, proxy-added, upstream', 's', 12, 'The same split at the median.', [
          [quantile(0.5, duration), 'total'],
          [quantile(0.5, proxyAdded), 'proxy-added'],
          [quantile(0.5, upstream), 'upstream'],
        ]),
      ],
    },
    {
      row: 'Per listing',
      panels: [
        panel(
          'table',
          'Listings',
          'reqps',
          24,
          'Rate, error ratios and p99 per listing over the rate window ("unknown": ids not in the config).',
          [
            [sumRate(requests(), ['listing']), 'calls/s'],
            [ratio(requests('status_class="5xx"'), requests(), ['listing']), '5xx ratio'],
            [ratio(requests('status_class="4xx"'), requests(), ['listing']), '4xx ratio'],
            [quantile(0.99, duration, ['listing']), 'p99'],
          ],
          { columnUnits: { '5xx ratio': 'percentunit', '4xx ratio': 'percentunit', p99: 's' }, height: 8 },
        ),
        panel('timeseries', 'Requests by listing', 'reqps', 12, 'Calls per second per listing.', [
          [sumRate(requests(), ['listing']), '{{listing}}'],
        ]),
        panel('timeseries', 'p99 by listing', 's', 12, 'Total duration per listing, 99th percentile.', [
          [quantile(0.99, duration, ['listing']), '{{listing}}'],
        ]),
      ],
    },
    {
      row: 'Pipeline steps',
      panels: [
        panel(
          'timeseries',
          'Mean time per step',
          's',
          12,
          'resolve → authenticate → admit (payment and limits) → settle → read_body → sign → upstream_headers.',
          [
            [
              `sum by (step) (${rate(m('crochet_gateway_step_duration_seconds_sum', I))}) / sum by (step) (${rate(m('crochet_gateway_step_duration_seconds_count', I))})`,
              '{{step}}',
            ],
          ],
        ),
        panel('timeseries', 'p99 time per step', 's', 12, 'Which step the slow calls spend their time in.', [
          [quantile(0.99, m('crochet_gateway_step_duration_seconds_bucket', I), ['step']), '{{step}}'],
        ]),
        panel('timeseries', 'Gateway errors by code', 'reqps', 24, 'Answers carrying a registry error code.', [
          [sumRate(errors(), ['code', 'status']), '{{status}} {{code}}'],
        ]),
      ],
    },
    {
      row: 'Proxy processes',
      panels: [
        panel('timeseries', 'Event loop lag p99', 's', 8, 'Node event loop delay per proxy.', [
          [m('nodejs_eventloop_lag_p99_seconds', 'job="crochet-proxy"', I), '{{instance}}'],
        ]),
        panel('timeseries', 'Heap used', 'bytes', 8, 'V8 heap in use per proxy.', [
          [m('nodejs_heap_size_used_bytes', 'job="crochet-proxy"', I), '{{instance}}'],
        ]),
        panel('timeseries', 'CPU', 'percentunit', 8, 'CPU time per second (1 = one core) per proxy.', [
          [rate(m('process_cpu_seconds_total', 'job="crochet-proxy"', I)), '{{instance}}'],
        ]),
      ],
    },
  ],
};

// --- Payments -----------------------------------------------------------------------------------------------------

const required = requests('outcome="payment_required"');
const verified = verifications('outcome="verified"');
/** A paid call passes `settle` once its payment is admitted and settled, just before it is forwarded. */
const paidForwarded = m('crochet_gateway_step_duration_seconds_count', I, 'step="settle"');
/** Answers that tell the buyer to retry with the same proof (the last one a 503: the rail's verifier failed). */
const PENDING_CODES = 'PAYMENT_PENDING|PAYMENT_UNCONFIRMED|PAYMENT_VERIFIER_UNAVAILABLE';

const payments: DashboardSpec = {
  name: 'payments',
  uid: 'crochet-payments',
  title: 'Crochet / Payments',
  description:
    'The 402 flow: payment required → proof verified → paid call forwarded; rails, pending, replays, limits.',
  variables: [
    PROXY_INSTANCES,
    listingVar(`label_values(crochet_gateway_requests_total{${I}, outcome="payment_required"}, listing)`),
  ],
  rows: [
    {
      row: '402 funnel',
      panels: [
        panel(
          'bargauge',
          'Funnel over the time range',
          'short',
          8,
          'Calls answered 402 → proofs a rail verified → paid calls settled and forwarded (the last two are not per listing).',
          [
            [`sum(increase(${required}[$__range]))`, '402 payment required'],
            [`sum(increase(${verified}[$__range]))`, 'proof verified'],
            [`sum(increase(${paidForwarded}[$__range]))`, 'paid and forwarded'],
          ],
          { decimals: 0, height: 8 },
        ),
        panel('timeseries', 'Funnel rate', 'reqps', 10, 'The funnel per second.', [
          [`sum(${rate(required)})`, '402 payment required'],
          [`sum(${rate(verified)})`, 'proof verified'],
          [`sum(${rate(paidForwarded)})`, 'paid and forwarded'],
        ]),
        panel(
          'stat',
          'Paid calls per 402',
          'percentunit',
          6,
          'Paid calls forwarded per call answered 402 over the range: how many asked-to-pay buyers paid.',
          [[`sum(increase(${paidForwarded}[$__range])) / sum(increase(${required}[$__range]))`, 'conversion']],
        ),
      ],
    },
    {
      row: 'Rails',
      panels: [
        panel(
          'timeseries',
          'Verifications by rail and outcome',
          'reqps',
          12,
          'verified, rejected, pending, timeout, error.',
          [[sumRate(verifications(), ['rail', 'outcome']), '{{rail}} {{outcome}}']],
        ),
        panel(
          'timeseries',
          'Verification latency p95 by rail',
          's',
          12,
          'Time a rail took to answer (chain RPC, Relay).',
          [[quantile(0.95, m('crochet_payment_verification_duration_seconds_bucket', I), ['rail']), '{{rail}}']],
        ),
        panel(
          'timeseries',
          'Pending',
          'reqps',
          12,
          'Proofs not final yet or not checkable now (a chain RPC or Relay failing: the buyer retries with the same proof), and verifications that outlasted the deadline.',
          [
            [sumRate(errors(`code=~"${PENDING_CODES}"`), ['code']), '{{code}}'],
            [sumRate(verifications('outcome=~"pending|timeout"'), ['rail', 'outcome']), '{{rail}} {{outcome}}'],
          ],
        ),
        panel(
          'timeseries',
          'Refused proofs by code',
          'reqps',
          12,
          'Proofs a rail refused: underpaid, wrong memo, wrong recipient, spend caps, …',
          [[sumRate(errors('status="402"', `code!~"PAYMENT_REQUIRED|${PENDING_CODES}"`), ['code']), '{{code}}']],
        ),
      ],
    },
    {
      row: 'Replays, limits, failures',
      panels: [
        panel(
          'timeseries',
          'Replays: 409 PAYMENT_ALREADY_USED',
          'reqps',
          8,
          'A proof presented again after it paid for a call.',
          [[sumRate(errors('code="PAYMENT_ALREADY_USED"')), 'replays']],
        ),
        panel('timeseries', '429 rate limited', 'reqps', 8, 'Calls refused by per-key or per-listing limits.', [
          [sumRate(errors('status="429"'), ['code']), '{{code}}'],
        ]),
        panel(
          'timeseries',
          'Payment failures on our side',
          'reqps',
          8,
          'Settlement failures, no rail configured, Redis unreachable (paid calls fail closed).',
          [
            [
              sumRate(errors('code=~"PAYMENT_SETTLEMENT_FAILED|PAYMENT_RAILS_UNAVAILABLE|STATE_UNAVAILABLE"'), [
                'code',
              ]),
              '{{code}}',
            ],
          ],
        ),
        panel(
          'timeseries',
          'Paid listings: calls by outcome',
          'reqps',
          24,
          'Calls to the selected listings among those that answered 402 (free listings are left out even under All).',
          [
            [
              `sum by (outcome) (${rate(requests())} and on (instance, listing) count by (instance, listing) (${m('crochet_gateway_requests_total', 'outcome="payment_required"')}))`,
              '{{outcome}}',
            ],
          ],
        ),
      ],
    },
  ],
};

// --- Sellers / upstreams ------------------------------------------------------------------------------------------

const upstreams: DashboardSpec = {
  name: 'upstreams',
  uid: 'crochet-upstreams',
  title: 'Crochet / Sellers and upstreams',
  description: 'Forwards to sellers: failures by kind, seller latency, bytes and open streams.',
  variables: [PROXY_INSTANCES, LISTINGS],
  rows: [
    {
      row: 'Failures',
      panels: [
        panel(
          'timeseries',
          'Upstream errors by kind',
          'reqps',
          12,
          'Failed forwards: timeout, reset, refused, ssrf_blocked (a seller endpoint resolving to a private address), other.',
          [[sumRate(m('crochet_upstream_errors_total', I), ['kind']), '{{kind}}']],
        ),
        panel(
          'timeseries',
          'Upstream error codes',
          'reqps',
          12,
          'What buyers were told: 504 timeout, 502 unavailable.',
          [[sumRate(errors('code=~"UPSTREAM_.*"'), ['code', 'status']), '{{status}} {{code}}']],
        ),
        panel('timeseries', 'Failed forwards by listing', 'reqps', 12, 'Calls that reached no seller answer.', [
          [sumRate(requests('outcome="upstream_error"'), ['listing']), '{{listing}}'],
        ]),
        panel('timeseries', 'Seller 5xx by listing', 'reqps', 12, 'Sellers that answered, with a 5xx.', [
          [sumRate(requests('outcome="forwarded"', 'status_class="5xx"'), ['listing']), '{{listing}}'],
        ]),
      ],
    },
    {
      row: 'Seller latency',
      panels: [
        panel('timeseries', 'Upstream p99 by listing', 's', 12, 'Forward to the seller’s response headers.', [
          [quantile(0.99, upstream, ['listing']), '{{listing}}'],
        ]),
        panel('timeseries', 'Upstream p50 by listing', 's', 12, 'The median seller.', [
          [quantile(0.5, upstream, ['listing']), '{{listing}}'],
        ]),
        panel(
          'table',
          'Sellers',
          'reqps',
          24,
          'Per listing: calls forwarded, share that failed to reach the seller, seller 5xx share, seller p50 and p99.',
          [
            [sumRate(requests(), ['listing']), 'calls/s'],
            [ratio(requests('outcome="upstream_error"'), requests(), ['listing']), 'failed forwards'],
            [ratio(requests('outcome="forwarded"', 'status_class="5xx"'), requests(), ['listing']), 'seller 5xx'],
            [quantile(0.5, upstream, ['listing']), 'upstream p50'],
            [quantile(0.99, upstream, ['listing']), 'upstream p99'],
          ],
          {
            columnUnits: {
              'failed forwards': 'percentunit',
              'seller 5xx': 'percentunit',
              'upstream p50': 's',
              'upstream p99': 's',
            },
            height: 8,
          },
        ),
      ],
    },
    {
      row: 'Traffic',
      panels: [
        panel('timeseries', 'Bytes in / out', 'Bps', 12, 'in: buyer to seller bodies; out: seller to buyer.', [
          [sumRate(m('crochet_gateway_bytes_total', I), ['direction']), '{{direction}}'],
        ]),
        panel('timeseries', 'Open streams', 'short', 12, 'Seller answers streaming to buyers now, per proxy.', [
          [`sum by (instance) (${m('crochet_open_streams', I)})`, '{{instance}}'],
        ]),
      ],
    },
  ],
};

// --- Control plane & ledger ---------------------------------------------------------------------------------------

const cpDuration = m('crochet_cp_http_request_duration_seconds_bucket', I);
const redisErrors = m('crochet_redis_errors_total', I);

const controlPlane: DashboardSpec = {
  name: 'control-plane',
  uid: 'crochet-control-plane',
  title: 'Crochet / Control plane and ledger',
  description: 'Control plane HTTP, the events consumer and ledger, reconciliation, config propagation, stores.',
  variables: [instanceVar('label_values(up{job=~"crochet-.*"}, instance)')],
  rows: [
    {
      row: 'HTTP',
      panels: [
        panel('timeseries', 'Requests by route', 'reqps', 12, 'By route template, never the raw URL.', [
          [sumRate(cpRequests(), ['method', 'route']), '{{method}} {{route}}'],
        ]),
        panel('timeseries', 'Errors by route', 'reqps', 12, '4xx and 5xx answers by route template.', [
          [
            sumRate(cpRequests('status_class=~"4xx|5xx"'), ['method', 'route', 'status_class']),
            '{{status_class}} {{method}} {{route}}',
          ],
        ]),
        panel('timeseries', 'p99 by route', 's', 12, 'Control plane latency, 99th percentile.', [
          [quantile(0.99, cpDuration, ['route']), '{{route}}'],
        ]),
        panel(
          'table',
          'Routes',
          'reqps',
          12,
          'Rate, 5xx ratio and p99 per route template.',
          [
            [sumRate(cpRequests(), ['route']), 'req/s'],
            [ratio(cpRequests('status_class="5xx"'), cpRequests(), ['route']), '5xx ratio'],
            [quantile(0.99, cpDuration, ['route']), 'p99'],
          ],
          { columnUnits: { '5xx ratio': 'percentunit', p99: 's' } },
        ),
      ],
    },
    {
      row: 'Events and ledger',
      panels: [
        panel('timeseries', 'Ledger postings', 'ops', 8, 'Journals posted per second, by kind.', [
          [sumRate(m('crochet_ledger_postings_total', I), ['kind']), '{{kind}}'],
        ]),
        panel(
          'timeseries',
          'Events consumer lag and pending',
          'short',
          8,
          'Gateway events not yet delivered to the consumer group (lag) and delivered but not acknowledged (pending).',
          [
            [`max(${m('crochet_events_consumer_lag', I)})`, 'lag'],
            [`max(${m('crochet_events_consumer_pending', I)})`, 'pending'],
          ],
        ),
        panel(
          'stat',
          'Dead letters',
          'short',
          4,
          'Entries in the dead-letter stream: each needs a look.',
          [[`max(${m('crochet_events_dead_letters', I)})`, 'dead letters']],
          { thresholds: [1, 1], decimals: 0 },
        ),
        panel(
          'stat',
          'Reconciliation mismatches',
          'short',
          4,
          'Mismatches found by the last reconciliation run.',
          [[`max(${m('crochet_reconcile_last_mismatches', I)})`, 'mismatches']],
          { thresholds: [1, 1], decimals: 0 },
        ),
        panel('timeseries', 'Events processed and dead-lettered', 'ops', 8, 'The consumer’s throughput.', [
          [sumRate(m('crochet_events_processed_total', I)), 'processed'],
          [sumRate(m('crochet_events_dead_lettered_total', I)), 'dead-lettered'],
        ]),
        panel('timeseries', 'Reconciliation', 'short', 8, 'Runs, failed runs and mismatches found, per rate window.', [
          [`sum(increase(${m('crochet_reconcile_runs_total', I)}${W}))`, 'runs'],
          [`sum(increase(${m('crochet_reconcile_failures_total', I)}${W}))`, 'failures'],
          [`sum(increase(${m('crochet_reconcile_mismatches_total', I)}${W}))`, 'mismatches'],
        ]),
        panel('timeseries', 'Config publishes', 'short', 8, 'Config versions the control plane published.', [
          [`sum(increase(${m('crochet_config_publishes_total', I)}${W}))`, 'publishes'],
        ]),
      ],
    },
    {
      row: 'Money out',
      panels: [
        panel(
          'timeseries',
          'Payouts and refunds sent',
          'short',
          12,
          'Payouts and refunds confirmed on chain and booked, failed (nothing sent), and times one could not be ' +
            'advanced (chain RPC, treasury balance: retried at the next run), per rate window.',
          [
            [`sum(increase(${m('crochet_transfers_confirmed_total', I)}${W}))`, 'confirmed'],
            [`sum(increase(${m('crochet_transfers_failed_total', I)}${W}))`, 'failed'],
            [`sum(increase(${m('crochet_transfers_errors_total', I)}${W}))`, 'not advanced'],
          ],
        ),
        panel(
          'timeseries',
          'Open transfers',
          'short',
          6,
          'Payouts and refunds waiting to be sent or to be final on chain.',
          [[`max(${m('crochet_transfers_open', I)})`, 'open']],
          { decimals: 0 },
        ),
        panel(
          'stat',
          'Oldest open transfer',
          's',
          6,
          'How long the oldest open payout or refund has waited; past 10 minutes CrochetTransfersStuck fires.',
          [[`max(${m('crochet_transfers_oldest_open_seconds', I)})`, 'oldest']],
          { thresholds: [120, 600] },
        ),
      ],
    },
    {
      row: 'Config on the proxies',
      panels: [
        panel(
          'timeseries',
          'Config version per proxy',
          'short',
          10,
          'Every proxy should be on the same version.',
          [[m('crochet_config_version', I), '{{instance}}']],
          { decimals: 0 },
        ),
        panel(
          'timeseries',
          'Config age per proxy',
          's',
          10,
          'Seconds since the proxy last loaded or applied a change (grows while nothing changes).',
          [[m('crochet_config_age_seconds', I), '{{instance}}']],
        ),
        panel(
          'stat',
          'Rejected config entries',
          'short',
          4,
          'Entries proxies refused at validation since start.',
          [[`sum(${m('crochet_config_rejected_entries', I)})`, 'rejected']],
          { thresholds: [1, 1], decimals: 0 },
        ),
      ],
    },
    {
      row: 'Stores',
      panels: [
        panel('timeseries', 'PostgreSQL pool', 'short', 8, 'Control plane pool: open, idle, queries waiting.', [
          [`sum(${m('crochet_db_pool_connections', I)})`, 'open'],
          [`sum(${m('crochet_db_pool_idle_connections', I)})`, 'idle'],
          [`sum(${m('crochet_db_pool_waiting_clients', I)})`, 'waiting'],
        ]),
        panel('timeseries', 'Redis command p99 (proxies)', 's', 8, 'Hot-path admission scripts.', [
          [quantile(0.99, m('crochet_redis_command_duration_seconds_bucket', I), ['command']), '{{command}}'],
        ]),
        panel(
          'timeseries',
          'Redis errors and connection',
          'short',
          8,
          'Failed hot-path Redis calls per second, and the lowest "connection ready" (1) over the proxies.',
          [
            [sumRate(redisErrors, ['command']), 'errors/s {{command}}'],
            [`min(${m('crochet_redis_up', I)})`, 'up (min over proxies)'],
          ],
        ),
        panel('timeseries', 'Control plane event loop lag p99', 's', 12, 'Node event loop delay.', [
          [m('nodejs_eventloop_lag_p99_seconds', 'job="crochet-control-plane"', I), '{{instance}}'],
        ]),
        panel('timeseries', 'Control plane heap used', 'bytes', 12, 'V8 heap in use.', [
          [m('nodejs_heap_size_used_bytes', 'job="crochet-control-plane"', I), '{{instance}}'],
        ]),
      ],
    },
  ],
};

export const DASHBOARDS: readonly DashboardSpec[] = [gateway, payments, upstreams, controlPlane];

// --- the Grafana JSON model ---------------------------------------------------------------------------------------

const DATASOURCE = { type: 'prometheus', uid: 'prometheus' } as const;
const PANEL_HEIGHT = 8;
const STAT_HEIGHT = 4;
const COLUMNS = 24;

const thresholds = (spec: PanelSpec) => ({
  mode: 'absolute',
  steps: [
    { color: 'green', value: null },
    ...(spec.thresholds
      ? [
          { color: 'orange', value: spec.thresholds[0] },
          { color: 'red', value: spec.thresholds[1] },
        ]
      : []),
  ],
});

const refId = (index: number) => String.fromCharCode(65 + index);

const targets = (spec: PanelSpec) =>
  spec.targets.map((t, index) => {
    const instant = spec.type !== 'timeseries';
    return {
      refId: refId(index),
      datasource: DATASOURCE,
      expr: t.expr,
      legendFormat: spec.type === 'table' ? '__auto' : t.legend,
      range: !instant,
      instant,
      ...(spec.type === 'table' ? { format: 'table' } : {}),
    };
  });

const options = (spec: PanelSpec): Record<string, unknown> => {
  const reduce = { calcs: ['lastNotNull'], fields: '', values: false };
  switch (spec.type) {
    case 'timeseries':
      return {
        legend: { displayMode: 'list', placement: 'bottom', showLegend: true, calcs: [] },
        tooltip: { mode: 'multi', sort: 'desc' },
      };
    case 'stat':
      return {
        reduceOptions: reduce,
        colorMode: 'value',
        graphMode: 'area',
        justifyMode: 'auto',
        textMode: 'auto',
        orientation: 'auto',
      };
    case 'bargauge':
      return {
        reduceOptions: reduce,
        orientation: 'horizontal',
        displayMode: 'gradient',
        showUnfilled: true,
        valueMode: 'color',
        namePlacement: 'top',
      };
    case 'table':
      return { showHeader: true, cellHeight: 'sm', footer: { show: false, reducer: ['sum'], fields: '' } };
  }
};

const fieldConfig = (spec: PanelSpec) => {
  const defaults: Record<string, unknown> = {
    unit: spec.unit,
    color: { mode: spec.type === 'timeseries' ? 'palette-classic' : 'thresholds' },
    thresholds: thresholds(spec),
    ...(spec.decimals === undefined ? {} : { decimals: spec.decimals }),
  };
  if (spec.type === 'timeseries') {
    defaults['custom'] = {
      drawStyle: 'line',
      lineWidth: 1,
      fillOpacity: 10,
      showPoints: 'never',
      spanNulls: false,
      axisSoftMin: 0,
    };
  }
  // Table columns get their unit by the name the organize step gives them.
  const overrides =
    spec.type === 'table'
      ? spec.targets.map((t) => ({
          matcher: { id: 'byName', options: t.legend },
          properties: [{ id: 'unit', value: spec.columnUnits?.[t.legend] ?? spec.unit }],
        }))
      : [];
  return { defaults, overrides };
};

const transformations = (spec: PanelSpec) =>
  spec.type === 'table'
    ? [
        { id: 'merge', options: {} },
        {
          id: 'organize',
          options: {
            excludeByName: { Time: true },
            renameByName: Object.fromEntries(spec.targets.map((t, i) => [`Value #${refId(i)}`, t.legend])),
            indexByName: {},
          },
        },
        { id: 'sortBy', options: { sort: [{ field: spec.targets[0]!.legend, desc: true }] } },
      ]
    : [];

const variable = (v: VariableSpec) => ({
  name: v.name,
  label: v.label,
  type: 'query',
  datasource: DATASOURCE,
  definition: v.query,
  query: { query: v.query, refId: 'PrometheusVariableQueryEditor-VariableQuery', qryType: 1 },
  includeAll: true,
  multi: true,
  allValue: '.*',
  current: { selected: true, text: ['All'], value: ['$__all'] },
  refresh: 2,
  regex: '',
  sort: 1,
  hide: 0,
  options: [],
});

/** A dashboard spec as Grafana's JSON model (schemaVersion 39): rows, then panels laid out left to right. */
export const toGrafana = (spec: DashboardSpec): Record<string, unknown> => {
  const panels: Record<string, unknown>[] = [];
  let id = 1;
  let y = 0;
  for (const row of spec.rows) {
    panels.push({
      id: id++,
      type: 'row',
      title: row.row,
      collapsed: false,
      gridPos: { h: 1, w: COLUMNS, x: 0, y },
      panels: [],
    });
    y += 1;
    let x = 0;
    let lineHeight = 0;
    for (const p of row.panels) {
      const h = p.height ?? (p.type === 'stat' ? STAT_HEIGHT : PANEL_HEIGHT);
      if (x + p.width > COLUMNS) {
        x = 0;
        y += lineHeight;
        lineHeight = 0;
      }
      panels.push({
        id: id++,
        type: p.type,
        title: p.title,
        description: p.description,
        datasource: DATASOURCE,
        gridPos: { h, w: p.width, x, y },
        targets: targets(p),
        fieldConfig: fieldConfig(p),
        options: options(p),
        transformations: transformations(p),
      });
      x += p.width;
      lineHeight = Math.max(lineHeight, h);
    }
    y += lineHeight;
  }
  return {
    uid: spec.uid,
    title: spec.title,
    description: spec.description,
    tags: ['crochet'],
    timezone: 'browser',
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    refresh: '30s',
    time: { from: 'now-1h', to: 'now' },
    timepicker: {},
    fiscalYearStartMonth: 0,
    liveNow: false,
    links: [{ title: 'Crochet', type: 'dashboards', tags: ['crochet'], asDropdown: true, includeVars: true }],
    annotations: {
      list: [
        {
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        },
      ],
    },
    templating: { list: spec.variables.map(variable) },
    panels,
  };
};
