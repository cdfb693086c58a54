import {
  type AgentConfig,
  type ConfigNotice,
  type CryptoBox,
  hashApiKey,
  isAgentConfig,
  isKeyConfig,
  isListingConfig,
  isWellFormedApiKey,
  type KeyConfig,
  type ListingConfig,
  type RedisKeys,
} from '@crochet/protocol';
import type { Redis } from 'ioredis';

/** A listing as the gateway serves it: validated, secrets opened, frozen. */
export interface GatewayListing {
  readonly id: string;
  readonly sellerId: string;
  readonly status: ListingConfig['status'];
  readonly pricingModel: ListingConfig['pricing_model'];
  readonly priceAtomic: bigint;
  readonly currency: string;
  readonly upstream: URL;
  /** The upstream URL split once per config change for the forward: origin, path without trailing slashes, query. */
  readonly upstreamOrigin: string;
  readonly upstreamPath: string;
  readonly upstreamSearch: string;
  /** Newest first; a secret whose `expiresAtMs` has passed is no longer used. */
  readonly secrets: readonly { readonly keyId: string; readonly secret: string; readonly expiresAtMs: number | null }[];
  readonly rateLimitPerMinute: number | null;
  readonly bodyLimitBytes: number;
  readonly timeoutMs: number;
  readonly settlementPolicy: ListingConfig['settlement_policy'];
}

/** Must match the control plane's data-plane sealing contexts. */
const context = {
  upstream: (listingId: string) => `dp:listing:${listingId}:upstream`,
  secret: (listingId: string, keyId: string) => `dp:listing:${listingId}:secret:${keyId}`,
};

export interface ConfigStoreOptions {
  redis: Redis;
  /** A connection of its own: a subscribed connection can do nothing else. */
  subscriber: Redis;
  keys: RedisKeys;
  box: CryptoBox;
  log: { warn(details: object, message: string): void; error(details: object | string, message?: string): void };
  pollMs: number;
}

/**
 * The proxy's copy of the published config (DESIGN §2). Loads the snapshot, applies change notices in version
 * order, reloads the whole snapshot on a version gap, and polls the version so a lost notice costs at most one poll
 * interval. Whatever it loaded last stays in service when Redis or the control plane is down.
 */
export class ConfigStore {
  readonly #o: ConfigStoreOptions;
  #listings = new Map<string, GatewayListing>();
  #keys = new Map<string, KeyConfig>();
  #agents = new Map<string, AgentConfig>();
  #reloading: Promise<void> | undefined;
  #queued: ConfigNotice[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** Version of the state in memory; 0 until the first load. */
  version = 0;
  /** Unix ms of the last load or applied notice. */
  appliedAtMs = 0;
  /** Entries refused by validation since start (a bad entry never replaces a good one). */
  rejected = 0;

  constructor(options: ConfigStoreOptions) {
    this.#o = options;
  }

  get loaded(): boolean {
    return this.version > 0;
  }

  listing(id: string): GatewayListing | undefined {
    return this.#listings.get(id);
  }

  key(hash: string): KeyConfig | undefined {
    return this.#keys.get(hash);
  }

  /**
   * The stored form of a presented key, or null when it is not a well-formed key. Agents send the same key on every
   * call: remembering the answer skips the checksum and SHA-256 on the hot path. Bounded; cleared when full.
   */
  keyHash(token: string): string | null {
    const known = this.#hashes.get(token);
    if (known !== undefined) return known;
    const hash = isWellFormedApiKey(token) ? hashApiKey(token) : null;
    if (this.#hashes.size >= 10_000) this.#hashes.clear();
    this.#hashes.set(token, hash);
    return hash;
  }

  #hashes = new Map<string, string | null>();

  agent(id: string): AgentConfig | undefined {
    return this.#agents.get(id);
  }

  /** Subscribes, loads, and starts polling. Resolves once a first snapshot is in memory (retrying until then). */
  async start(): Promise<void> {
    const { subscriber, keys, log } = this.#o;
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === keys.configNotices) this.#onNotice(message);
    });
    // Subscribe before loading: a change made while the snapshot loads arrives as a notice, never falls between.
    await subscriber.subscribe(keys.configNotices);
    // After a reconnect the subscription is restored by ioredis, but notices sent meanwhile are lost: check.
    subscriber.on('ready', () => void this.#checkVersion());
    this.#timer = setInterval(() => void this.#checkVersion(), this.#o.pollMs);
    this.#timer.unref();
    for (;;) {
      try {
        await this.reload();
        return;
      } catch (error) {
        log.warn({ err: error }, 'config not loaded yet; retrying');
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Loads the whole snapshot atomically (one MULTI) and swaps it in. Concurrent calls share one load. */
  reload(): Promise<void> {
    this.#reloading ??= this.#load().finally(() => {
      this.#reloading = undefined;
      const queued = this.#queued.sort((a, b) => a.version - b.version);
      this.#queued = [];
      for (const notice of queued) this.#apply(notice);
    });
    return this.#reloading;
  }

  async #load(): Promise<void> {
    const { redis, keys } = this.#o;
    const results = await redis
      .multi()
      .get(keys.configVersion)
      .hgetall(keys.configListings)
      .hgetall(keys.configKeys)
      .hgetall(keys.configAgents)
      .exec();
    if (!results) throw new Error('config snapshot transaction aborted');
    for (const [error] of results) if (error) throw error;
    const version = Number(results[0]![1] ?? 0);
    if (version === 0) throw new Error('no config published yet');
    const listings = new Map<string, GatewayListing>();
    for (const [id, json] of Object.entries(results[1]![1] as Record<string, string>)) {
      const listing = this.#resolveListing(json);
      if (listing && listing.id === id) listings.set(id, listing);
    }
    const keyEntries = new Map<string, KeyConfig>();
    for (const [hash, json] of Object.entries(results[2]![1] as Record<string, string>)) {
      const entry = this.#parse(json, isKeyConfig);
      if (entry) keyEntries.set(hash, entry);
    }
    const agents = new Map<string, AgentConfig>();
    for (const [id, json] of Object.entries(results[3]![1] as Record<string, string>)) {
      const entry = this.#parse(json, isAgentConfig);
      if (entry) agents.set(id, entry);
    }
    this.#listings = listings;
    this.#keys = keyEntries;
    this.#agents = agents;
    this.version = version;
    this.appliedAtMs = Date.now();
  }

  #parse<T>(json: string, valid: (v: unknown) => v is T): T | undefined {
    try {
      const value: unknown = JSON.parse(json);
      if (valid(value)) return Object.freeze(value);
    } catch {}
    this.rejected++;
    this.#o.log.error('refused an invalid config entry');
    return undefined;
  }

  #resolveListing(entry: string | ListingConfig): GatewayListing | undefined {
    const config = typeof entry === 'string' ? this.#parse(entry, isListingConfig) : entry;
    if (!config || !isListingConfig(config)) return undefined;
    try {
      const { box } = this.#o;
      const upstream = new URL(box.open(config.upstream_sealed, context.upstream(config.id)));
      const secrets = config.secrets_sealed.map((s) =>
        Object.freeze({
          keyId: s.key_id,
          secret: box.open(s.sealed, context.secret(config.id, s.key_id)),
          expiresAtMs: s.expires_at === null ? null : Date.parse(s.expires_at),
        }),
      );
      return Object.freeze({
        id: config.id,
        sellerId: config.seller_id,
        status: config.status,
        pricingModel: config.pricing_model,
        priceAtomic: BigInt(config.price_atomic),
        currency: config.currency,
        upstream,
        upstreamOrigin: upstream.origin,
        upstreamPath: upstream.pathname.replace(/\/+$/, ''),
        upstreamSearch: upstream.search,
        secrets: Object.freeze(secrets),
        rateLimitPerMinute: config.rate_limit_per_minute,
        bodyLimitBytes: config.body_limit_bytes,
        timeoutMs: config.timeout_ms,
        settlementPolicy: config.settlement_policy,
      });
    } catch (error) {
      this.rejected++;
      this.#o.log.error({ err: error, listing: config.id }, 'could not open a listing entry (wrong data-plane key?)');
      return undefined;
    }
  }

  #onNotice(message: string): void {
    let notice: ConfigNotice;
    try {
      notice = JSON.parse(message) as ConfigNotice;
      if (!Number.isInteger(notice.version) || !Array.isArray(notice.changes)) throw new Error('bad notice');
    } catch {
      this.#o.log.error('ignored a malformed config notice');
      return;
    }
    if (this.#reloading) {
      this.#queued.push(notice);
      return;
    }
    this.#apply(notice);
  }

  #apply(notice: ConfigNotice): void {
    if (notice.version <= this.version) return;
    if (notice.reload || notice.version !== this.version + 1) {
      void this.reload().catch((error) => this.#o.log.warn({ err: error }, 'config reload failed'));
      return;
    }
    for (const change of notice.changes) {
      if (change.kind === 'listing') {
        const listing = change.value && this.#resolveListing(change.value);
        if (listing) this.#listings.set(change.id, listing);
        else if (change.value === null) this.#listings.delete(change.id);
      } else if (change.kind === 'key') {
        if (change.value === null) this.#keys.delete(change.id);
        else if (isKeyConfig(change.value)) this.#keys.set(change.id, Object.freeze(change.value));
      } else if (change.kind === 'agent') {
        if (change.value === null) this.#agents.delete(change.id);
        else if (isAgentConfig(change.value)) this.#agents.set(change.id, Object.freeze(change.value));
      }
    }
    this.version = notice.version;
    this.appliedAtMs = Date.now();
  }

  async #checkVersion(): Promise<void> {
    if (this.#reloading) return;
    try {
      const remote = Number((await this.#o.redis.get(this.#o.keys.configVersion)) ?? 0);
      if (remote > this.version) await this.reload();
    } catch {
      // Redis unreachable: keep serving what we have; the next poll tries again.
    }
  }

  /**
   * Looks a key hash up in Redis when it is not in memory: a key created a moment ago whose notice has not arrived.
   * One round trip, only on a miss; misses are remembered briefly so unknown keys cannot make every call a lookup.
   * 'unavailable' when Redis could not answer: the key may well exist.
   */
  async fetchKey(hash: string): Promise<KeyConfig | undefined | 'unavailable'> {
    const until = this.#misses.get(hash);
    if (until !== undefined && until > Date.now()) return undefined;
    try {
      const json = await this.#o.redis.hget(this.#o.keys.configKeys, hash);
      const entry = json ? this.#parse(json, isKeyConfig) : undefined;
      if (entry) {
        this.#keys.set(hash, entry);
        return entry;
      }
    } catch {
      return 'unavailable';
    }
    if (this.#misses.size > 10_000) this.#misses.clear();
    this.#misses.set(hash, Date.now() + 2_000);
    return undefined;
  }

  #misses = new Map<string, number>();
}
