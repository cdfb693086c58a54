import {
  loadPaymentsConfig,
  type PaymentsConfig,
  parseReceiptKeys,
  type ReceiptPrivateJwk,
  readServerLimits,
  type ServerLimits,
} from '@crochet/plugins';
import { ConfigError, CryptoBox, DEFAULT_REDIS_PREFIX, EnvReader, toAtomic } from '@crochet/protocol';
import { minimumRetentionDays } from './history-partitions.js';
import { SCORE } from './score/formula.js';

/** Everything the control plane reads from its environment, validated at start. */
export interface ControlPlaneConfig {
  host: string;
  port: number;
  publicBaseUrl: string;
  /**
   * `CONTROL_PLANE_TRUSTED_PROXIES`: addresses or CIDRs (comma-separated) whose X-Forwarded-For names the client, for
   * per-client limits such as operator sign-in; empty: the peer address is the client.
   */
  trustedProxies: string[];
  databaseUrl: string;
  redisUrl: string;
  /** Prefix of every Redis key (protocol redis-keys.ts); lets deployments and test runs share one Redis. */
  redisPrefix: string;
  /** How often the whole config is published again (repairs a publish lost while Redis was down). */
  configResyncSeconds: number;
  logLevel: string;
  powDifficulty: number;
  powTtlSeconds: number;
  recoveryTtlSeconds: number;
  allowPrivateEndpoints: boolean;
  encryptionKey: Buffer;
  encryptionKeysPrevious: Buffer[];
  /** Seals what the proxies need (upstream URLs, signing secrets) in the published config; proxies hold it too. */
  dataPlaneKey: Buffer;
  secretOverlapSeconds: number;
  evmChainId: number;
  solanaChainId: string;
  maxActiveKeys: number;
  /** Wallets one agent may hold (verified or not); each verified EVM wallet is in the proxies' config. */
  maxWallets: number;
  /** `CONTROL_PLANE_BODY_LIMIT_BYTES`; the proxies read it too and enforce it before passing a body through. */
  bodyLimitBytes: number;
  /** Timeouts and connection caps of the server (`CROCHET_HEADERS_TIMEOUT_MS`, …; the same names as the proxy's). */
  limits: ServerLimits;
  /**
   * `CONTROL_PLANE_METRICS_HOST`/`CONTROL_PLANE_METRICS_PORT`: the Prometheus listener, apart from the API port (which
   * the proxies pass public requests through to). 0: any free port.
   */
  metricsHost: string;
  metricsPort: number;
  /** `CROCHET_FEE_BPS`: the marketplace fee in basis points when a listing has no `fee_bps` of its own (§3.5). */
  feeBps: number;
  /**
   * `CROCHET_RECEIPT_KEYS`, the proxies' receipt keys (first = signing, the rest = previous ones still valid): only
   * their public parts are used here, published at `/.well-known/jwks.json`. Empty when none is configured.
   */
  receiptKeys: ReceiptPrivateJwk[];
  /** `CROCHET_RECONCILE_INTERVAL_SECONDS`: how often the reconciliation job runs (§3.5); 0 turns the timer off. */
  reconcileIntervalSeconds: number;
  /** `CROCHET_RECONCILE_STALE_SECONDS`: a paid request with no end (or a used proof with no record) this old is reported. */
  reconcileStaleSeconds: number;
  /** `CROCHET_SCORE_INTERVAL_SECONDS`: how often the Crochet Score job runs (§3.6); 0 turns the timer off. */
  scoreIntervalSeconds: number;
  /**
   * `CROCHET_HISTORY_RETENTION_DAYS`: gateway-request history older than this many days is dropped a whole month at a
   * time (history-partitions.ts), except rows a money path still needs; 0 (the default) keeps everything. At least
   * `minimumRetentionDays` (90: the Crochet Score's window).
   */
  historyRetentionDays: number;
  /**
   * `CROCHET_HISTORY_INTERVAL_SECONDS`: how often the history job adds months ahead and applies the retention (it also
   * runs once at start); 0 turns the timer off.
   */
  historyIntervalSeconds: number;
  /**
   * `CROCHET_TRANSFERS_INTERVAL_MS`: how often the transfers job (§3.9) looks for payouts and refunds to send and
   * sent ones to confirm; a payout asked for starts at once. 0: only when asked.
   */
  transfersIntervalMs: number;
  /**
   * `CROCHET_PAYOUT_MINIMUM` (decimal USDC, default 0.10): the smallest payout, and the lowest automatic-payout
   * threshold. A payout to a fresh Solana wallet makes its token account, at the treasury's cost in SOL: smaller ones
   * would cost more than they pay.
   */
  payoutMinimumAtomic: bigint;
  /**
   * The rails whose chains reconciliation checks journals against: only those whose RPC URL (and receiving address)
   * are set in the control plane's environment (`CROCHET_EVM_RPC_URL`, `CROCHET_SOLANA_RPC_URL`, …).
   */
  payments: Pick<PaymentsConfig, 'evm' | 'solana' | 'acceptWindowSeconds' | 'devFaucetUrl'>;
  /**
   * `CROCHET_EPOCH_GRACE_MS`: after Redis lost its data, the longest wait for the proxies seen alive lately to put
   * back what they wrote (each acknowledges when done) before this control plane restores the rest from PostgreSQL
   * (paid calls wait meanwhile).
   */
  epochGraceMs: number;
  /** `CROCHET_EPOCH_POLL_MS`: how often the Redis epoch is checked (also on every reconnect). */
  epochPollMs: number;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Reads and validates the configuration; throws a ConfigError with one line per bad variable. */
const payoutMinimum = (r: EnvReader): bigint => {
  const text = r.string('CROCHET_PAYOUT_MINIMUM', '0.10');
  const atomic = toAtomic(text, 'USDC');
  if (atomic === null || atomic <= 0n) {
    r.problem('CROCHET_PAYOUT_MINIMUM', 'must be a positive decimal USDC amount (e.g. 0.10), at most 6 decimals');
    return 100_000n;
  }
  return atomic;
};

export const loadControlPlaneConfig = (env: NodeJS.ProcessEnv = process.env): ControlPlaneConfig => {
  const r = new EnvReader(env);
  const port = r.int('CONTROL_PLANE_PORT', 8081, { min: 0, max: 65535 });
  const publicBaseUrl = r.url('PUBLIC_BASE_URL', 'http://localhost:8080', ['http:', 'https:']).replace(/\/+$/, '');
  const databaseUrl = r.url('DATABASE_URL', undefined, ['postgres:', 'postgresql:']);
  if (databaseUrl === undefined) r.problem('DATABASE_URL', 'is required (PostgreSQL connection URL)');
  const redisPrefix = r.string('CROCHET_REDIS_PREFIX', DEFAULT_REDIS_PREFIX);
  // Glob characters are refused because operators (and the tests) select a deployment's keys with SCAN MATCH prefix*.
  if (!/^[A-Za-z0-9_.:-]{0,63}:$/.test(redisPrefix)) {
    r.problem('CROCHET_REDIS_PREFIX', 'must be letters, digits, _ . - or : and end with ":" (e.g. crochet:)');
  }
  const logLevel = r.string('LOG_LEVEL', 'info');
  if (!LOG_LEVELS.includes(logLevel)) r.problem('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}`);

  const keyText = r.required('CROCHET_ENCRYPTION_KEY', 'base64 of 32 random bytes: openssl rand -base64 32');
  const encryptionKey = keyText ? CryptoBox.parseKey(keyText) : null;
  if (keyText && !encryptionKey) r.problem('CROCHET_ENCRYPTION_KEY', 'must be base64 of exactly 32 bytes');
  const encryptionKeysPrevious: Buffer[] = [];
  for (const text of (r.string('CROCHET_ENCRYPTION_KEYS_PREVIOUS') ?? '').split(',').filter(Boolean)) {
    const key = CryptoBox.parseKey(text.trim());
    if (key) encryptionKeysPrevious.push(key);
    else r.problem('CROCHET_ENCRYPTION_KEYS_PREVIOUS', 'must be comma-separated base64 keys of 32 bytes');
  }

  const dataPlaneText = r.required('CROCHET_DATA_PLANE_KEY', 'base64 of 32 random bytes, shared with the proxies');
  const dataPlaneKey = dataPlaneText ? CryptoBox.parseKey(dataPlaneText) : null;
  if (dataPlaneText && !dataPlaneKey) r.problem('CROCHET_DATA_PLANE_KEY', 'must be base64 of exactly 32 bytes');

  const trustedProxies = r.addresses('CONTROL_PLANE_TRUSTED_PROXIES');

  const config: ControlPlaneConfig = {
    host: r.string('CONTROL_PLANE_HOST', '127.0.0.1'),
    port,
    publicBaseUrl,
    trustedProxies,
    databaseUrl: databaseUrl ?? '',
    redisUrl: r.url('REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:']),
    redisPrefix,
    configResyncSeconds: r.int('CROCHET_CONFIG_RESYNC_SECONDS', 300, { min: 5, max: 86_400 }),
    logLevel,
    powDifficulty: r.int('CROCHET_POW_DIFFICULTY', 20, { min: 0, max: 32 }),
    powTtlSeconds: r.int('CROCHET_POW_TTL_SECONDS', 300, { min: 10, max: 86_400 }),
    recoveryTtlSeconds: r.int('CROCHET_RECOVERY_TTL_SECONDS', 600, { min: 10, max: 86_400 }),
    allowPrivateEndpoints: r.flag('CROCHET_ALLOW_PRIVATE_ENDPOINTS'),
    encryptionKey: encryptionKey ?? Buffer.alloc(32),
    encryptionKeysPrevious,
    dataPlaneKey: dataPlaneKey ?? Buffer.alloc(32),
    secretOverlapSeconds: r.int('CROCHET_SECRET_OVERLAP_SECONDS', 86_400, { min: 0, max: 30 * 86_400 }),
    evmChainId: r.int('CROCHET_SIWE_CHAIN_ID', 1, { min: 1, max: 2 ** 31 }),
    solanaChainId: r.string('CROCHET_SIWS_CHAIN_ID', 'mainnet'),
    maxActiveKeys: r.int('CROCHET_MAX_ACTIVE_KEYS', 10, { min: 1, max: 100 }),
    maxWallets: r.int('CROCHET_MAX_WALLETS', 10, { min: 1, max: 100 }),
    bodyLimitBytes: r.int('CONTROL_PLANE_BODY_LIMIT_BYTES', 256 * 1024, { min: 1024, max: 16 * 1024 * 1024 }),
    limits: readServerLimits(r),
    metricsHost: r.string('CONTROL_PLANE_METRICS_HOST', '127.0.0.1'),
    metricsPort: r.int('CONTROL_PLANE_METRICS_PORT', 9465, { min: 0, max: 65535 }),
    feeBps: r.int('CROCHET_FEE_BPS', 500, { min: 0, max: 10_000 }),
    receiptKeys: [],
    reconcileIntervalSeconds: r.int('CROCHET_RECONCILE_INTERVAL_SECONDS', 300, { min: 0, max: 86_400 }),
    reconcileStaleSeconds: r.int('CROCHET_RECONCILE_STALE_SECONDS', 600, { min: 1, max: 30 * 86_400 }),
    scoreIntervalSeconds: r.int('CROCHET_SCORE_INTERVAL_SECONDS', 300, { min: 0, max: 86_400 }),
    historyRetentionDays: r.int('CROCHET_HISTORY_RETENTION_DAYS', 0, { min: 0, max: 36_500 }),
    historyIntervalSeconds: r.int('CROCHET_HISTORY_INTERVAL_SECONDS', 3_600, { min: 0, max: 86_400 }),
    transfersIntervalMs: r.int('CROCHET_TRANSFERS_INTERVAL_MS', 5_000, { min: 0, max: 3_600_000 }),
    payoutMinimumAtomic: payoutMinimum(r),
    payments: { evm: undefined, solana: undefined, acceptWindowSeconds: 0, devFaucetUrl: undefined },
    epochGraceMs: r.int('CROCHET_EPOCH_GRACE_MS', 5_000, { min: 0, max: 60_000 }),
    epochPollMs: r.int('CROCHET_EPOCH_POLL_MS', 1_000, { min: 50, max: 60_000 }),
  };
  if (config.metricsPort !== 0 && config.metricsPort === port) {
    r.problem('CONTROL_PLANE_METRICS_PORT', 'must differ from CONTROL_PLANE_PORT: metrics are kept off the API port');
  }
  const payments = loadPaymentsConfig(r);
  config.payments = {
    evm: payments.evm,
    solana: payments.solana,
    acceptWindowSeconds: payments.acceptWindowSeconds,
    devFaucetUrl: payments.devFaucetUrl,
  };
  const minimumDays = minimumRetentionDays({
    reconcileStaleSeconds: config.reconcileStaleSeconds,
    acceptWindowSeconds: config.payments.acceptWindowSeconds,
  });
  if (config.historyRetentionDays > 0 && config.historyRetentionDays < minimumDays) {
    r.problem(
      'CROCHET_HISTORY_RETENTION_DAYS',
      `must be 0 (keep all history) or at least ${minimumDays} days, got ${config.historyRetentionDays}: the Crochet ` +
        `Score reads ${SCORE.windowDays} days of gateway requests, reconciliation CROCHET_RECONCILE_STALE_SECONDS ` +
        `and payment proofs CROCHET_PAYMENT_ACCEPT_WINDOW_SECONDS of them`,
    );
  }
  const receiptKeysText = r.string('CROCHET_RECEIPT_KEYS');
  if (receiptKeysText !== undefined) {
    const parsed = parseReceiptKeys(receiptKeysText);
    if (parsed.ok) config.receiptKeys = parsed.keys;
    else r.problem('CROCHET_RECEIPT_KEYS', parsed.problem);
  }
  r.done();
  return config;
};

/**
 * For the one-shot commands (`npm run reconcile`, `npm run score`): the configuration from the environment, or null
 * after printing what is wrong with it as `<command>: …` (the command then exits 2).
 */
export const loadCommandConfig = (command: string): ControlPlaneConfig | null => {
  try {
    return loadControlPlaneConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`${command}: ${error.message}`);
    return null;
  }
};
