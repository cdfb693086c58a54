/**
 * `npm run load -- <scenario> [--base-url=http://localhost:8080] [--allow-remote]`
 *
 * Runs one load scenario (load-tests/scenarios/<scenario>.json) with autocannon against a running gateway:
 *   1. prepares what the mix needs through the base URL (the proxy forwards /api/v1/* to the control plane):
 *      buyer keys and a seller, registered by solving the proof of work; a local seller HTTP server on 127.0.0.1
 *      behind a free listing; a per_call listing for 'paid' calls, which are sent unpaid and expect 402;
 *   2. sends the mix at the scenario's arrival rate (autocannon overallRate), printing a line per second;
 *   3. prints a summary (requests, p50/p95/p99, status counts per kind, error rate) and exits 1 when a threshold
 *      fails (2 when the run could not be prepared).
 * Errors are transport errors, timeouts and 5xx answers; the 200/402/401/404 each kind expects are not errors.
 * The free listing needs a gateway that accepts local endpoints (CROCHET_ALLOW_PRIVATE_ENDPOINTS=1, as `npm start`).
 * --prepare-only prepares, prints the k6 command line for load-tests/k6/scenario.ts and serves until Ctrl-C.
 * Only loopback base URLs are allowed unless --allow-remote is given.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { solveChallenge } from '@crochet/protocol';
import autocannon from 'autocannon';
import { type CallKind, EXPECTED_STATUS, kindPicker, loadScenario, type Scenario, scenarioNames } from './scenario.js';
import { percentile } from './stats.js';

const say = (line: string) => process.stdout.write(`${line}\n`);

export const isLoopback = (url: URL): boolean => {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
};

const solve = solveChallenge;

interface Prepared {
  buyers: string[];
  freeListing?: string;
  paidListing?: string;
  seller?: Server;
  cleanup: () => Promise<void>;
}

const prepare = async (base: string, scenario: Scenario): Promise<Prepared> => {
  const kinds = new Set(scenario.mix.map((m) => m.kind));
  const api = async (
    path: string,
    init: { method?: string; headers?: Record<string, string>; body?: unknown } = {},
  ) => {
    const res = await fetch(`${base}${path}`, {
      method: init.method ?? 'GET',
      headers: { 'content-type': 'application/json', ...init.headers },
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
    });
    const body = (await res.json().catch(() => ({}))) as any;
    if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${path}: ${res.status} ${JSON.stringify(body)}`);
    return body.data;
  };
  const register = async (name: string): Promise<string> => {
    const challenge = await api('/api/v1/auth/challenge', { method: 'POST', body: {} });
    const registered = await api('/api/v1/register', {
      method: 'POST',
      body: { challenge_id: challenge.challenge_id, nonce: solve(challenge.salt, challenge.difficulty), name },
    });
    return registered.authorization_header as string;
  };
  const createListing = async (auth: string, body: Record<string, unknown>): Promise<string> => {
    const challenge = await api('/api/v1/listings/challenge', {
      method: 'POST',
      headers: { authorization: auth },
      body: {},
    });
    const created = await api('/api/v1/listings', {
      method: 'POST',
      headers: { authorization: auth },
      body: { challenge_id: challenge.challenge_id, nonce: solve(challenge.salt, challenge.difficulty), ...body },
    });
    return created.listing.id as string;
  };

  const prepared: Prepared = { buyers: [], cleanup: async () => {} };
  const run = randomBytes(3).toString('hex');
  const needsBuyer = kinds.has('free') || kinds.has('paid') || kinds.has('unknown_listing');
  const buyerCount = needsBuyer ? (scenario.buyers ?? 1) : 0;
  const started = performance.now();
  for (let i = 0; i < buyerCount; i++) prepared.buyers.push(await register(`load-${scenario.name}-${run}-buyer-${i}`));
  if (kinds.has('free') || kinds.has('paid')) {
    const sellerAuth = await register(`load-${scenario.name}-${run}-seller`);
    const seller = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok":true,"output":"hello"}');
      });
    });
    seller.keepAliveTimeout = 30_000;
    await new Promise<void>((resolve) => seller.listen(0, '127.0.0.1', resolve));
    prepared.seller = seller;
    const sellerUrl = `http://127.0.0.1:${(seller.address() as AddressInfo).port}`;
    const listingIds: string[] = [];
    if (kinds.has('free')) {
      prepared.freeListing = await createListing(sellerAuth, {
        name: `Load ${scenario.name} free ${run}`,
        description: 'A local echo used by a load scenario',
        pricing_model: 'free',
        private_endpoint_url: `${sellerUrl}/echo`,
      });
      listingIds.push(prepared.freeListing);
    }
    if (kinds.has('paid')) {
      prepared.paidListing = await createListing(sellerAuth, {
        name: `Load ${scenario.name} paid ${run}`,
        description: 'A local echo for 0.001 USDC used by a load scenario (called unpaid: 402)',
        pricing_model: 'per_call',
        price: { amount: '0.001' },
        private_endpoint_url: `${sellerUrl}/echo`,
      });
      listingIds.push(prepared.paidListing);
    }
    prepared.cleanup = async () => {
      for (const id of listingIds)
        await api(`/api/v1/listings/${id}`, { method: 'DELETE', headers: { authorization: sellerAuth } }).catch(
          () => {},
        );
      await new Promise<void>((resolve) => {
        seller.close(() => resolve());
        seller.closeAllConnections();
      });
    };
  }
  // The proxy learns new listings through config propagation: wait until each answers as the mix expects.
  const waitFor = async (listing: string, status: number) => {
    for (let i = 0; i < 100; i++) {
      const res = await fetch(`${base}/api/v1/gateway/${listing}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: prepared.buyers[0]! },
        body: '{"input":"hello"}',
      });
      await res.arrayBuffer();
      if (res.status === status) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`listing ${listing} never answered ${status} through ${base}`);
  };
  if (prepared.freeListing) await waitFor(prepared.freeListing, EXPECTED_STATUS.free);
  if (prepared.paidListing) await waitFor(prepared.paidListing, EXPECTED_STATUS.paid);
  say(
    `prepared in ${((performance.now() - started) / 1000).toFixed(1)} s: ${prepared.buyers.length} buyer key(s)` +
      (prepared.freeListing ? `, free listing ${prepared.freeListing}` : '') +
      (prepared.paidListing ? `, paid listing ${prepared.paidListing}` : '') +
      (prepared.seller ? `, seller at 127.0.0.1:${(prepared.seller.address() as AddressInfo).port}` : ''),
  );
  return prepared;
};

export interface Summary {
  scenario: string;
  requests: number;
  responses: number;
  transport_errors: number;
  timeouts: number;
  server_errors: number;
  unexpected: number;
  error_rate: number;
  unexpected_rate: number;
  latency_ms: { p50: number; p95: number; p99: number; max: number };
  achieved_rate_per_second: number;
  statuses: Record<string, Record<string, number>>;
  failures: string[];
}

const runScenario = async (base: string, scenario: Scenario, prepared: Prepared): Promise<Summary> => {
  const pick = kindPicker(scenario.mix);
  let buyer = 0;
  const nextBuyer = () => prepared.buyers[buyer++ % prepared.buyers.length]!;
  const invalidKey = `Bearer crk_${randomBytes(24).toString('hex')}`;
  const unknownListing = randomUUID();
  const statuses: Record<string, Record<string, number>> = {};
  let unexpected = 0;
  let serverErrors = 0;
  const latencies: number[] = [];

  let finish: (error: Error | null, result: autocannon.Result) => void = () => {};
  const done = new Promise<autocannon.Result>((resolve, reject) => {
    finish = (error, result) => (error ? reject(error) : resolve(result));
  });
  const instance = autocannon(
    {
      url: base,
      connections: scenario.connections,
      duration: scenario.duration_seconds,
      overallRate: scenario.arrival_rate_per_second,
      timeout: 10,
      requests: [
        {
          method: 'POST',
          setupRequest: (req: any, context: any) => {
            const kind = pick(Math.random());
            context.kind = kind;
            const listing =
              kind === 'free'
                ? prepared.freeListing
                : kind === 'paid'
                  ? prepared.paidListing
                  : kind === 'unknown_listing'
                    ? unknownListing
                    : (prepared.freeListing ?? unknownListing);
            const authorization = kind === 'invalid' ? invalidKey : nextBuyer();
            return {
              ...req,
              method: 'POST',
              path: `/api/v1/gateway/${listing}`,
              headers: { 'content-type': 'application/json', authorization },
              body: '{"input":"hello"}',
            };
          },
          onResponse: (status: number, _body: string, context: any) => {
            const kind = context.kind as CallKind;
            statuses[kind] ??= {};
            const byKind = statuses[kind];
            byKind[status] = (byKind[status] ?? 0) + 1;
            if (status >= 500) serverErrors++;
            if (status !== EXPECTED_STATUS[kind]) unexpected++;
          },
        },
      ],
    } as autocannon.Options,
    (error, result) => finish(error, result),
  );

  let lastCount = 0;
  let count = 0;
  let errorsSoFar = 0;
  const t0 = performance.now();
  instance.on('response', (_client: unknown, _status: number, _bytes: number, responseTime: number) => {
    count++;
    latencies.push(responseTime);
  });
  instance.on('reqError', () => errorsSoFar++);
  const ticker = setInterval(() => {
    const seconds = Math.round((performance.now() - t0) / 1000);
    say(
      `  ${String(seconds).padStart(4)} s  ${String(count - lastCount).padStart(6)} resp/s  total ${count}  5xx ${serverErrors}  unexpected ${unexpected}  transport errors ${errorsSoFar}`,
    );
    lastCount = count;
  }, 1000);
  const result = await done.finally(() => clearInterval(ticker));

  const sorted = latencies.sort((a, b) => a - b);
  const transport = result.errors;
  const timeouts = result.timeouts;
  const responses = sorted.length;
  const requests = responses + transport;
  const errorRate = requests === 0 ? 1 : (transport + serverErrors) / requests;
  const unexpectedRate = responses === 0 ? 1 : unexpected / responses;
  const round = (n: number) => Number(n.toFixed(2));
  const summary: Summary = {
    scenario: scenario.name,
    requests,
    responses,
    transport_errors: transport,
    timeouts,
    server_errors: serverErrors,
    unexpected,
    error_rate: round(errorRate * 10_000) / 10_000,
    unexpected_rate: round(unexpectedRate * 10_000) / 10_000,
    latency_ms: {
      p50: round(percentile(sorted, 50)),
      p95: round(percentile(sorted, 95)),
      p99: round(percentile(sorted, 99)),
      max: round(sorted[sorted.length - 1] ?? Number.NaN),
    },
    achieved_rate_per_second: round(responses / scenario.duration_seconds),
    statuses,
    failures: [],
  };
  const t = scenario.thresholds;
  if (requests === 0) summary.failures.push('no requests completed');
  if (!(summary.latency_ms.p99 <= t.p99_ms)) summary.failures.push(`p99 ${summary.latency_ms.p99} ms > ${t.p99_ms} ms`);
  if (errorRate > t.error_rate_max)
    summary.failures.push(`error rate ${(errorRate * 100).toFixed(2)} % > ${(t.error_rate_max * 100).toFixed(2)} %`);
  if (t.unexpected_rate_max !== undefined && unexpectedRate > t.unexpected_rate_max)
    summary.failures.push(
      `unexpected statuses ${(unexpectedRate * 100).toFixed(2)} % > ${(t.unexpected_rate_max * 100).toFixed(2)} %`,
    );
  return summary;
};

const printSummary = (scenario: Scenario, s: Summary) => {
  const pct = (n: number) => `${(n * 100).toFixed(2)} %`;
  say('');
  say(`summary: ${s.scenario}`);
  say(
    `  requests     ${s.requests} (${s.responses} answered, ${s.achieved_rate_per_second} req/s of ${scenario.arrival_rate_per_second} asked)`,
  );
  say(
    `  latency      p50 ${s.latency_ms.p50} ms   p95 ${s.latency_ms.p95} ms   p99 ${s.latency_ms.p99} ms   max ${s.latency_ms.max} ms`,
  );
  say('  statuses     (kind: status × count; expected status marked *)');
  for (const m of scenario.mix) {
    const counts = Object.entries(s.statuses[m.kind] ?? {})
      .map(([status, n]) => `${status}${Number(status) === EXPECTED_STATUS[m.kind] ? '*' : ''} × ${n}`)
      .join('   ');
    say(`    ${m.kind.padEnd(16)} ${counts || '(none)'}`);
  }
  say(
    `  errors       ${s.transport_errors} transport (${s.timeouts} timeouts), ${s.server_errors} 5xx → error rate ${pct(s.error_rate)}`,
  );
  say(`  unexpected   ${s.unexpected} answers with a status the mix does not expect (${pct(s.unexpected_rate)})`);
  const t = scenario.thresholds;
  say(
    `  thresholds   p99 ≤ ${t.p99_ms} ms, error rate ≤ ${pct(t.error_rate_max)}` +
      (t.unexpected_rate_max === undefined ? '' : `, unexpected ≤ ${pct(t.unexpected_rate_max)}`),
  );
  say(s.failures.length ? `FAIL: ${s.failures.join('; ')}` : 'PASS: every threshold holds');
};

const main = async (): Promise<number> => {
  const positional = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const flags = new Map(
    process.argv
      .slice(2)
      .filter((a) => a.startsWith('--'))
      .map((a) => {
        const [k, ...v] = a.slice(2).split('=');
        return [k!, v.length ? v.join('=') : 'true'] as const;
      }),
  );
  const name = positional[0];
  if (!name) {
    say(
      `usage: npm run load -- <scenario> [--base-url=http://localhost:8080] [--allow-remote] [--json] [--prepare-only]`,
    );
    say(`scenarios: ${scenarioNames().join(', ')}`);
    return 2;
  }
  const scenario = loadScenario(name);
  const base = new URL(flags.get('base-url') ?? 'http://localhost:8080');
  if (!isLoopback(base) && flags.get('allow-remote') !== 'true') {
    say(`refusing ${base.origin}: not a loopback address (pass --allow-remote to load a remote gateway on purpose)`);
    return 2;
  }
  const origin = base.origin;
  say(`scenario ${scenario.name}: ${scenario.description}`);
  say(
    `target ${origin}: ${scenario.arrival_rate_per_second} req/s for ${scenario.duration_seconds} s over ${scenario.connections} connection(s)`,
  );
  const health = await fetch(`${origin}/readyz`).catch((error: Error) => error);
  if (health instanceof Error || !health.ok) {
    say(
      `${origin}/readyz is not ready (${health instanceof Error ? health.message : health.status}): start the stack first (npm start)`,
    );
    return 2;
  }
  const prepared = await prepare(origin, scenario);
  if (flags.get('prepare-only') === 'true') {
    // For k6 (load-tests/k6/scenario.ts): the keys and listings, with the local seller serving until Ctrl-C.
    const env = [
      `-e SCENARIO=${scenario.name}`,
      `-e BASE_URL=${origin}`,
      `-e BUYER_KEYS='${prepared.buyers.join(',')}'`,
      ...(prepared.freeListing ? [`-e FREE_LISTING=${prepared.freeListing}`] : []),
      ...(prepared.paidListing ? [`-e PAID_LISTING=${prepared.paidListing}`] : []),
    ];
    say(`k6 run ${env.join(' ')} load-tests/k6/scenario.ts`);
    say('the seller keeps serving; Ctrl-C removes the listings and stops it');
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await prepared.cleanup();
    return 0;
  }
  try {
    const summary = await runScenario(origin, scenario, prepared);
    printSummary(scenario, summary);
    if (flags.get('json') === 'true') say(JSON.stringify(summary));
    return summary.failures.length ? 1 : 0;
  } finally {
    await prepared.cleanup();
  }
};

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then(
    (code) => process.exit(code),
    (error: Error) => {
      say(`load: ${error.message}`);
      process.exit(2);
    },
  );
}
