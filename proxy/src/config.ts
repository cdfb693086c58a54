import {
  loadPaymentsConfig,
  type PaymentsConfig,
  parseReceiptKeys,
  RECEIPT_TTL_SECONDS_DEFAULT,
  type ReceiptPrivateJwk,
  readServerLimits,
  type ServerLimits,
} from '@crochet/plugins';
import { CryptoBox, DEFAULT_REDIS_PREFIX, EnvReader } from '@crochet/protocol';

/** Everything a proxy reads from its environment, validated at start. */
export interface ProxyConfig {
  host: string;
  port: number;
  publicBaseUrl: string;
  controlPlaneUrl: string;
  redisUrl: string;
  redisPrefix: string;
  logLevel: string;
  /**
   * `PROXY_TRUSTED_PROXIES`: addresses or CIDRs of load balancers in front of the proxy, whose X-Forwarded-For names
   * the client; empty: the peer is the client. The proxy passes the client's address on to the control plane.
   */
  trustedProxies: string[];
  /**
   * `CONTROL_PLANE_BODY_LIMIT_BYTES`, the control plane's own limit: the proxy reads each non-gateway body up to it
   * before passing it through, so a body too large is a 413 from here, never a race with the control plane closing
   * the connection mid-upload (which the client would see as 503).
   */
  bodyLimitBytes: number;
  /** Timeouts and connection caps of the public server (`CROCHET_HEADERS_TIMEOUT_MS`, …). */
  limits: ServerLimits;
  /** `CROCHET_METRICS_HOST`/`CROCHET_METRICS_PORT`: the Prometheus listener, never the public port. 0: any free port. */
  metricsHost: string;
  metricsPort: number;
  /** Opens the upstream URLs and signing secrets the control plane publishes. */
  dataPlaneKey: Buffer;
  allowPrivateEndpoints: boolean;
  /** Operator defaults: calls per minute per API key and per listing, where the published config sets none. */
  keyRateLimitPerMinute: number;
  listingRateLimitPerMinute: number;
  /** How often the proxy checks the config version (catches a missed notice): the propagation bound. */
  configPollMs: number;
  connectTimeoutMs: number;
  /** Redis commands on the hot path fail after this long (then the free-listing fallback applies). */
  redisCommandTimeoutMs: number;
  /**
   * `CROCHET_PAYMENT_RESOLVE_MS`: how long a paid call whose admission's outcome is unknown (Redis slow or cut off)
   * waits for Redis to tell before the buyer is answered 503 and told to retry with the same proof. Asking again is
   * only safe once the first script's deadline has passed (command timeout + 1 s), so a budget below about twice the
   * command timeout + 1 s gives up after the first timeout.
   */
  paymentResolveMs: number;
  payments: PaymentsConfig;
  /**
   * `CROCHET_RECEIPT_KEYS` (JSON array of private Ed25519 JWKs; the first signs) and `CROCHET_RECEIPT_TTL_SECONDS`.
   * null when no key is configured: the proxy then sends no receipts.
   */
  receipts: { keys: ReceiptPrivateJwk[]; ttlSeconds: number } | null;
}

export const loadProxyConfig = (env: NodeJS.ProcessEnv = process.env): ProxyConfig => {
  const r = new EnvReader(env);
  const dataPlaneText = r.required('CROCHET_DATA_PLANE_KEY', 'base64 of 32 bytes, the same as the control plane');
  const dataPlaneKey = dataPlaneText ? CryptoBox.parseKey(dataPlaneText) : null;
  if (dataPlaneText && !dataPlaneKey) r.problem('CROCHET_DATA_PLANE_KEY', 'must be base64 of exactly 32 bytes');
  const redisPrefix = r.string('CROCHET_REDIS_PREFIX', DEFAULT_REDIS_PREFIX);
  if (!/^[A-Za-z0-9_.:-]{0,63}:$/.test(redisPrefix)) {
    r.problem('CROCHET_REDIS_PREFIX', 'must be at most 64 characters of letters, digits, _ . : - ending with ":"');
  }
  const config: ProxyConfig = {
    host: r.string('HOST', '0.0.0.0'),
    port: r.int('PORT', 8080, { min: 0, max: 65535 }),
    publicBaseUrl: r.url('PUBLIC_BASE_URL', 'http://localhost:8080', ['http:', 'https:']).replace(/\/+$/, ''),
    controlPlaneUrl: r.url('CONTROL_PLANE_URL', 'http://127.0.0.1:8081', ['http:', 'https:']).replace(/\/+$/, ''),
    redisUrl: r.url('REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:']),
    redisPrefix,
    logLevel: r.string('LOG_LEVEL', 'info'),
    trustedProxies: r.addresses('PROXY_TRUSTED_PROXIES'),
    bodyLimitBytes: r.int('CONTROL_PLANE_BODY_LIMIT_BYTES', 256 * 1024, { min: 1024, max: 16 * 1024 * 1024 }),
    limits: readServerLimits(r),
    metricsHost: r.string('CROCHET_METRICS_HOST', '127.0.0.1'),
    metricsPort: r.int('CROCHET_METRICS_PORT', 9464, { min: 0, max: 65535 }),
    dataPlaneKey: dataPlaneKey ?? Buffer.alloc(32),
    allowPrivateEndpoints: r.flag('CROCHET_ALLOW_PRIVATE_ENDPOINTS'),
    keyRateLimitPerMinute: r.int('CROCHET_KEY_RATE_LIMIT_PER_MINUTE', 600, { min: 1, max: 1_000_000 }),
    listingRateLimitPerMinute: r.int('CROCHET_LISTING_RATE_LIMIT_PER_MINUTE', 6000, { min: 1, max: 10_000_000 }),
    configPollMs: r.int('CROCHET_CONFIG_POLL_MS', 1000, { min: 50, max: 60_000 }),
    connectTimeoutMs: r.int('CROCHET_UPSTREAM_CONNECT_TIMEOUT_MS', 5000, { min: 100, max: 60_000 }),
    redisCommandTimeoutMs: r.int('CROCHET_REDIS_COMMAND_TIMEOUT_MS', 500, { min: 10, max: 10_000 }),
    paymentResolveMs: r.int('CROCHET_PAYMENT_RESOLVE_MS', 5_000, { min: 0, max: 60_000 }),
    payments: loadPaymentsConfig(r),
    receipts: null,
  };
  if (r.string('PROXY_BODY_LIMIT_BYTES') !== undefined) {
    r.problem(
      'PROXY_BODY_LIMIT_BYTES',
      'is replaced by CONTROL_PLANE_BODY_LIMIT_BYTES (set the same value for both planes)',
    );
  }
  if (config.metricsPort !== 0 && config.metricsPort === config.port) {
    r.problem('CROCHET_METRICS_PORT', 'must differ from PORT: metrics are never served on the public port');
  }
  const receiptKeysText = r.string('CROCHET_RECEIPT_KEYS');
  const receiptTtlSeconds = r.int('CROCHET_RECEIPT_TTL_SECONDS', RECEIPT_TTL_SECONDS_DEFAULT, {
    min: 60,
    max: 10 * 365 * 86_400,
  });
  if (receiptKeysText !== undefined) {
    const parsed = parseReceiptKeys(receiptKeysText);
    if (parsed.ok) config.receipts = { keys: parsed.keys, ttlSeconds: receiptTtlSeconds };
    else r.problem('CROCHET_RECEIPT_KEYS', parsed.problem);
  }
  r.done();
  return config;
};
