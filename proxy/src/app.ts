import { createServer, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import {
  closeServer,
  connectionRefused,
  createGatewayScripts,
  createGuardedAgent,
  createReceiptSigner,
  createX402Schemes,
  EventOutbox,
  evmTransferRail,
  type GatewayScripts,
  LocalAdmission,
  limitConnections,
  type PaymentRail,
  payloadTooLarge,
  redisPendingSettlementStore,
  registerSvmScheme,
  relayRail,
  requestIdOf,
  sendApiError,
  serverOptions,
  solanaTransferRail,
  startMetricsListener,
  timeoutOptions,
  x402Rail,
} from '@crochet/plugins';
import { ApiError, CryptoBox, PaymentRequestIds, redisKeys } from '@crochet/protocol';
import httpProxy from '@fastify/http-proxy';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify';
import { Redis } from 'ioredis';
import { privateKeyToAccount } from 'viem/accounts';
import type { GatewayRequest } from './call.js';
import type { ProxyConfig } from './config.js';
import { ConfigStore } from './config-store.js';
import { createGateway, GATEWAY_METHODS, type GatewayDeps, gatewayRoutes } from './gateway.js';
import { withoutHopByHop } from './headers.js';
import { createProxyMetrics, type ProxyMetrics, timedRedis } from './metrics.js';
import { Payments } from './payments.js';
import { RedisHealth, RedisState } from './redis-state.js';

/**
 * A gateway target the server hands to the gateway itself: a listing id of the usual alphabet, a sub-path with no
 * percent-escapes (so it is already the recorded path; a target with escapes goes through Fastify, which decodes it
 * or refuses it), and any query.
 */
const GATEWAY_TARGET = /^\/api\/v1\/gateway\/([0-9A-Za-z_-]{1,64})(?:\/([^?%#]*))?(?:\?.*)?$/;
const GATEWAY_METHOD: ReadonlySet<string> = new Set(GATEWAY_METHODS);

/** A gateway request as Node parsed it, with a logger made only when something is logged. */
class DirectRequest implements GatewayRequest {
  readonly id: string;
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  #log: FastifyBaseLogger | undefined;

  constructor(
    readonly raw: IncomingMessage,
    readonly listingId: string,
    readonly subPath: string,
    private readonly parentLog: FastifyBaseLogger,
  ) {
    this.id = requestIdOf(raw.headers);
    this.method = raw.method!;
    this.url = raw.url!;
    this.headers = raw.headers;
  }

  get log(): FastifyBaseLogger {
    this.#log ??= this.parentLog.child({ reqId: this.id });
    return this.#log;
  }
}

/** How long a client should wait before retrying when the control plane does not answer. */
const CONTROL_PLANE_RETRY_AFTER_SECONDS = 5;

/**
 * The public entry point. `/api/v1/gateway/*` is the data plane's own pipeline (when `gateway` deps are given);
 * every other path is passed through to the control plane, so one base URL serves the whole API. Metrics are served
 * on their own listener (`startProxy`), never here.
 */
export const buildProxy = (config: ProxyConfig, gateway?: GatewayDeps & { state: RedisState }): FastifyInstance => {
  const metrics = gateway?.metrics ?? createProxyMetrics(gateway?.store);
  const handle = gateway ? createGateway({ ...gateway, metrics }) : undefined;
  let closing = false;
  const app: FastifyInstance = Fastify({
    ...serverOptions(config.logLevel, config.limits),
    bodyLimit: config.bodyLimitBytes,
    trustProxy: config.trustedProxies.length > 0 ? config.trustedProxies : false,
    // Gateway calls in their usual form go from Node's server straight to the gateway: no router, no Fastify request
    // and reply, no logger child unless something is logged. Everything else — other routes, and gateway targets Fastify
    // must normalise or refuse first (absolute form, percent-escapes in the sub-path, a refused connection, a closing
    // server) — goes through Fastify, to the same gateway handler for gateway routes.
    serverFactory: (fastifyHandler) => {
      const server = createServer(timeoutOptions(config.limits).http, (req, res) => {
        const target =
          handle && !closing && GATEWAY_METHOD.has(req.method ?? '') ? GATEWAY_TARGET.exec(req.url ?? '') : null;
        if (!target || connectionRefused(req.socket)) return fastifyHandler(req, res);
        void handle!(new DirectRequest(req, target[1]!, target[2] ?? '', app.log), res);
      });
      // What Fastify sets on the server it makes itself (serverOptions: the same limits).
      server.keepAliveTimeout = config.limits.keepAliveTimeoutMs;
      server.requestTimeout = config.limits.requestTimeoutMs;
      return server;
    },
  });
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  limitConnections(app, config.limits, config.trustedProxies);

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    if (error instanceof ApiError) return sendApiError(reply, error);
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return sendApiError(reply, payloadTooLarge(reply, config.bodyLimitBytes));
    }
    // The body as sent did not match its Content-Length, or the client went away while sending it.
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      return sendApiError(reply, new ApiError('HTTP_REQUEST_MALFORMED', { message: error.message }));
    }
    request.log.error({ err: error }, 'unhandled proxy error');
    return sendApiError(reply, new ApiError('INTERNAL_ERROR'));
  });

  app.get('/healthz', async () => ({ data: { status: 'ok' } }));
  // Not here and not the control plane's either (the passthrough would reach it): metrics have their own listener.
  app.all('/metrics', (_request, reply) => sendApiError(reply, new ApiError('ROUTE_NOT_FOUND')));
  if (gateway && handle) {
    // Ready: config loaded, and the Redis epoch adopted (after a Redis loss the config in memory may be stale and paid
    // calls wait until the control plane has restored the new Redis).
    app.get('/readyz', async (_request, reply) => {
      const { store, state } = gateway;
      // A proxy whose Redis is being restored is not ready for a while; if that lasts (no control plane restores it),
      // it serves free calls on its last config and says it is degraded rather than take itself out of the balancer.
      const ready = store.loaded && !state.unready;
      return reply.code(ready ? 200 : 503).send({
        data: {
          status: !store.loaded ? 'unavailable' : state.restoring ? (ready ? 'degraded' : 'restoring') : 'ready',
          config_version: store.version,
          redis_epoch: state.current,
          restoring: state.restoring,
        },
      });
    });
    app.register(gatewayRoutes, { handle });
  }

  app.register(async (passthrough) => {
    // The whole body is read here, up to the control plane's own limit, before anything is sent on: a body too large
    // is our 413, and the control plane never answers early while we are still writing to it.
    passthrough.removeAllContentTypeParsers();
    passthrough.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
    passthrough.register(httpProxy, {
      upstream: config.controlPlaneUrl,
      prefix: '/',
      proxyPayloads: false,
      undici: { connections: 64, keepAliveTimeout: 30_000, headersTimeout: 30_000, bodyTimeout: 30_000 },
      // As read, byte for byte (reply-from would otherwise serialize a Buffer it takes for parsed JSON); an empty
      // chunked body goes on as no body, as the control plane reads a bodiless POST.
      handler: (request, reply, dest, options) =>
        Buffer.isBuffer(request.body)
          ? reply.from(dest, {
              ...options,
              body: request.body.length > 0 ? request.body : null,
              contentType: request.headers['content-type'] ?? 'application/octet-stream',
            })
          : reply.from(dest, options),
      replyOptions: {
        // reply-from retries a GET answered 503 up to ten times by default (0 means "the default"): the control
        // plane's 503 and Retry-After go to the client as they are, who decides when to come back.
        retryDelay: () => null,
        // The client's address replaces any X-Forwarded-For it sent: the control plane trusts this header from the
        // proxies (CONTROL_PLANE_TRUSTED_PROXIES) for per-client limits such as operator sign-in.
        // `Expect` is answered here (Node sends 100 Continue before the body is read) and is not sent on: undici
        // refuses a request that carries it, which made every such request a 503.
        rewriteRequestHeaders: (request, { expect: _answered, ...headers }) => ({
          ...headers,
          'x-request-id': String(request.id),
          'x-forwarded-for': request.ip,
        }),
        rewriteHeaders: (headers) => withoutHopByHop(headers),
        onError: (reply, { error }) => {
          reply.request.log.warn({ err: error }, 'control plane unreachable');
          sendApiError(
            reply as FastifyReply,
            new ApiError('CONTROL_PLANE_UNAVAILABLE', {
              headers: { 'retry-after': String(CONTROL_PLANE_RETRY_AFTER_SECONDS) },
            }),
          );
        },
      },
    });
  });

  return app;
};

export interface ProxyServer {
  app: FastifyInstance;
  url: string;
  /** Where Prometheus scrapes `/metrics` (CROCHET_METRICS_PORT), apart from the public port. */
  metricsUrl: string;
  store: ConfigStore;
  outbox: EventOutbox;
  state: RedisState;
  close(): Promise<void>;
}

/** The payment rails the configuration turns on; undefined when none is (per_call listings then answer 503). */
const buildPayments = async (
  config: ProxyConfig,
  redis: Redis,
  keys: ReturnType<typeof redisKeys>,
  parts: { scripts: GatewayScripts; outbox: EventOutbox; state: RedisState; metrics: ProxyMetrics },
  log: () => FastifyInstance | undefined,
) => {
  const p = config.payments;
  const rails: PaymentRail[] = [];
  const schemes = createX402Schemes(p, undefined, {
    pendingSettlementStore: redisPendingSettlementStore(redis, keys.paymentSettling),
    // One settler key, several proxies: nonces are picked under a lease in Redis (plugins settler-nonces.ts).
    settlerCoordination: {
      redis,
      keys: (chainId, address) => ({
        lease: keys.settlerLease(chainId, address),
        nonce: keys.settlerNonce(chainId, address),
      }),
      log: { warn: (details, message) => log()?.log.warn(details, message) },
    },
  });
  // A Solana settlement counts at the rail's commitment, waited for as long as an EVM one; one not final in time is
  // remembered in Redis too, as the EVM one is: the buyer's retry may land on another proxy.
  const solanaFeePayer = p.solana
    ? await registerSvmScheme(schemes, p.solana, p.maxTimeoutSeconds, {
        confirmationTimeoutMs: p.verifyTimeoutMs,
        pendingSettlementStore: redisPendingSettlementStore(redis, (key) =>
          keys.paymentSettling(`${p.solana!.network}:${key}`),
        ),
      })
    : undefined;
  // Transactions this gateway sent to settle x402 payments can never count again as direct transfers.
  const settler = p.evm?.settlerKey ? privateKeyToAccount(p.evm.settlerKey).address.toLowerCase() : undefined;
  if (p.solana) rails.push(solanaTransferRail(p.solana, undefined, solanaFeePayer ? [solanaFeePayer] : []));
  if (p.evm) rails.push(evmTransferRail(p.evm, undefined, settler ? [settler] : []));
  if (p.relay && p.evm) rails.push(relayRail(p.relay, p.evm, { timeoutMs: p.verifyTimeoutMs }));
  if (schemes.requirements.size > 0) {
    rails.push(x402Rail(schemes, { evmMinPriceAtomic: p.evm?.minPriceAtomic ?? null }));
  }
  if (rails.length === 0) return undefined;
  return new Payments({
    config: p,
    rails,
    ...parts,
    redis,
    keys,
    requestIds: new PaymentRequestIds(config.dataPlaneKey),
    solanaFeePayer,
    publicBaseUrl: config.publicBaseUrl,
    keyRateLimitPerMinute: config.keyRateLimitPerMinute,
    listingRateLimitPerMinute: config.listingRateLimitPerMinute,
    commandTimeoutMs: config.redisCommandTimeoutMs,
    resolveMs: config.paymentResolveMs,
    log: {
      warn: (details, message) => log()?.log.warn(details, message),
      error: (details, message) => log()?.log.error(details, message),
    },
  });
};

/**
 * TCP keepalive probes on the Redis connections after this long idle: an idle connection (the subscriber, a quiet
 * command connection) whose peer vanished without closing it — a host gone, a partition — is found dead and replaced
 * in about 40 s, not after the system's two hours. A connection with commands unanswered is covered by the command
 * timeout instead (each command fails; the socket goes when TCP's retransmissions give up).
 */
const REDIS_KEEPALIVE_MS = 30_000;

/**
 * Connects to Redis (a command connection that fails fast, and a subscriber), loads the published config, and
 * listens. After the first load the proxy keeps serving on its last config whatever happens to Redis or the
 * control plane.
 */
export const startProxy = async (config: ProxyConfig): Promise<ProxyServer> => {
  const keys = redisKeys(config.redisPrefix);
  // The hot-path connection fails fast instead of queueing: a slow Redis must not hold requests. Commands issued in
  // the same tick go out as one write (auto-pipelining): under load, many calls' admissions share a round trip's
  // syscalls on both sides, each still its own script.
  const redis = new Redis(config.redisUrl, {
    enableAutoPipelining: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: config.redisCommandTimeoutMs,
    lazyConnect: true,
    keepAlive: REDIS_KEEPALIVE_MS,
  });
  const subscriber = new Redis(config.redisUrl, { lazyConnect: true, keepAlive: REDIS_KEEPALIVE_MS });
  // Both reconnect by themselves; what a request needs is decided per call.
  redis.on('error', () => {});
  subscriber.on('error', () => {});
  const outbox = new EventOutbox({ redis, streamKey: keys.events });
  const upstream = createGuardedAgent({
    allowPrivate: config.allowPrivateEndpoints,
    connectTimeoutMs: config.connectTimeoutMs,
    keepAliveTimeoutMs: 30_000,
    connections: 256,
  });
  let app: FastifyInstance | undefined;
  const log = {
    warn: (d: object, m: string) => app?.log.warn(d, m),
    error: (d: object | string, m?: string) => app?.log.error(d, m),
  };
  const store = new ConfigStore({
    redis,
    subscriber,
    keys,
    box: new CryptoBox(config.dataPlaneKey),
    log,
    pollMs: config.configPollMs,
  });
  let payments: Payments | undefined;
  const state = new RedisState({
    redis,
    keys,
    store,
    outbox,
    pollMs: config.configPollMs,
    acceptWindowSeconds: config.payments.acceptWindowSeconds,
    reassert: (entries) => payments?.reassert(entries) ?? Promise.resolve(),
    log,
  });
  const metrics = createProxyMetrics(store, redis, { outbox, state });
  const scripts = createGatewayScripts(redis, keys);
  const timed: GatewayScripts = {
    admitFree: timedRedis(metrics, 'admit', scripts.admitFree),
    admitUnpaid: timedRedis(metrics, 'admit_unpaid', scripts.admitUnpaid),
    admitPaid: timedRedis(metrics, 'paid_admit', scripts.admitPaid),
    release: timedRedis(metrics, 'release', scripts.release),
    returnSpend: timedRedis(metrics, 'return_spend', scripts.returnSpend),
    consume: timedRedis(metrics, 'consume', scripts.consume),
  };
  payments = await buildPayments(config, redis, keys, { scripts: timed, outbox, state, metrics }, () => app);
  // Without a receipt key the proxy signs nothing: paid answers then carry no X-Crochet-Receipt.
  const receipts = config.receipts
    ? {
        issuer: config.publicBaseUrl,
        signer: await createReceiptSigner(config.receipts.keys, { ttlSeconds: config.receipts.ttlSeconds }),
      }
    : undefined;
  app = buildProxy(config, {
    ...(payments ? { payments } : {}),
    store,
    state,
    scripts: timed,
    localAdmission: new LocalAdmission(),
    outbox,
    health: new RedisHealth(),
    upstream,
    keyRateLimitPerMinute: config.keyRateLimitPerMinute,
    listingRateLimitPerMinute: config.listingRateLimitPerMinute,
    ...(receipts ? { receipts } : {}),
    metrics,
  });
  await Promise.all([redis.connect().catch(() => {}), subscriber.connect().catch(() => {})]);
  await store.start();
  await state.start();
  const url = await app.listen({ host: config.host, port: config.port });
  const metricsListener = await startMetricsListener(metrics.register, {
    host: config.metricsHost,
    port: config.metricsPort,
  });
  const server = app;
  let closing: Promise<void> | undefined;
  return {
    app: server,
    url,
    metricsUrl: metricsListener.url,
    store,
    outbox,
    state,
    close: () =>
      (closing ??= (async () => {
        await closeServer(server);
        await metricsListener.close();
        store.stop();
        state.stop();
        await outbox.close();
        await upstream.close();
        redis.disconnect();
        subscriber.disconnect();
      })()),
  };
};
