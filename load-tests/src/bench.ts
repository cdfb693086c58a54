/**
 * `npm run bench`: the gateway's overhead, measured side by side in one run (DESIGN §4; never a test assertion).
 *
 *   direct      the seller reached directly
 *   bare proxy  @fastify/http-proxy with no checks
 *   passthrough node:http + one keep-alive undici.Pool, bodies streamed, nothing else: the floor of a Node proxy hop
 *   nginx       nginx proxy_pass with upstream keepalive, one worker: a reference row, skipped when nginx is absent
 *   crochet     the Crochet free route: key auth, rate limits + start record in Redis, signing, forwarding
 *
 * 1. Throughput: the same number of connections against each, requests/s and latency.
 * 2. Added latency at a fixed moderate rate (requests paced evenly, as k6's constant-arrival-rate): p50/p99 against
 *    direct, in microseconds.
 * 3. Config propagation: a listing change until two proxies have applied it, once the history and ledger writes the
 *    load left behind are done (how long they took is printed).
 *
 * 4. CROCHET_PROXY_WORKERS: the free route on one proxy host running --workers processes, reported apart.
 * 5. What the throughput targets ask of the machine: every process shares its cores, so each row prints the cores it
 *    used, and each target the cores its calls (every process, seller and load generator included, as measured per
 *    call) would use at the rate it asks, and the most a call could cost to fit in the machine at all (budget.ts).
 *
 * Flags: --duration=<s per row> (10), --connections=<n> (32), --rate=<req/s of the fixed-rate rows> (1000),
 * --throughput-rounds=<n> (2; 1 with --quick): the throughput rows run in n interleaved rounds of duration/n seconds
 * each (direct, bare, passthrough, nginx, free, paid, then again), so that a machine whose speed drifts over minutes
 * weighs on every row alike; a row's figures are over all its rounds, and each ratio is also printed per round,
 * --samples=<propagation changes> (1000; p99 by nearest rank is then the 990th), --profile=<role>,
 * --nginx=<path to nginx> (found on the usual paths), --json=<result file> (load-tests/results/bench-<time>.json),
 * --quick (only the direct, bare proxy, passthrough and free route throughput rows and their CPU: for trying a
 * change; the targets need the full run).
 *
 * Uses DATABASE_URL's server (default: the local test server) for a scratch database and REDIS_URL (default local)
 * under a scratch prefix; both are removed at the end. The result file holds every row (requests/s, latencies, CPU
 * per request by process) and the machine it ran on.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { arch, cpus, platform, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { EVENTS_GROUP, redisKeys, solveChallenge } from '@crochet/protocol';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import pg from 'pg';
import { Pool } from 'undici';
import { cpuBudget, formatCpuBudget } from './budget.js';
import { cpuOf, cpuSeconds, ownCpu, pgrep } from './cpu.js';
import { percentileOf } from './stats.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const args = new Map(
  process.argv.slice(2).map((a) => {
    const [k, ...v] = a.replace(/^--/, '').split('=');
    return [k!, v.length ? v.join('=') : 'true'] as const;
  }),
);
const DURATION_S = Number(args.get('duration') ?? 10);
const CONNECTIONS = Number(args.get('connections') ?? 32);
const FIXED_RATE = Number(args.get('rate') ?? 1000);
const PROPAGATION_SAMPLES = Number(args.get('samples') ?? 1000);
const WORKERS = Number(args.get('workers') ?? 2);
const QUICK = args.has('quick') || args.has('compare');
/**
 * --compare=<another checkout> (and/or --compare-node-options="<flags>"): the second proxy runs that checkout's code
 * (or these Node flags), and the free route is loaded on each proxy in turn, rounds interleaved, with the CPU per
 * request of each proxy process: an A/B of a change on a machine too noisy for requests/s from separate runs.
 */
const COMPARE = args.has('compare') || args.has('compare-node-options');
const COMPARE_ROOT = args.get('compare') && args.get('compare') !== 'true' ? resolve(args.get('compare')!) : root;
const COMPARE_NODE_OPTIONS = (args.get('compare-node-options') ?? '').split(' ').filter(Boolean);
const COMPARE_ROUNDS = Number(args.get('rounds') ?? 4);
const THROUGHPUT_ROUNDS = Math.max(1, Number(args.get('throughput-rounds') ?? (QUICK ? 1 : 2)));
const DATABASE_URL = process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';

const children: ChildProcess[] = [];
const roles = new Map<ChildProcess, string>();

/** A process and everything it started (nginx's workers under its master). */
const withDescendants = (pid: number): number[] => [pid, ...pgrep('-P', String(pid)).flatMap(withDescendants)];
/** CPU used so far by each group of processes a request touches, the load generator (this process) included. */
const cpuSnapshot = (): Record<string, number> => {
  const groups: Record<string, number> = {};
  for (const [child, role] of roles)
    groups[role] = (groups[role] ?? 0) + withDescendants(child.pid!).reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  groups['redis'] = cpuOf('redis-server');
  groups['postgres'] = cpuOf('postgres');
  groups['load generator'] = ownCpu();
  return groups;
};
const start = (
  role: string,
  env: Record<string, string>,
  from: { root?: string; nodeOptions?: string[]; label?: string } = {},
): Promise<string> =>
  new Promise((resolve, reject) => {
    // --profile=<role> writes a V8 CPU profile of that role's process to load-tests/results/profiles/.
    const profile =
      args.get('profile') === role ? ['--cpu-prof', `--cpu-prof-dir=${join(root, 'load-tests/results/profiles')}`] : [];
    const child = spawn(
      process.execPath,
      [
        ...profile,
        ...(from.nodeOptions ?? []),
        '--import',
        'tsx',
        join(from.root ?? root, 'load-tests/src/bench-servers.ts'),
        role,
      ],
      {
        cwd: from.root ?? root,
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    children.push(child);
    roles.set(child, from.label ?? role);
    child.once('exit', (code) => reject(new Error(`${role} exited with ${code}`)));
    createInterface({ input: child.stdout! }).once('line', (line) =>
      resolve((JSON.parse(line) as { url: string }).url),
    );
  });

const stopAll = () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
};
process.on('exit', stopAll);

/** nginx from --nginx= or the usual places; undefined when it is not installed. */
const findNginx = (): string | undefined => {
  const given = args.get('nginx');
  if (given) return existsSync(given) ? given : undefined;
  const dirs = ['/usr/sbin', '/usr/local/sbin', '/usr/local/nginx/sbin', ...(process.env['PATH'] ?? '').split(':')];
  return dirs.map((dir) => join(dir, 'nginx')).find((path) => existsSync(path));
};

const freePort = (): Promise<number> =>
  new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolvePort(port));
    });
  });

/**
 * The reference row: nginx in the foreground with one worker (like the one-process Node proxies), a generated
 * minimal config under a temporary prefix, no access log, and a keep-alive pool to the bench seller. Resolves with
 * its URL once it answers.
 */
const startNginx = async (nginx: string, upstream: string): Promise<{ url: string; prefix: string }> => {
  const prefix = mkdtempSync(join(tmpdir(), 'crochet-bench-nginx-'));
  const port = await freePort();
  const seller = new URL(upstream);
  const temp = (name: string) => `${name}_temp_path ${join(prefix, name)};`;
  writeFileSync(
    join(prefix, 'nginx.conf'),
    `daemon off;
worker_processes 1;
pid ${join(prefix, 'nginx.pid')};
error_log ${join(prefix, 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  ${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(temp).join('\n  ')}
  keepalive_requests 1000000;
  upstream seller {
    server ${seller.host};
    keepalive 256;
    keepalive_requests 1000000;
    keepalive_timeout 30s;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://seller;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
  );
  const child = spawn(nginx, ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-e', join(prefix, 'error.log')], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  roles.set(child, 'nginx');
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) =>
      reject(new Error(`nginx exited with ${code}: ${readFileSync(join(prefix, 'error.log'), 'utf8').trim()}`)),
    ),
  );
  const url = `http://127.0.0.1:${port}`;
  const answers = async () => {
    for (let i = 0; i < 100; i++) {
      const ok = await fetch(`${url}/echo`, { method: 'POST', body: '{}' }).then(
        (res) => res.ok,
        () => false,
      );
      if (ok) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`nginx did not answer on ${url}`);
  };
  await Promise.race([answers(), exited]);
  return { url, prefix };
};

interface Row {
  name: string;
  requests: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  latencyMs: { average: number; p50: number; p90: number; p99: number; p999: number; max: number };
  errors: number;
  non2xx: number;
  /** CPU microseconds per request, per process group, during this row. */
  cpuMicrosPerRequest: Record<string, number>;
  /** Requests/s of each interleaved round, in order (throughput rows). */
  roundsRequestsPerSecond?: number[];
}

/**
 * One row from its interleaved rounds (of equal length): requests and errors summed, requests/s and the usual
 * latencies averaged, the worst round's p99 and beyond, and the CPU per request over every round's requests.
 */
const mergeRounds = (rounds: Row[]): Row => {
  const first = rounds[0]!;
  if (rounds.length === 1) return { ...first, roundsRequestsPerSecond: [first.requestsPerSecond] };
  const sum = (pick: (r: Row) => number) => rounds.reduce((total, r) => total + pick(r), 0);
  const mean = (pick: (r: Row) => number) => Number((sum(pick) / rounds.length).toFixed(2));
  const worst = (pick: (r: Row) => number) => Math.max(...rounds.map(pick));
  const requests = sum((r) => r.requests);
  const groups = new Set(rounds.flatMap((r) => Object.keys(r.cpuMicrosPerRequest)));
  return {
    name: first.name,
    requests,
    requestsPerSecond: Math.round(mean((r) => r.requestsPerSecond)),
    p50Ms: mean((r) => r.p50Ms),
    p99Ms: worst((r) => r.p99Ms),
    latencyMs: {
      average: mean((r) => r.latencyMs.average),
      p50: mean((r) => r.latencyMs.p50),
      p90: mean((r) => r.latencyMs.p90),
      p99: worst((r) => r.latencyMs.p99),
      p999: worst((r) => r.latencyMs.p999),
      max: worst((r) => r.latencyMs.max),
    },
    errors: sum((r) => r.errors),
    non2xx: sum((r) => r.non2xx),
    cpuMicrosPerRequest: Object.fromEntries(
      [...groups].map((g) => [g, Math.round(sum((r) => (r.cpuMicrosPerRequest[g] ?? 0) * r.requests) / requests)]),
    ),
    roundsRequestsPerSecond: rounds.map((r) => r.requestsPerSecond),
  };
};

const load = async (
  name: string,
  url: string,
  headers: Record<string, string>,
  perRequest?: () => Record<string, string>,
  durationS = DURATION_S,
): Promise<Row> => {
  const before = cpuSnapshot();
  const result = await autocannon({
    url,
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ input: 'hello' }),
    connections: CONNECTIONS,
    duration: durationS,
    // The headers object is new each request (autocannon keeps the one returned as the template of the next build, so
    // adding to it in place would carry one request's headers into the next). Object.assign, not a literal that starts
    // with a spread: that is V8's slow path on Node 20 and cost the load generator microseconds per request, on the
    // same two cores as the rows it measures.
    ...(perRequest
      ? {
          requests: [
            {
              setupRequest: (req) => {
                req.headers = Object.assign({}, req.headers, perRequest());
                return req;
              },
            },
          ],
        }
      : {}),
  });
  const after = cpuSnapshot();
  const requests = Math.max(1, result.requests.total);
  const cpuMicrosPerRequest = Object.fromEntries(
    Object.keys(after)
      .map((group) => [group, Math.round(((after[group]! - (before[group] ?? 0)) * 1e6) / requests)] as const)
      .filter(([, micros]) => micros > 0),
  );
  return {
    name,
    cpuMicrosPerRequest,
    requests: result.requests.total,
    requestsPerSecond: Math.round(result.requests.average),
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    latencyMs: {
      average: result.latency.average,
      p50: result.latency.p50,
      p90: result.latency.p90,
      p99: result.latency.p99,
      p999: result.latency.p99_9,
      max: result.latency.max,
    },
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
  };
};

/**
 * A row at a constant arrival rate (k6's constant-arrival-rate executor): request i is sent at start + i / rate,
 * whether or not earlier ones have answered, over as many keep-alive connections as are in flight. Latency is from
 * the send to the last byte, in microseconds. autocannon's `overallRate` is not this: each connection sends its share
 * of the second back to back and then waits for the next second, so it measures a burst at full concurrency.
 */
const paced = async (name: string, url: string, headers: Record<string, string>, rate: number, durationS: number) => {
  const target = new URL(url);
  const pool = new Pool(target.origin, { connections: 128, keepAliveTimeout: 30_000 });
  const body = JSON.stringify({ input: 'hello' });
  const path = target.pathname + target.search;
  const send = async (): Promise<{ micros: number; status: number } | null> => {
    const t0 = performance.now();
    try {
      const res = await pool.request({
        method: 'POST',
        path,
        headers: { 'content-type': 'application/json', ...headers },
        body,
      });
      await res.body.arrayBuffer();
      return { micros: (performance.now() - t0) * 1000, status: res.statusCode };
    } catch {
      return null;
    }
  };
  // Warm the connections (not measured).
  await Promise.all(Array.from({ length: 32 }, send));
  const before = cpuSnapshot();
  const total = Math.round(rate * durationS);
  const sent: Promise<{ micros: number; status: number } | null>[] = [];
  let lateMs = 0;
  const started = performance.now();
  await new Promise<void>((done) => {
    const tick = () => {
      const now = performance.now();
      const due = Math.min(total, Math.floor(((now - started) * rate) / 1000) + 1);
      if (sent.length < due) lateMs = Math.max(lateMs, now - started - ((due - 1) * 1000) / rate);
      while (sent.length < due) sent.push(send());
      if (sent.length >= total) return done();
      setTimeout(tick, Math.max(0, started + (sent.length * 1000) / rate - performance.now()));
    };
    tick();
  });
  const results = await Promise.all(sent);
  const elapsedS = (performance.now() - started) / 1000;
  const after = cpuSnapshot();
  await pool.close();
  const ok = results.filter((r): r is { micros: number; status: number } => r !== null);
  const micros = ok.map((r) => r.micros);
  const ms = (p: number) => Number((percentileOf(micros, p) / 1000).toFixed(2));
  return {
    name,
    cpuMicrosPerRequest: Object.fromEntries(
      Object.keys(after)
        .map((group) => [group, Math.round(((after[group]! - (before[group] ?? 0)) * 1e6) / total)] as const)
        .filter(([, cpu]) => cpu > 0),
    ),
    requests: total,
    requestsPerSecond: Math.round(total / elapsedS),
    p50Ms: ms(50),
    p99Ms: ms(99),
    latencyMs: {
      average: Number((micros.reduce((a, b) => a + b, 0) / Math.max(1, micros.length) / 1000).toFixed(2)),
      p50: ms(50),
      p90: ms(90),
      p99: ms(99),
      p999: ms(99.9),
      max: Number((Math.max(...micros) / 1000).toFixed(2)),
    },
    errors: results.length - ok.length,
    non2xx: ok.filter((r) => r.status < 200 || r.status > 299).length,
    /** The latest a request left after its time (the load generator's own delay; small when it kept up). */
    sendLateMs: Number(lateMs.toFixed(2)),
  } satisfies Row & { sendLateMs: number };
};

const solve = solveChallenge;

const json = async (url: string, init: RequestInit = {}) => {
  const res = await fetch(url, {
    ...init,
    headers: { 'content-type': 'application/json', ...(init.headers as Record<string, string>) },
  });
  const body = (await res.json()) as any;
  if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${url}: ${res.status} ${JSON.stringify(body)}`);
  return body.data;
};

const main = async () => {
  const dbName = `crochet_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const dbUrl = new URL(DATABASE_URL);
  dbUrl.pathname = `/${dbName}`;
  const prefix = `bench:${randomBytes(4).toString('hex')}:`;
  const shared = {
    REDIS_URL,
    CROCHET_REDIS_PREFIX: prefix,
    CROCHET_DATA_PLANE_KEY: randomBytes(32).toString('base64'),
    CROCHET_ALLOW_PRIVATE_ENDPOINTS: '1',
    LOG_LEVEL: 'warn',
    // Two proxies and a control plane on one host: each metrics listener on a port of its own.
    CROCHET_METRICS_PORT: '0',
    CONTROL_PLANE_METRICS_PORT: '0',
  };
  let nginxPrefix: string | undefined;
  try {
    const upstream = await start('upstream', {});
    const bare = await start('bare-proxy', { UPSTREAM_URL: upstream });
    const passthrough = await start('passthrough', { UPSTREAM_URL: upstream });
    const nginxPath = findNginx();
    let nginx: string | undefined;
    if (nginxPath) {
      const started = await startNginx(nginxPath, upstream);
      nginx = started.url;
      nginxPrefix = started.prefix;
    } else {
      process.stdout.write('nginx not found (--nginx=<path> to name it): no nginx proxy_pass row\n');
    }
    const plane = await start('control-plane', {
      ...shared,
      DATABASE_URL: dbUrl.toString(),
      CONTROL_PLANE_PORT: '0',
      CROCHET_POW_DIFFICULTY: '8',
      CROCHET_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    });
    // A Solana rail is configured so paid listings work; the bench pre-verifies its proofs, so no chain is called.
    const SOLANA_NETWORK = 'solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1';
    const proxyEnv = {
      ...shared,
      CROCHET_SOLANA_RPC_URL: 'http://127.0.0.1:9',
      CROCHET_SOLANA_NETWORK: SOLANA_NETWORK,
      CROCHET_SOLANA_USDC_MINT: '4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU',
      CROCHET_SOLANA_PAY_TO: 'H8bXHiAKX6UK5NZ2CST1C3qGhXdmCFokuQdyqdA3CoYL',
      HOST: '127.0.0.1',
      PORT: '0',
      CONTROL_PLANE_URL: plane,
      CROCHET_KEY_RATE_LIMIT_PER_MINUTE: '1000000',
      CROCHET_LISTING_RATE_LIMIT_PER_MINUTE: '10000000',
    };
    const [proxyA, proxyB] = await Promise.all([
      start('proxy', proxyEnv),
      // Its CPU is its own group ('proxy B'): outside an A/B it only idles until the propagation test, and a row's
      // 'proxy' is the one process that served it.
      COMPARE
        ? start('proxy', proxyEnv, { root: COMPARE_ROOT, nodeOptions: COMPARE_NODE_OPTIONS, label: 'proxy B' })
        : start('proxy', proxyEnv, { label: 'proxy B' }),
    ]);
    // Reported apart from the one-process rows: a proxy host with CROCHET_PROXY_WORKERS processes on one port.
    const proxyWorkers = await start('proxy-workers', { ...proxyEnv, CROCHET_PROXY_WORKERS: String(WORKERS) });

    const challenge = await json(`${plane}/api/v1/auth/challenge`, { method: 'POST', body: '{}' });
    const registered = await json(`${plane}/api/v1/register`, {
      method: 'POST',
      body: JSON.stringify({
        challenge_id: challenge.challenge_id,
        nonce: solve(challenge.salt, challenge.difficulty),
        name: 'bench',
      }),
    });
    const auth = { authorization: registered.authorization_header };
    const listingChallenge = await json(`${plane}/api/v1/listings/challenge`, {
      method: 'POST',
      headers: auth,
      body: '{}',
    });
    const created = await json(`${plane}/api/v1/listings`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({
        challenge_id: listingChallenge.challenge_id,
        nonce: solve(listingChallenge.salt, listingChallenge.difficulty),
        name: 'Bench echo',
        description: 'Answers a small JSON',
        pricing_model: 'free',
        private_endpoint_url: `${upstream}/echo`,
      }),
    });
    const gateway = `${proxyA}/api/v1/gateway/${created.listing.id}`;
    const workersGateway = `${proxyWorkers}/api/v1/gateway/${created.listing.id}`;
    const paidChallenge = await json(`${plane}/api/v1/listings/challenge`, {
      method: 'POST',
      headers: auth,
      body: '{}',
    });
    const paidListing = await json(`${plane}/api/v1/listings`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({
        challenge_id: paidChallenge.challenge_id,
        nonce: solve(paidChallenge.salt, paidChallenge.difficulty),
        name: 'Bench paid echo',
        description: 'Answers a small JSON for 0.001 USDC',
        pricing_model: 'per_call',
        price: { amount: '0.001' },
        private_endpoint_url: `${upstream}/echo`,
      }),
    });
    const paidGateway = `${proxyA}/api/v1/gateway/${paidListing.listing.id}`;
    // Pre-verified proofs, as a retry after a verification finds them: the paid hot path is then one script.
    const verifier = new Redis(REDIS_URL);
    const proofs: string[] = [];
    // More than the paid row can use (a proof pays once); fewer for short rows, as each one is a Redis hash; none
    // when there is no paid row (--quick).
    const PROOFS = QUICK ? 0 : Math.min(400_000, Math.max(40_000, DURATION_S * 40_000));
    const alphabet = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
    for (let batch = 0; batch < PROOFS / 10_000; batch++) {
      const pipeline = verifier.pipeline();
      for (let i = 0; i < 10_000; i++) {
        let sig = '';
        for (let j = 0; j < 88; j++) sig += alphabet[Math.floor(Math.random() * alphabet.length)];
        const id = `tx:${SOLANA_NETWORK}:${sig}`;
        proofs.push(`${SOLANA_NETWORK}:${sig}`);
        pipeline.hset(`${prefix}pay:verified:${id}`, {
          listing: paidListing.listing.id,
          buyer: registered.agent.id,
          payment: JSON.stringify({
            rail: 'solana-transfer',
            network: SOLANA_NETWORK,
            payer: 'bench',
            amount_atomic: '1000',
            asset: 'usdc',
            tx: sig,
            proof_ids: [id],
          }),
          settlement: '',
        });
      }
      await pipeline.exec();
    }
    verifier.disconnect();
    let nextProof = 0;
    const freshProof = () => ({ 'x-crochet-payment-tx': proofs[nextProof++ % proofs.length]! });
    // Warm-up: the key and listing reach the proxy's memory; connections open; every server's code is optimised.
    await load('warm-up', gateway, auth).catch(() => undefined);
    await load('warm-up', workersGateway, auth, undefined, Math.min(DURATION_S, 3)).catch(() => undefined);
    for (const url of [upstream, bare, passthrough, ...(nginx ? [nginx] : [])])
      await load('warm-up', `${url}/echo`, {}, undefined, Math.min(DURATION_S, 3)).catch(() => undefined);

    if (COMPARE) {
      const gatewayB = `${proxyB}/api/v1/gateway/${created.listing.id}`;
      await load('warm-up', gatewayB, auth).catch(() => undefined);
      const rows: Record<'A' | 'B', Row[]> = { A: [], B: [] };
      /** CPU µs per request of that proxy's process in a row. */
      const cpuOf = (which: 'A' | 'B', r: Row) => r.cpuMicrosPerRequest[which === 'A' ? 'proxy' : 'proxy B'] ?? 0;
      for (let round = 0; round < COMPARE_ROUNDS; round++) {
        const order = round % 2 === 0 ? (['A', 'B'] as const) : (['B', 'A'] as const);
        for (const which of order) {
          const r = await load(`proxy ${which}`, which === 'A' ? gateway : gatewayB, auth);
          rows[which].push(r);
          const cpu = cpuOf(which, r);
          process.stdout.write(
            `  round ${round} proxy ${which}: ${r.requestsPerSecond} req/s, proxy CPU ${cpu} µs/request\n`,
          );
        }
      }
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const cpus = (which: 'A' | 'B') => rows[which].map((r) => cpuOf(which, r));
      const rps = (which: 'A' | 'B') => rows[which].map((r) => r.requestsPerSecond);
      const [cpuA, cpuB, rpsA, rpsB] = [mean(cpus('A')), mean(cpus('B')), mean(rps('A')), mean(rps('B'))];
      process.stdout.write(
        `A (this checkout): ${Math.round(rpsA)} req/s, proxy CPU ${cpuA.toFixed(1)} µs/request\n` +
          `B (${COMPARE_ROOT}${COMPARE_NODE_OPTIONS.length ? ` ${COMPARE_NODE_OPTIONS.join(' ')}` : ''}): ${Math.round(rpsB)} req/s, proxy CPU ${cpuB.toFixed(1)} µs/request\n` +
          `A / B: requests/s ${(rpsA / rpsB).toFixed(3)}, CPU per request ${(cpuA / cpuB).toFixed(3)}; ` +
          `best rounds (least disturbed by anything else on the machine): requests/s ${(Math.max(...rps('A')) / Math.max(...rps('B'))).toFixed(3)}, CPU per request ${(Math.min(...cpus('A')) / Math.min(...cpus('B'))).toFixed(3)}\n`,
      );
      return;
    }
    const roundS = Math.max(1, Math.round(DURATION_S / THROUGHPUT_ROUNDS));
    process.stdout.write(
      `throughput: ${CONNECTIONS} connections, ${THROUGHPUT_ROUNDS} interleaved round(s) of ${roundS} s per row\n`,
    );
    const throughputRows: [string, string, Record<string, string>, (() => Record<string, string>)?][] = [
      ['direct', `${upstream}/echo`, {}],
      ['bare proxy', `${bare}/echo`, {}],
      ['node passthrough', `${passthrough}/echo`, {}],
      ...(nginx ? [['nginx proxy_pass', `${nginx}/echo`, {}] as [string, string, Record<string, string>]] : []),
      ['crochet free route', gateway, auth],
      ...(QUICK ? [] : [['crochet paid route', paidGateway, auth, freshProof] as (typeof throughputRows)[number]]),
    ];
    const rounds: Row[][] = throughputRows.map(() => []);
    for (let round = 0; round < THROUGHPUT_ROUNDS; round++) {
      for (const [i, [name, url, headers, perRequest]] of throughputRows.entries()) {
        rounds[i]!.push(await load(name, url, headers, perRequest, roundS));
      }
    }
    const throughput = rounds.map(mergeRounds);
    if (QUICK) {
      const bareRps = throughput.find((r) => r.name === 'bare proxy')!.requestsPerSecond;
      for (const r of throughput) {
        const cpu = Object.entries(r.cpuMicrosPerRequest).map(([group, micros]) => `${group} ${micros}`);
        process.stdout.write(
          `  ${r.name.padEnd(20)} ${String(r.requestsPerSecond).padStart(8)} req/s  ${(r.requestsPerSecond / bareRps).toFixed(3)}× bare   p50 ${r.p50Ms} ms   p99 ${r.p99Ms} ms   errors ${r.errors}   non-2xx ${r.non2xx}\n    CPU µs/request: ${cpu.join('   ')}\n`,
        );
      }
      // One request at a time on a quiet system: what a single call adds, in µs (autocannon counts whole ms).
      const sequential = async (url: string, extra: Record<string, string>) => {
        const times: number[] = [];
        for (let i = 0; i < 400; i++) {
          const t0 = performance.now();
          const res = await fetch(url, {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...extra },
            body: JSON.stringify({ input: 'hello' }),
          });
          await res.arrayBuffer();
          if (i >= 100) times.push((performance.now() - t0) * 1000);
        }
        return `p50 ${Math.round(percentileOf(times, 50))} µs   p99 ${Math.round(percentileOf(times, 99))} µs`;
      };
      for (const [name, url, headers] of [
        ['direct', `${upstream}/echo`, {}],
        ['bare proxy', `${bare}/echo`, {}],
        ['crochet free route', gateway, auth],
      ] as const) {
        const r = await paced(name, url, headers, FIXED_RATE, 5);
        process.stdout.write(`  at ${FIXED_RATE} req/s: ${name} p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms\n`);
      }
      await new Promise((r) => setTimeout(r, 1000));
      process.stdout.write(`  one at a time: direct ${await sequential(`${upstream}/echo`, {})}\n`);
      process.stdout.write(`  one at a time: bare proxy ${await sequential(`${bare}/echo`, {})}\n`);
      process.stdout.write(`  one at a time: crochet free ${await sequential(gateway, auth)}\n`);
      return;
    }
    const workersRow = await load(`crochet free, ${WORKERS} workers`, workersGateway, auth);
    process.stdout.write(`fixed rate: ${FIXED_RATE} req/s, ${DURATION_S} s each\n`);
    const fixed = [
      await paced('direct', `${upstream}/echo`, {}, FIXED_RATE, DURATION_S),
      await paced('bare proxy', `${bare}/echo`, {}, FIXED_RATE, DURATION_S),
      ...(nginx ? [await paced('nginx proxy_pass', `${nginx}/echo`, {}, FIXED_RATE, DURATION_S)] : []),
      await paced('crochet free route', gateway, auth, FIXED_RATE, DURATION_S),
    ];

    // The history and ledger writes the load left behind (the control plane's events consumer catching up), timed:
    // propagation is then measured on a settled system (during that catch-up an API call shares the control plane
    // and PostgreSQL with it).
    const redis = new Redis(REDIS_URL);
    const backlogStarted = performance.now();
    const { events: stream } = redisKeys(prefix);
    for (;;) {
      const groups = (await redis.xinfo('GROUPS', stream).catch(() => [])) as unknown[][];
      const group = groups
        .map((g) => Object.fromEntries(g.flatMap((v, i, a) => (i % 2 === 0 ? [[String(v), a[i + 1]]] : []))))
        .find((g) => g['name'] === EVENTS_GROUP);
      const last = (await redis.xinfo('STREAM', stream)) as unknown[];
      const lastId = String(last[last.indexOf('last-generated-id') + 1]);
      if (!group || (Number(group['pending']) === 0 && String(group['last-delivered-id']) === lastId)) break;
      if (performance.now() - backlogStarted > 120_000) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const backlogMs = performance.now() - backlogStarted;

    // Propagation: a change through the API until both proxies report the new config version.
    const propagation: number[] = [];
    // The change's own API call (PostgreSQL transaction + publish), part of each sample, reported apart.
    const patchMs: number[] = [];
    for (let i = 0; i < PROPAGATION_SAMPLES; i++) {
      const before = Number(await redis.get(`${prefix}config:version`));
      const t0 = performance.now();
      await json(`${plane}/api/v1/listings/${created.listing.id}`, {
        method: 'PATCH',
        headers: auth,
        body: JSON.stringify({ description: `Answers a small JSON (${i})` }),
      });
      patchMs.push(performance.now() - t0);
      const seen = new Set<string>();
      while (seen.size < 2) {
        for (const proxy of [proxyA, proxyB]) {
          if (seen.has(proxy)) continue;
          const ready = await json(`${proxy}/readyz`);
          if (ready.config_version > before) seen.add(proxy);
        }
      }
      propagation.push(performance.now() - t0);
    }
    redis.disconnect();

    const row = (rows: Row[], name: string) => rows.find((r) => r.name === name);
    const bareRow = row(throughput, 'bare proxy')!;
    const nginxRow = row(throughput, 'nginx proxy_pass');
    const crochetRow = row(throughput, 'crochet free route')!;
    const table = (rows: Row[]) =>
      rows
        .map(
          (r) =>
            `  ${r.name.padEnd(20)} ${String(r.requestsPerSecond).padStart(8)} req/s   p50 ${String(r.p50Ms).padStart(5)} ms   p99 ${String(r.p99Ms).padStart(5)} ms   errors ${r.errors}   non-2xx ${r.non2xx}`,
        )
        .join('\n');
    const paidRow = row(throughput, 'crochet paid route')!;
    const passthroughRow = row(throughput, 'node passthrough')!;
    /**
     * CPU µs per request of the processes that serve the row: the bare proxy alone for the bare row; the proxy, Redis,
     * PostgreSQL and the control plane for Crochet's. Not the load generator or the seller (the target is the gateway's
     * own cost; theirs varies with a row's rate, and the paid row's load generator makes a proof per request: budget.ts
     * counts them), nor the processes that only idle beside the row (the second proxy and the worker fleet, there for
     * the propagation and workers rows): the CPU table above still shows them.
     */
    const SYSTEM_GROUPS = ['proxy', 'redis', 'postgres', 'control-plane'];
    const systemCpu = (r: Row, groups = SYSTEM_GROUPS): number =>
      groups.reduce((sum, group) => sum + (r.cpuMicrosPerRequest[group] ?? 0), 0);
    const summary = {
      ratio_crochet_to_bare_rps: Number((crochetRow.requestsPerSecond / bareRow.requestsPerSecond).toFixed(3)),
      ratio_paid_to_bare_rps: Number((paidRow.requestsPerSecond / bareRow.requestsPerSecond).toFixed(3)),
      ratio_crochet_to_nginx_rps: nginxRow
        ? Number((crochetRow.requestsPerSecond / nginxRow.requestsPerSecond).toFixed(3))
        : null,
      ratio_paid_to_free_rps: Number((paidRow.requestsPerSecond / crochetRow.requestsPerSecond).toFixed(3)),
      ratio_workers_to_bare_rps: Number((workersRow.requestsPerSecond / bareRow.requestsPerSecond).toFixed(3)),
      ratio_passthrough_to_bare_rps: Number((passthroughRow.requestsPerSecond / bareRow.requestsPerSecond).toFixed(3)),
      cpu_budget: cpuBudget(
        { bare: bareRow, passthrough: passthroughRow, free: crochetRow, paid: paidRow },
        cpus().length,
      ),
      // Everything one free call costs (proxy, Redis, PostgreSQL, control plane) against what the bare proxy costs.
      system_cpu_us_per_free_call: systemCpu(crochetRow),
      bare_proxy_cpu_us_per_call: systemCpu(bareRow, ['bare-proxy']),
      ratio_system_cpu_free_to_bare: Number(
        (systemCpu(crochetRow) / Math.max(1, systemCpu(bareRow, ['bare-proxy']))).toFixed(3),
      ),
      // The same for the bare proxy: what any proxy hop adds on this machine, for reference.
      bare_p50_added_over_direct_ms_at_fixed_rate: Number(
        (row(fixed, 'bare proxy')!.p50Ms - row(fixed, 'direct')!.p50Ms).toFixed(2),
      ),
      p50_added_over_direct_ms_at_fixed_rate: Number(
        (row(fixed, 'crochet free route')!.p50Ms - row(fixed, 'direct')!.p50Ms).toFixed(2),
      ),
      p99_added_over_direct_ms_at_fixed_rate: Number(
        (row(fixed, 'crochet free route')!.p99Ms - row(fixed, 'direct')!.p99Ms).toFixed(2),
      ),
      history_backlog_drained_ms: Math.round(backlogMs),
      propagation_ms: {
        p50: Number(percentileOf(propagation, 50).toFixed(2)),
        p99: Number(percentileOf(propagation, 99).toFixed(2)),
        max: Number(Math.max(...propagation).toFixed(2)),
        api_call_p50: Number(percentileOf(patchMs, 50).toFixed(2)),
        api_call_p99: Number(percentileOf(patchMs, 99).toFixed(2)),
      },
    };
    process.stdout.write(`\nthroughput\n${table(throughput)}\n\nfixed rate ${FIXED_RATE} req/s\n${table(fixed)}\n\n`);
    // Everything shares this machine's cores, so requests/s also measures Redis, PostgreSQL and the control plane.
    // CPU per request per process shows what the proxy itself adds, side by side with the bare proxy.
    process.stdout.write('CPU µs per request (throughput rows)\n');
    for (const row of [...throughput, workersRow]) {
      const parts = Object.entries(row.cpuMicrosPerRequest).map(([group, micros]) => `${group} ${micros}`);
      process.stdout.write(`  ${row.name.padEnd(20)} ${parts.join('   ')}\n`);
    }
    process.stdout.write('\n');
    /** The ratio of two rows' requests/s in each round, when there was more than one. */
    const perRound = (a: Row, b: Row): string =>
      (a.roundsRequestsPerSecond?.length ?? 0) > 1
        ? ` (rounds: ${a.roundsRequestsPerSecond!.map((rps, i) => (rps / b.roundsRequestsPerSecond![i]!).toFixed(3)).join(', ')})`
        : '';
    process.stdout.write(
      `crochet / bare proxy requests/s: ${summary.ratio_crochet_to_bare_rps} (target ≥ 1.0)${perRound(crochetRow, bareRow)}\n`,
    );
    process.stdout.write(
      `crochet paid / crochet free requests/s: ${summary.ratio_paid_to_free_rps} (target ≥ 0.9)${perRound(paidRow, crochetRow)}\n`,
    );
    process.stdout.write(`crochet paid / bare proxy requests/s: ${summary.ratio_paid_to_bare_rps}\n`);
    process.stdout.write(
      `crochet free with ${WORKERS} proxy workers / bare proxy requests/s: ${summary.ratio_workers_to_bare_rps} (reported apart)\n`,
    );
    process.stdout.write(
      `node passthrough / bare proxy requests/s: ${summary.ratio_passthrough_to_bare_rps} (reference: the floor of a Node proxy hop)\n`,
    );
    process.stdout.write(
      `whole-system CPU per free call: ${summary.system_cpu_us_per_free_call} µs (proxy + Redis + PostgreSQL + control plane) vs bare proxy ${summary.bare_proxy_cpu_us_per_call} µs: ${summary.ratio_system_cpu_free_to_bare}× (target ≤ 1.5)\n`,
    );
    process.stdout.write(
      `p50 added over direct at ${FIXED_RATE} req/s: ${summary.p50_added_over_direct_ms_at_fixed_rate} ms (target ≤ 1 ms; the bare proxy adds ${summary.bare_p50_added_over_direct_ms_at_fixed_rate} ms)\n`,
    );
    if (summary.ratio_crochet_to_nginx_rps !== null)
      process.stdout.write(
        `crochet / nginx proxy_pass requests/s: ${summary.ratio_crochet_to_nginx_rps} (reference)\n`,
      );
    process.stdout.write(
      `p99 added over direct at ${FIXED_RATE} req/s: ${summary.p99_added_over_direct_ms_at_fixed_rate} ms (reported)\n`,
    );
    process.stdout.write(
      `config propagation to two proxies over ${PROPAGATION_SAMPLES} changes: p50 ${summary.propagation_ms.p50} ms, p99 ${summary.propagation_ms.p99} ms (target ≤ 100 ms), max ${summary.propagation_ms.max} ms; of which the PATCH call itself p50 ${summary.propagation_ms.api_call_p50} ms, p99 ${summary.propagation_ms.api_call_p99} ms\n`,
    );
    process.stdout.write(`\n${formatCpuBudget(summary.cpu_budget)}\n`);
    process.stdout.write(
      `history and ledger writes left by the load written within ${summary.history_backlog_drained_ms} ms after it (propagation measured after)\n`,
    );
    const jsonArg = args.get('json');
    const file =
      jsonArg && jsonArg !== 'true'
        ? resolve(jsonArg)
        : join(root, 'load-tests/results', `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    const machine = {
      cores: cpus().length,
      cpu_model: cpus()[0]?.model ?? null,
      memory_bytes: totalmem(),
      platform: `${platform()} ${release()} ${arch()}`,
      node: process.version,
      nginx: nginxPath ? spawnSync(nginxPath, ['-v'], { encoding: 'utf8' }).stderr.trim() : null,
    };
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(
      file,
      `${JSON.stringify({ at: new Date().toISOString(), machine, duration_s: DURATION_S, connections: CONNECTIONS, fixed_rate: FIXED_RATE, throughput, workers: workersRow, fixed, summary }, null, 2)}\n`,
    );
    process.stdout.write(`wrote ${file}\n`);
  } finally {
    stopAll();
    await new Promise((resolve) => setTimeout(resolve, 500));
    if (nginxPrefix) rmSync(nginxPrefix, { recursive: true, force: true });
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => {});
    await admin.end();
    const redis = new Redis(REDIS_URL);
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
    redis.disconnect();
  }
};

await main();
process.exit(0);
