/**
 * One k6 script for every load scenario in load-tests/scenarios/ (the same files `npm run load` reads).
 *
 * k6 cannot start the local seller or solve the registration proof of work quickly, so the autocannon runner
 * prepares the run and keeps its seller serving:
 *
 *   npm run load -- smoke --prepare-only        # prints the k6 command line with the keys and listings; Ctrl-C ends
 *   k6 run -e SCENARIO=smoke -e BASE_URL=http://localhost:8080 -e BUYER_KEYS='Bearer …,Bearer …' \
 *          -e FREE_LISTING=lst_… -e PAID_LISTING=lst_… load-tests/k6/scenario.ts
 *
 * The arrival rate is a constant-arrival-rate executor; thresholds come from the scenario file. 'paid' calls are sent
 * unpaid and expect 402. Errors are transport failures and 5xx; unexpected statuses are counted separately.
 * k6 ≥ 0.57 runs TypeScript files directly.
 */
import { check } from 'k6';
import http from 'k6/http';
import { Rate } from 'k6/metrics';
// Types only (erased when k6 runs the file): the scenario files' shape, shared with the autocannon runner.
import type { CallKind, Scenario } from '../src/scenario-shape.js';

const scenario = JSON.parse(open(`../scenarios/${__ENV['SCENARIO'] || 'smoke'}.json`)) as Scenario;
const EXPECTED: Record<CallKind, number> = { free: 200, paid: 402, invalid: 401, unknown_listing: 404 };
const BASE_URL = (__ENV.BASE_URL || 'http://localhost:8080').replace(/\/$/, '');
const BUYER_KEYS = (__ENV.BUYER_KEYS || '').split(',').filter(Boolean);
const INVALID_KEY = 'Bearer crk_k6_invalid_key_000000000000000000000000';
const UNKNOWN_LISTING = 'lst_00000000000000000000000000';

const errors = new Rate('crochet_errors');
const unexpected = new Rate('crochet_unexpected_status');

const thresholds: Record<string, string[]> = {
  http_req_duration: [`p(99)<${scenario.thresholds.p99_ms}`],
  crochet_errors: [`rate<=${scenario.thresholds.error_rate_max}`],
};
if (scenario.thresholds.unexpected_rate_max !== undefined)
  thresholds['crochet_unexpected_status'] = [`rate<=${scenario.thresholds.unexpected_rate_max}`];

export const options = {
  scenarios: {
    [scenario.name]: {
      executor: 'constant-arrival-rate',
      rate: scenario.arrival_rate_per_second,
      timeUnit: '1s',
      duration: `${scenario.duration_seconds}s`,
      preAllocatedVUs: scenario.connections,
      maxVUs: scenario.connections * 4,
    },
  },
  thresholds,
};

const total = scenario.mix.reduce((sum, m) => sum + m.weight, 0);
const pick = () => {
  let at = Math.random() * total;
  for (const m of scenario.mix) {
    at -= m.weight;
    if (at < 0) return m.kind;
  }
  return scenario.mix[scenario.mix.length - 1]!.kind;
};

export function setup() {
  const kinds = new Set(scenario.mix.map((m) => m.kind));
  const missing: string[] = [];
  if ((kinds.has('free') || kinds.has('paid') || kinds.has('unknown_listing')) && BUYER_KEYS.length === 0)
    missing.push('BUYER_KEYS');
  if (kinds.has('free') && !__ENV.FREE_LISTING) missing.push('FREE_LISTING');
  if (kinds.has('paid') && !__ENV.PAID_LISTING) missing.push('PAID_LISTING');
  if (missing.length)
    throw new Error(`set ${missing.join(', ')}: run \`npm run load -- ${scenario.name} --prepare-only\` first`);
}

let next = 0;
export default function () {
  const kind = pick();
  const listing =
    kind === 'free'
      ? __ENV.FREE_LISTING
      : kind === 'paid'
        ? __ENV.PAID_LISTING
        : kind === 'unknown_listing'
          ? UNKNOWN_LISTING
          : __ENV.FREE_LISTING || UNKNOWN_LISTING;
  const authorization = kind === 'invalid' ? INVALID_KEY : (BUYER_KEYS[next++ % BUYER_KEYS.length] ?? INVALID_KEY);
  const res = http.post(`${BASE_URL}/api/v1/gateway/${listing}`, '{"input":"hello"}', {
    headers: { 'content-type': 'application/json', authorization },
    tags: { kind },
    responseCallback: http.expectedStatuses(EXPECTED[kind]),
  });
  errors.add(res.status === 0 || res.status >= 500, { kind });
  unexpected.add(res.status !== 0 && res.status !== EXPECTED[kind], { kind });
  check(res, { [`${kind} answers ${EXPECTED[kind]}`]: (r) => r.status === EXPECTED[kind] });
}
