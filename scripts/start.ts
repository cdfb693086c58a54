/**
 * `npm start`: the whole stack on one machine. Uses DATABASE_URL / REDIS_URL when given; otherwise starts an
 * embedded PostgreSQL and a local redis-server under .crochet/. Runs the control plane in this process and the proxy
 * in worker processes of its own (`CROCHET_PROXY_WORKERS`, default 1: the gateway's event loop never runs
 * control-plane work), prints the public URL, and stops everything it started on Ctrl-C.
 */

import cluster from 'node:cluster';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDatabaseUnavailable, loadControlPlaneConfig, startControlPlane } from '@crochet/control-plane';
import { EXIT_UNSAFE_STATE, installProcessGuard } from '@crochet/plugins';
import { ConfigError } from '@crochet/protocol';
import { forkProxyWorkers, loadProxyConfig, proxyWorkerCount, runProxyWorker } from '@crochet/proxy';
import { startDevChains } from './dev-chains.js';
import { ensurePostgres, ensureRedis, type LocalService } from './local-services.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const say = (line: string) => process.stdout.write(`[crochet] ${line}\n`);

/** A development key kept under .crochet/, so what one run encrypted still opens in the next. */
const devKey = (name: string, variable: string): string => {
  const file = join(root, '.crochet', name);
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  mkdirSync(dirname(file), { recursive: true });
  const key = randomBytes(32).toString('base64');
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  say(`generated a development key in .crochet/${name} (set ${variable} in production)`);
  return key;
};

/** A development receipt key (private Ed25519 JWK) kept under .crochet/, so receipts stay verifiable across runs. */
const devReceiptKeys = (): string => {
  const file = join(root, '.crochet', 'dev-receipt-keys.json');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  mkdirSync(dirname(file), { recursive: true });
  const { privateKey } = generateKeyPairSync('ed25519');
  const keys = JSON.stringify([{ ...privateKey.export({ format: 'jwk' }), kid: `dev-${Date.now().toString(36)}` }]);
  writeFileSync(file, `${keys}\n`, { mode: 0o600 });
  say('generated a development receipt key in .crochet/dev-receipt-keys.json (set CROCHET_RECEIPT_KEYS in production)');
  return keys;
};

const main = async (): Promise<void> => {
  const started: LocalService[] = [];
  const closers: (() => Promise<void>)[] = [];
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('stopping…');
    for (const close of closers.reverse()) await close().catch(() => {});
    for (const service of started.reverse()) await service.stop().catch(() => {});
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));

  try {
    const port = process.env['PORT'] ?? '8080';
    const publicBaseUrl = process.env['PUBLIC_BASE_URL'] ?? `http://localhost:${port}`;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PUBLIC_BASE_URL: publicBaseUrl,
      CROCHET_ENCRYPTION_KEY:
        process.env['CROCHET_ENCRYPTION_KEY'] ?? devKey('dev-encryption-key', 'CROCHET_ENCRYPTION_KEY'),
      CROCHET_DATA_PLANE_KEY:
        process.env['CROCHET_DATA_PLANE_KEY'] ?? devKey('dev-data-plane-key', 'CROCHET_DATA_PLANE_KEY'),
      CROCHET_RECEIPT_KEYS: process.env['CROCHET_RECEIPT_KEYS'] ?? devReceiptKeys(),
      CROCHET_ALLOW_PRIVATE_ENDPOINTS: process.env['CROCHET_ALLOW_PRIVATE_ENDPOINTS'] ?? '1',
      // The proxy runs beside the control plane here: its X-Forwarded-For names the client.
      CONTROL_PLANE_TRUSTED_PROXIES: process.env['CONTROL_PLANE_TRUSTED_PROXIES'] ?? '127.0.0.1,::1',
      LOG_LEVEL: process.env['LOG_LEVEL'] ?? 'warn',
    };
    // Validate before starting anything, so a bad variable costs nothing to fix.
    const proxyMetricsPort = loadProxyConfig(env).metricsPort;
    const workers = proxyWorkerCount(env);
    const planeMetricsPort = loadControlPlaneConfig({
      ...env,
      DATABASE_URL: env['DATABASE_URL'] ?? 'postgres://check@localhost/check',
    }).metricsPort;
    // Both planes run on this host, each with its own metrics listener (proxy worker i on CROCHET_METRICS_PORT + i).
    if (
      proxyMetricsPort !== 0 &&
      planeMetricsPort >= proxyMetricsPort &&
      planeMetricsPort < proxyMetricsPort + workers
    ) {
      throw new ConfigError([
        "CROCHET_METRICS_PORT: the proxies' metrics ports must not include CONTROL_PLANE_METRICS_PORT (npm start runs both)",
      ]);
    }

    const postgres = await ensurePostgres(root, say);
    if (postgres.started) started.push(postgres);
    const redis = await ensureRedis(root, say);
    if (redis.started) started.push(redis);

    // Payment rails: the configured networks, or local chains when none is configured (CROCHET_DEV_CHAINS).
    const devChains =
      (env['CROCHET_DEV_CHAINS'] ?? (env['CROCHET_SOLANA_RPC_URL'] || env['CROCHET_EVM_RPC_URL'] ? '0' : '1')) === '1';
    if (devChains) {
      const chains = await startDevChains(root, say);
      started.push({ url: '', started: true, stop: chains.stop });
      Object.assign(env, chains.env);
    }

    const plane = await startControlPlane(
      loadControlPlaneConfig({ ...env, DATABASE_URL: postgres.url, REDIS_URL: redis.url }),
    );
    closers.push(plane.close);
    const proxies = await forkProxyWorkers(
      workers,
      { ...env, REDIS_URL: redis.url, CONTROL_PLANE_URL: plane.url },
      say,
    );
    closers.push(proxies.close);
    if (env['CROCHET_ALLOW_PRIVATE_ENDPOINTS'] === '1') {
      say('CROCHET_ALLOW_PRIVATE_ENDPOINTS=1: sellers may use http and local endpoints (development only)');
    }
    // The control plane's guard (installed once started: a failure to start still ends it); each proxy has its own.
    installProcessGuard({
      log: plane.app.log,
      survivable: isDatabaseUnavailable,
      shutdown: () => void stop(EXIT_UNSAFE_STATE),
    });
    say(`control plane at ${plane.url}`);
    const proxyMetrics = proxies.listening.map((p) => `${p.metricsUrl}/metrics`).join(', ');
    say(`proxy: ${workers} worker process${workers === 1 ? '' : 'es'} (CROCHET_PROXY_WORKERS)`);
    say(`metrics (Prometheus): ${proxyMetrics} (proxy), ${plane.metricsUrl}/metrics (control plane)`);
    say(`Crochet is running at ${publicBaseUrl}  (try ${publicBaseUrl}/llms.txt) — Ctrl-C stops everything`);
    say(`operator dashboard: ${publicBaseUrl}/dashboard (open it on this host: the session is bound to it)`);
  } catch (error) {
    if (error instanceof ConfigError) say(error.message);
    else say(`could not start: ${(error as Error).message}`);
    await stop(1);
  }
};

// The proxy workers run this same file (node:cluster): each is one proxy process.
if (cluster.isWorker) await runProxyWorker();
else await main();
