/**
 * Every Redis key and channel Crochet uses, in one place. All keys share a prefix so that several deployments (or
 * test runs) can share one Redis: `CROCHET_REDIS_PREFIX`, default `crochet:`.
 */
export const DEFAULT_REDIS_PREFIX = 'crochet:';

export const redisKeys = (prefix: string = DEFAULT_REDIS_PREFIX) =>
  Object.freeze({
    /**
     * The Redis epoch (DESIGN §2 durability rule): a random id set when a Redis is first used. A Redis that lost
     * everything has none (or a new one): both planes then know that what they kept there is gone.
     */
    epoch: `${prefix}epoch`,
    /** The Redis server run id the epoch was set under: a restarted or replaced server gets a new epoch. */
    epochRunId: `${prefix}epoch:run-id`,
    /** Hash proxy instance → JSON {seen_ms, accept_window_seconds}: the proxies alive, refreshed on every poll. */
    proxies: `${prefix}proxies`,
    /** Set of the proxy instances that put back what they had written into a new epoch (`<epoch>` appended). */
    epochAcks: (epoch: string) => `${prefix}epoch:acks:${epoch}`,
    /** The epoch whose state the control plane has restored (config, consumed proofs, spend): paid calls wait for it. */
    epochRestored: `${prefix}epoch:restored`,
    /** Held by the control plane restoring an epoch (one at a time; expires should it die meanwhile). */
    epochRestoreLock: `${prefix}epoch:restoring`,
    /** The stream id up to which every event is committed to PostgreSQL; proxies keep what they wrote until then. */
    eventsCommitted: `${prefix}events:committed`,
    /** Integer: the version of the published config; bumped by every change. */
    configVersion: `${prefix}config:version`,
    /** Hash listing id → JSON ListingConfig (see config.ts). */
    configListings: `${prefix}config:listings`,
    /** Hash key hash → JSON KeyConfig. */
    configKeys: `${prefix}config:keys`,
    /** Hash agent id → JSON AgentConfig. */
    configAgents: `${prefix}config:agents`,
    /** Pub/sub channel of ConfigNotice JSON messages. */
    configNotices: `${prefix}config:notices`,
    /** Stream of gateway events (GatewayEvent) from the proxies to the control plane. */
    events: `${prefix}events`,
    /** Stream of events that failed processing too often. */
    eventsDead: `${prefix}events:dead`,
    /** The gateway request a payment proof paid for (no expiry: a proof pays once, ever). */
    paymentUsed: (proofId: string) => `${prefix}pay:used:${proofId}`,
    /** A proof verified on its rail and not yet consumed: hash {listing, buyer, payment, settlement}. */
    paymentVerified: (proofId: string) => `${prefix}pay:verified:${proofId}`,
    /**
     * A payment request issued before payment request ids proved themselves (JSON PaymentRequestRecord): read, never
     * written, so that a buyer who paid against one just before an upgrade is still served.
     */
    paymentRequestLegacy: (id: string) => `${prefix}pay:req:${id}`,
    /** An x402 settlement broadcast but not confirmed in time: its transaction hash, keyed by the x402 mechanism. */
    paymentSettling: (key: string) => `${prefix}pay:settling:${key}`,
    /**
     * The lease one proxy holds while it picks a nonce for an EVM settler account and broadcasts with it (a random
     * token, expiring on its own should the proxy die). `<chain id>:<address>`: nonces are per account per chain.
     */
    settlerLease: (chainId: number, address: string) => `${prefix}settler:${chainId}:${address.toLowerCase()}:lease`,
    /**
     * Hash {next, stuck_at, stuck_since}: the nonce after the last broadcast any proxy made from that account, and
     * since when the chain's pending nonce has stood still below it (a transaction dropped: the gap gets refilled).
     */
    settlerNonce: (chainId: number, address: string) => `${prefix}settler:${chainId}:${address.toLowerCase()}:nonce`,
    /** Atomic units an agent spent on paid calls in one UTC day (`utcDay`); counted at admission, kept two days. */
    spend: (agentId: string, day: string) => `${prefix}spend:${agentId}:${day}`,
    /**
     * An agent's spend reservations under its daily cap (plugins admission scripts): the prices of the payment
     * requests issued to it and still open — a sorted set by expiry, the same members by prefix, and their total.
     */
    reservations: (agentId: string) => `${prefix}spend:res:${agentId}`,
    reservationsByPrefix: (agentId: string) => `${prefix}spend:res:${agentId}:lex`,
    reservationsTotal: (agentId: string) => `${prefix}spend:res:${agentId}:total`,
    /** Rate-limit state (GCRA theoretical arrival time) for one API key. */
    rateKey: (keyId: string) => `${prefix}rl:k:${keyId}`,
    /** Rate-limit state for one listing. */
    rateListing: (listingId: string) => `${prefix}rl:l:${listingId}`,
  });

export type RedisKeys = ReturnType<typeof redisKeys>;

/** The UTC day of a time as YYYYMMDD: spend caps reset at 00:00 UTC. */
export const utcDay = (ms: number = Date.now()): string => new Date(ms).toISOString().slice(0, 10).replaceAll('-', '');

const DAY_MS = 86_400_000;
let today = { day: '', endsAt: 0 };
/** `utcDay()` for now, computed once per day instead of once per call (the gateway asks on every paid call). */
export const currentUtcDay = (now: number = Date.now()): string => {
  if (now >= today.endsAt || now < today.endsAt - DAY_MS) {
    today = { day: utcDay(now), endsAt: (Math.floor(now / DAY_MS) + 1) * DAY_MS };
  }
  return today.day;
};

/** The consumer group of the control plane on the events stream. */
export const EVENTS_GROUP = 'control-plane';
