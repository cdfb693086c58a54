import {
  type AgentConfig,
  CONFIG_SCHEMA_VERSION,
  type ConfigChange,
  type CryptoBox,
  type KeyConfig,
  type ListingConfig,
  type RedisKeys,
} from '@crochet/protocol';
import type { Redis } from 'ioredis';
import { type Pool, transaction } from './db.js';
import { endpointUrlContext, signingKeyContext } from './listings.js';
import { type PeriodicJob, startPeriodic } from './periodic.js';

/**
 * Publishes what the proxies need to Redis (DESIGN §2): one hash per kind of entry plus a version, and a notice on a
 * channel after every change. Each publish is one Lua script, so the version, the entries and the notice move
 * together: a proxy that sees version N+1 announced finds exactly the N+1 state in the hashes. A periodic full
 * resync repairs anything a failed publish (Redis down at the time) left behind.
 */

// KEYS: version, listings, keys, agents, channel. ARGV[1]: the changes as JSON (for the notice); then triples
// kind, id, value (value '' deletes).
const PUBLISH_SCRIPT = `
local v = redis.call('INCR', KEYS[1])
for i = 2, #ARGV, 3 do
  local hash = KEYS[2]
  if ARGV[i] == 'key' then hash = KEYS[3] elseif ARGV[i] == 'agent' then hash = KEYS[4] end
  if ARGV[i + 2] == '' then redis.call('HDEL', hash, ARGV[i + 1]) else redis.call('HSET', hash, ARGV[i + 1], ARGV[i + 2]) end
end
redis.call('PUBLISH', KEYS[5], '{"version":' .. v .. ',"changes":' .. ARGV[1] .. '}')
return v
`;

// Same KEYS; ARGV: triples of the whole state. Replaces the hashes, bumps the version, asks proxies to reload.
const RESYNC_SCRIPT = `
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
for i = 1, #ARGV, 3 do
  local hash = KEYS[2]
  if ARGV[i] == 'key' then hash = KEYS[3] elseif ARGV[i] == 'agent' then hash = KEYS[4] end
  redis.call('HSET', hash, ARGV[i + 1], ARGV[i + 2])
end
local v = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', KEYS[5], '{"version":' .. v .. ',"changes":[],"reload":true}')
return v
`;

/** The data plane's copy of sealed values: opened with the at-rest key, sealed again with the data-plane key. */
export const dataPlaneContext = {
  upstream: (listingId: string) => `dp:listing:${listingId}:upstream`,
  secret: (listingId: string, keyId: string) => `dp:listing:${listingId}:secret:${keyId}`,
};

interface ListingSource {
  id: string;
  seller_id: string;
  status: ListingConfig['status'];
  pricing_model: ListingConfig['pricing_model'];
  price_atomic: string;
  currency: string;
  endpoint_url_enc: string;
  rate_limit_per_minute: number | null;
  body_limit_bytes: number;
  timeout_ms: number;
  settlement_policy: ListingConfig['settlement_policy'];
  keys: { id: string; secret_enc: string; expires_at: string | null }[];
}

// Any constant will do; it only has to be the same for every control plane.
const PUBLISH_LOCK = 7_312_004_118;

const LISTINGS_SQL = `
  SELECT l.id, l.seller_id, l.status, l.pricing_model, l.price_atomic, l.currency, l.endpoint_url_enc,
         l.rate_limit_per_minute, l.body_limit_bytes, l.timeout_ms, l.settlement_policy,
         coalesce(json_agg(json_build_object('id', k.id, 'secret_enc', k.secret_enc, 'expires_at', k.expires_at)
                  ORDER BY k.created_at DESC, k.id DESC) FILTER (WHERE k.id IS NOT NULL), '[]') AS keys
    FROM listings l
    LEFT JOIN listing_signing_keys k ON k.listing_id = l.id AND (k.expires_at IS NULL OR k.expires_at > now())
   WHERE ($1::text IS NULL OR l.id = $1)
   GROUP BY l.id`;

const KEYS_SQL = `
  SELECT id, agent_id, key_hash, revoked_at IS NOT NULL AS revoked FROM api_keys
   WHERE ($1::text IS NULL OR agent_id = $1)`;

// evm_wallets: only wallets the agent proved control of (a signature: POST /me/wallets or recovery), lowercase as
// the proxy compares them.
const AGENTS_SQL = `
  SELECT a.id, a.status, a.rate_limit_per_minute, a.daily_spend_cap_atomic::text,
         coalesce((SELECT array_agg(lower(w.address) ORDER BY w.address) FROM wallets w
                    WHERE w.agent_id = a.id AND w.chain = 'evm' AND w.verified_at IS NOT NULL), '{}') AS evm_wallets
    FROM agents a
   WHERE ($1::text IS NULL OR a.id = $1)`;

export interface ConfigPublisherDeps {
  pool: Pool;
  redis: Redis;
  box: CryptoBox;
  dataPlaneBox: CryptoBox;
  keys: RedisKeys;
  log: { warn(details: object, message: string): void };
}

export class ConfigPublisher {
  readonly #deps: ConfigPublisherDeps;
  #periodic: PeriodicJob<number> | undefined;
  /** Publishes since start; exposed for metrics. */
  published = 0;

  constructor(deps: ConfigPublisherDeps) {
    this.#deps = deps;
  }

  #listingEntry(row: ListingSource): ListingConfig {
    const { box, dataPlaneBox } = this.#deps;
    return {
      schema: CONFIG_SCHEMA_VERSION,
      id: row.id,
      seller_id: row.seller_id,
      status: row.status,
      pricing_model: row.pricing_model,
      price_atomic: String(row.price_atomic),
      currency: row.currency,
      upstream_sealed: dataPlaneBox.seal(
        box.open(row.endpoint_url_enc, endpointUrlContext(row.id)),
        dataPlaneContext.upstream(row.id),
      ),
      secrets_sealed: row.keys.map((k) => ({
        key_id: k.id,
        sealed: dataPlaneBox.seal(
          box.open(k.secret_enc, signingKeyContext(row.id, k.id)),
          dataPlaneContext.secret(row.id, k.id),
        ),
        expires_at: k.expires_at === null ? null : new Date(k.expires_at).toISOString(),
      })),
      rate_limit_per_minute: row.rate_limit_per_minute,
      body_limit_bytes: row.body_limit_bytes,
      timeout_ms: row.timeout_ms,
      settlement_policy: row.settlement_policy,
    };
  }

  async #changes(
    pool: Pick<Pool, 'query'>,
    filter: { listingId?: string; agentId?: string; all?: boolean },
  ): Promise<ConfigChange[]> {
    const changes: ConfigChange[] = [];
    if (filter.listingId !== undefined || filter.all) {
      const { rows } = await pool.query<ListingSource>(LISTINGS_SQL, [filter.listingId ?? null]);
      for (const row of rows) changes.push({ kind: 'listing', id: row.id, value: this.#listingEntry(row) });
    }
    if (filter.agentId !== undefined || filter.all) {
      const agentId = filter.agentId ?? null;
      const keys = await pool.query<{ id: string; agent_id: string; key_hash: string; revoked: boolean }>(KEYS_SQL, [
        agentId,
      ]);
      for (const k of keys.rows) {
        const value: KeyConfig = {
          schema: CONFIG_SCHEMA_VERSION,
          key_id: k.id,
          agent_id: k.agent_id,
          status: k.revoked ? 'revoked' : 'active',
        };
        changes.push({ kind: 'key', id: k.key_hash, value });
      }
      const agents = await pool.query<{
        id: string;
        status: AgentConfig['status'];
        rate_limit_per_minute: number | null;
        evm_wallets: string[];
        daily_spend_cap_atomic: string | null;
      }>(AGENTS_SQL, [agentId]);
      for (const a of agents.rows) {
        const value: AgentConfig = {
          schema: CONFIG_SCHEMA_VERSION,
          id: a.id,
          status: a.status,
          rate_limit_per_minute: a.rate_limit_per_minute,
          evm_wallets: a.evm_wallets,
          daily_spend_cap_atomic: a.daily_spend_cap_atomic,
        };
        changes.push({ kind: 'agent', id: a.id, value });
      }
    }
    return changes;
  }

  async #publish(changes: ConfigChange[]): Promise<number | undefined> {
    if (changes.length === 0) return undefined;
    const { redis, keys } = this.#deps;
    const args = changes.flatMap((c) => [c.kind, c.id, c.value === null ? '' : JSON.stringify(c.value)]);
    const version = (await redis.eval(
      PUBLISH_SCRIPT,
      5,
      keys.configVersion,
      keys.configListings,
      keys.configKeys,
      keys.configAgents,
      keys.configNotices,
      JSON.stringify(changes),
      ...args,
    )) as number;
    this.published++;
    return version;
  }

  /**
   * Publishes the current state of a listing, or of an agent with its keys. Called after the change committed; a
   * failure is logged and left to the periodic resync, so an API call never fails because Redis did.
   */
  async changed(what: { listingId?: string; agentId?: string }): Promise<void> {
    try {
      await this.#serialized((db) => this.#changes(db, what).then((changes) => this.#publish(changes)));
    } catch (error) {
      this.#deps.log.warn({ err: error, ...what }, 'config publish failed; the next resync repairs it');
    }
  }

  /** Rebuilds the whole published state from PostgreSQL. Returns the new version. */
  async resync(): Promise<number> {
    return this.#serialized(async (db) => this.#resyncWith(await this.#changes(db, { all: true })));
  }

  /**
   * Reading PostgreSQL and writing Redis happen under one advisory lock shared by every control plane: a publish
   * can never write state older than what an earlier publish already wrote (a resync racing a key revocation would
   * otherwise bring the key back until the next resync).
   */
  async #serialized<T>(work: (db: Pick<Pool, 'query'>) => Promise<T>): Promise<T> {
    return transaction(this.#deps.pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1)', [PUBLISH_LOCK]);
      return work(client);
    });
  }

  async #resyncWith(changes: ConfigChange[]): Promise<number> {
    const { redis, keys } = this.#deps;
    const args = changes.flatMap((c) => [c.kind, c.id, JSON.stringify(c.value)]);
    const version = (await redis.eval(
      RESYNC_SCRIPT,
      5,
      keys.configVersion,
      keys.configListings,
      keys.configKeys,
      keys.configAgents,
      keys.configNotices,
      ...args,
    )) as number;
    this.published++;
    return version;
  }

  /**
   * Resyncs every `intervalMs`, one run at a time: a run that outlasts the interval (PostgreSQL answering nothing
   * holds one for the pool's timeouts) delays the next instead of piling more onto the pool.
   */
  start(intervalMs: number): void {
    this.#periodic = startPeriodic({
      intervalMs,
      run: () => this.resync(),
      onSkip: () => {},
      onError: (error) => this.#deps.log.warn({ err: error }, 'config resync failed; retrying later'),
    });
  }

  /** Stops the periodic resync and waits for one in progress: call before closing the pool. */
  async stop(): Promise<void> {
    await this.#periodic?.stop();
  }
}
