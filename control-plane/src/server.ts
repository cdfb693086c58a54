import { closeServer, startMetricsListener } from '@crochet/plugins';
import { CryptoBox, redisKeys } from '@crochet/protocol';
import type { FastifyBaseLogger } from 'fastify';
import { Redis } from 'ioredis';
import { type App, createApp, type Deps } from './app.js';
import type { ControlPlaneConfig } from './config.js';
import { ConfigPublisher } from './config-publisher.js';
import { createPool, migrate } from './db.js';
import { EpochKeeper } from './epoch.js';
import { type EventsConsumer, startEventsConsumer } from './events-consumer.js';
import { type HistoryJob, startHistoryJob } from './history-partitions.js';
import { type Reconciler, startReconciler } from './ledger/reconcile.js';
import { type ControlPlaneMetrics, createControlPlaneMetrics } from './metrics.js';
import { Transfers } from './payouts/transfers.js';
import { treasuriesFrom } from './payouts/treasury.js';
import { authRoutes } from './routes/auth.js';
import { claimRoutes } from './routes/claims.js';
import { dashboardRoutes } from './routes/dashboard.js';
import { docsRoutes } from './routes/docs.js';
import { gatewayRequestRoutes } from './routes/gateway-requests.js';
import { healthRoutes } from './routes/health.js';
import { ledgerRoutes } from './routes/ledger.js';
import { listingRoutes } from './routes/listings.js';
import { meRoutes } from './routes/me.js';
import { meWalletRoutes } from './routes/me-wallets.js';
import { operatorRoutes } from './routes/operator.js';
import { payoutRoutes } from './routes/payouts.js';
import { reviewRoutes } from './routes/reviews.js';
import { type ScoreJob, startScoreJob } from './score/job.js';

export interface ControlPlane {
  app: App;
  deps: Deps;
  /** The URL the control plane listens on. */
  url: string;
  /** Where Prometheus scrapes `/metrics` (CONTROL_PLANE_METRICS_PORT), apart from the API port. */
  metricsUrl: string;
  /** Records the proxies' gateway events into PostgreSQL (tests await `drain()`). */
  eventsConsumer: EventsConsumer;
  /** The periodic reconciliation job (§3.5); `runOnce()` runs it now (one at a time across control planes). */
  reconciler: Reconciler;
  /** The periodic Crochet Score job (§3.6); `runOnce()` computes every score now. */
  scoreJob: ScoreJob;
  /** Restores a Redis that lost its data (DESIGN §2 durability rule). */
  epoch: EpochKeeper;
  /** Sends payouts and refunds and books them (§3.9); `runOnce()` runs it now. */
  transfers: Transfers;
  /** Keeps gateway_requests' monthly partitions and applies the history retention; `runOnce()` runs it now. */
  historyJob: HistoryJob;
  close(): Promise<void>;
}

/** Route modules in the order they appear in the documents. */
const ROUTES = [
  authRoutes,
  meRoutes,
  meWalletRoutes,
  claimRoutes,
  listingRoutes,
  reviewRoutes,
  gatewayRequestRoutes,
  ledgerRoutes,
  payoutRoutes,
  operatorRoutes,
  healthRoutes,
  dashboardRoutes,
];

/** Builds the app over given dependencies (tests pass their own pool and Redis). */
export const buildControlPlane = (deps: Deps, metrics: ControlPlaneMetrics = createControlPlaneMetrics(deps)): App => {
  const { app, catalog } = createApp(deps);
  metrics.install(app);
  for (const routes of ROUTES) routes(app, deps);
  docsRoutes(app, deps, catalog);
  return app;
};

/**
 * Redis must not evict: it holds consumed proofs and events not yet read, and an evicted proof could pay twice. A
 * managed Redis may refuse CONFIG: then nothing is known, and nothing is said.
 */
const warnOnEviction = async (redis: Redis, log: { warn(obj: object, msg: string): void }): Promise<void> => {
  const policy = (await redis.config('GET', 'maxmemory-policy').catch(() => [])) as string[];
  if (policy[1] && policy[1] !== 'noeviction') {
    log.warn(
      { maxmemory_policy: policy[1] },
      'Redis may evict keys (maxmemory-policy is not noeviction): a consumed proof evicted could pay twice',
    );
  }
};

/** Connects to PostgreSQL and Redis, applies migrations, and listens. `close()` drains and disconnects. */
export const startControlPlane = async (
  config: ControlPlaneConfig,
  overrides: Partial<Pick<Deps, 'lookup'>> = {},
): Promise<ControlPlane> => {
  const pool = createPool(config.databaseUrl);
  // Keepalive probes after 30 s idle (the events consumer's blocking reader is a duplicate, with the same options): an
  // idle connection whose peer vanished without closing it is found dead in about 40 s (proxy/src/app.ts).
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 2, lazyConnect: true, keepAlive: 30_000 });
  redis.on('error', () => {}); // reconnects by itself; readiness reports the state
  try {
    await migrate(pool);
    await redis.connect();
  } catch (error) {
    await pool.end().catch(() => {});
    redis.disconnect();
    throw error;
  }
  const box = new CryptoBox(config.encryptionKey, config.encryptionKeysPrevious);
  let log: FastifyBaseLogger | undefined;
  const publisher = new ConfigPublisher({
    pool,
    redis,
    box,
    dataPlaneBox: new CryptoBox(config.dataPlaneKey),
    keys: redisKeys(config.redisPrefix),
    log: { warn: (details: object, message: string) => log?.warn(details, message) },
  });
  let transfers: Transfers | undefined;
  const treasuries = await treasuriesFrom(config.payments).catch(async (error: unknown) => {
    await pool.end().catch(() => {});
    redis.disconnect();
    throw error;
  });
  const money = { treasuries, kick: () => transfers?.kick() };
  const deps: Deps = { config, pool, redis, box, publisher, money, ...overrides };
  const metrics = createControlPlaneMetrics(deps);
  const app = buildControlPlane(deps, metrics);
  log = app.log;
  let eventsConsumer: EventsConsumer | undefined;
  let reconciler: Reconciler | undefined;
  let scoreJob: ScoreJob | undefined;
  let historyJob: HistoryJob | undefined;
  let epoch: EpochKeeper | undefined;
  let metricsListener: Awaited<ReturnType<typeof startMetricsListener>> | undefined;
  const close = async (): Promise<void> => {
    await publisher.stop(); // waits for a resync in progress: before the pool closes
    await epoch?.stop(); // waits for a restore in progress: likewise
    await closeServer(app);
    await metricsListener?.close();
    await reconciler?.stop(); // waits for a run in progress: before the pool closes
    await transfers?.stop(); // likewise (a transfer half-way is finished by the next start: its row says where)
    await scoreJob?.stop(); // likewise
    await historyJob?.stop(); // likewise
    await eventsConsumer?.stop(); // commits and acknowledges its batch in hand: before the pool closes
    await pool.end();
    redis.disconnect();
  };
  try {
    // Proxies may have started before us, or Redis may have restarted empty: publish the whole state first.
    await publisher.resync();
    publisher.start(config.configResyncSeconds * 1000);
    epoch = new EpochKeeper({
      pool,
      redis,
      keys: redisKeys(config.redisPrefix),
      publisher,
      acceptWindowSeconds: config.payments.acceptWindowSeconds,
      graceMs: config.epochGraceMs,
      pollMs: config.epochPollMs,
      log: app.log.child({ component: 'epoch' }),
    });
    await epoch.start();
    await warnOnEviction(redis, app.log);
    eventsConsumer = await startEventsConsumer({
      pool,
      redis,
      prefix: config.redisPrefix,
      feeBps: config.feeBps,
      log: app.log.child({ component: 'events-consumer' }),
    });
    metrics.setConsumer(eventsConsumer);
    reconciler = startReconciler({
      pool,
      redis,
      keys: redisKeys(config.redisPrefix),
      payments: config.payments,
      staleSeconds: config.reconcileStaleSeconds,
      feeBps: config.feeBps,
      intervalMs: config.reconcileIntervalSeconds * 1000,
      log: app.log.child({ component: 'reconcile' }),
    });
    transfers = new Transfers({
      pool,
      treasuries,
      intervalMs: config.transfersIntervalMs,
      payoutMinimumAtomic: config.payoutMinimumAtomic,
      log: app.log.child({ component: 'transfers' }),
    });
    metrics.setTransfers(transfers);
    transfers.start();
    transfers.kick(); // what a stopped control plane left half-way goes on now
    scoreJob = startScoreJob({
      pool,
      intervalMs: config.scoreIntervalSeconds * 1000,
      log: app.log.child({ component: 'score' }),
    });
    historyJob = startHistoryJob({
      pool,
      retentionDays: config.historyRetentionDays,
      intervalMs: config.historyIntervalSeconds * 1000,
      log: app.log.child({ component: 'history' }),
    });
    // The months ahead exist from the migration on; a first run now keeps them ahead after a long stop. A failure
    // here is no reason not to start (inserts land in the DEFAULT partition meanwhile): the timer tries again.
    const history = historyJob;
    void history.runOnce().catch((error: unknown) => app.log.error({ err: error }, 'history maintenance failed'));
    const url = await app.listen({ host: config.host, port: config.port });
    metricsListener = await startMetricsListener(metrics.register, {
      host: config.metricsHost,
      port: config.metricsPort,
    });
    return {
      app,
      deps,
      url,
      metricsUrl: metricsListener.url,
      eventsConsumer,
      reconciler,
      scoreJob,
      epoch,
      transfers,
      historyJob,
      close,
    };
  } catch (error) {
    // A start that fails half-way (Redis gone, the port taken) leaves nothing running: no consumer loop, no timers.
    await close().catch(() => {});
    throw error;
  }
};
