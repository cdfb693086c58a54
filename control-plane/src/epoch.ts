import { createGatewayScripts, currentEpoch, type GatewayScripts, markEpochRestored, unlock } from '@crochet/plugins';
import { currentUtcDay, type RedisKeys } from '@crochet/protocol';
import type { Redis } from 'ioredis';
import type { ConfigPublisher } from './config-publisher.js';
import type { Pool } from './db.js';
import { releaseInRedis } from './events-consumer.js';

/**
 * The control plane's side of the Redis epoch (DESIGN §2 durability rule). Redis is the fast copy; PostgreSQL is the
 * truth for money. When Redis comes back empty, restarts (it may have lost its last writes) or is replaced, its epoch
 * is new (plugins `currentEpoch`), and nothing in it can be trusted to say which proofs already paid. Paid calls wait (the admission script refuses a Redis whose epoch the
 * proxy has not adopted) until this restores into the new Redis, from PostgreSQL:
 *
 *   1. config: the whole published state (a full resync; proxies reload it when they adopt the epoch);
 *   2. consumed proofs: every proof held (not given back) within the acceptance window — older proofs are refused by
 *      the rails anyway, so what must be restored is bounded;
 *   3. spend counters: today's spend per agent (a refunded call's excepted: its money is due back), so a daily cap
 *      holds across the loss.
 *
 * Payment requests need no restore: their ids prove themselves (protocol payment-request.ts). Nor do the spend
 * reservations of open ones: lost, they let a 402 be issued that the cap would have refused, and its payment (or an
 * older one's) is then refused at admission, which checks the restored spend against the cap — never charged past it.
 *
 * Before restoring it waits for the proxies: each one that saw the old Redis appends again what the control plane has
 * not committed yet, marks again the proofs those events consumed (proxy/src/redis-state.ts), and acknowledges the new
 * epoch. The control plane waits for every proxy it saw alive in the last minute (it keeps their list in memory: the
 * registry in Redis is lost with the rest), up to `graceMs`. Then it marks the epoch restored (`epoch:restored`), and
 * proxies adopt it. One control plane restores at a time (a lock in Redis). Old consumed proofs are pruned: a proof
 * older than the widest acceptance window can never be presented again.
 */

export interface EpochKeeperOptions {
  pool: Pool;
  redis: Redis;
  keys: RedisKeys;
  publisher: ConfigPublisher;
  /** `CROCHET_PAYMENT_ACCEPT_WINDOW_SECONDS`: consumed proofs younger than this (plus a margin) are restored. */
  acceptWindowSeconds: number;
  /** `CROCHET_EPOCH_GRACE_MS`: the longest wait for the proxies to put back what they wrote before the restore. */
  graceMs: number;
  pollMs: number;
  log: {
    info(obj: object, msg: string): void;
    warn(obj: object, msg: string): void;
    error(obj: object, msg: string): void;
  };
}

export interface EpochStats {
  /** The epoch restored last (null until the first check). */
  restored: string | null;
  restores: number;
  lastRestoreMs: number | null;
  proofsRestored: number;
}

/** A margin on the acceptance window: a proof presented at the very end of its window is still covered. */
const WINDOW_MARGIN_SECONDS = 300;
const CHUNK = 1_000;

// Paged by (consumed_at, proof_id) on the consumed_at index: the scan covers the window, not the whole table.
const HELD_PROOFS_SQL = `
  SELECT proof_id, gateway_request_id, consumed_at FROM payment_proofs
   WHERE consumed_at > now() - $1 * interval '1 second' AND (consumed_at, proof_id) > ($2, $3)
     AND released_at IS NULL
   ORDER BY consumed_at, proof_id
   LIMIT ${CHUNK}`;

// Calls whose proofs were given back since a point in time (the restore's start: one given back while the restore
// ran may have been written back held after the consumer released it).
const GIVEN_BACK_SINCE_SQL = `
  SELECT DISTINCT gateway_request_id FROM payment_proofs
   WHERE consumed_at > now() - $2 * interval '1 second' AND released_at >= $1`;

const PRUNE_SLICE = 10_000;
// Proofs older than twice the widest window can never be presented again (the rails refuse them).
const PRUNE_SQL = `
  DELETE FROM payment_proofs WHERE proof_id IN (
    SELECT proof_id FROM payment_proofs WHERE consumed_at < now() - $1 * interval '1 second' LIMIT ${PRUNE_SLICE})`;
const PRUNE_EVERY_MS = 3_600_000;
/** Proxies seen in the registry this recently are waited for after an epoch change. */
const ALIVE_MS = 60_000;

// What the proxies' admission counted against today's cap: paid calls admitted today and not given back (a refusal
// past the cap was never counted).
const SPEND_TODAY_SQL = `
  SELECT buyer_id, sum(price_atomic)::text AS spent FROM gateway_requests
   WHERE payment ? 'rail' AND created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
     AND status <> 'refused'
     AND coalesce(payment -> 'outcome' ->> 'status', '') NOT IN ('released', 'refund_due')
     AND buyer_id IS NOT NULL
   GROUP BY buyer_id`;

/** A proxy's registry entry (proxy/src/redis-state.ts writes it); undefined if unreadable. */
const registryEntry = (json: string): { seenMs: number; acceptWindowSeconds: number } | undefined => {
  try {
    const entry = JSON.parse(json) as { seen_ms?: unknown; accept_window_seconds?: unknown };
    if (typeof entry.seen_ms !== 'number') return undefined;
    const window = typeof entry.accept_window_seconds === 'number' ? entry.accept_window_seconds : 0;
    return { seenMs: entry.seen_ms, acceptWindowSeconds: window };
  } catch {
    return undefined;
  }
};

export class EpochKeeper {
  readonly #o: EpochKeeperOptions;
  #timer: NodeJS.Timeout | undefined;
  #checking: Promise<void> | undefined;
  #stopped = false;
  /** Proxy instance → when last seen and its acceptance window, from the registry (kept here: Redis may lose it). */
  readonly #proxies = new Map<string, { seenMs: number; acceptWindowSeconds: number }>();
  #prunedAt = 0;
  /** When this control plane started: a proxy it has not watched for ALIVE_MS may be one it never saw yet. */
  readonly #startedMs = Date.now();
  readonly #scripts: GatewayScripts;
  readonly stats: EpochStats = { restored: null, restores: 0, lastRestoreMs: null, proofsRestored: 0 };

  constructor(options: EpochKeeperOptions) {
    this.#o = options;
    this.#scripts = createGatewayScripts(options.redis, options.keys);
  }

  /** Checks now (and restores if needed), then every `pollMs` and whenever the Redis connection comes back. */
  async start(): Promise<void> {
    this.#o.redis.on('ready', () => void this.check());
    this.#timer = setInterval(() => void this.check(), this.#o.pollMs);
    this.#timer.unref();
    await this.check();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.#checking;
  }

  /** Concurrent calls share one check; never throws (Redis or PostgreSQL unreachable: the next poll tries again). */
  check(): Promise<void> {
    this.#checking ??= this.#check()
      .catch((error: unknown) => this.#o.log.warn({ err: error }, 'Redis epoch check failed; retrying'))
      .finally(() => {
        this.#checking = undefined;
      });
    return this.#checking;
  }

  async #check(): Promise<void> {
    const { redis, keys, log } = this.#o;
    const epoch = await currentEpoch(redis, keys);
    const [restored, registry] = await Promise.all([redis.get(keys.epochRestored), redis.hgetall(keys.proxies)]);
    this.#remember(registry);
    if (restored === epoch) {
      this.stats.restored = epoch;
      await this.#prune();
      return;
    }
    // One control plane restores an epoch; the lock expires should it die while doing so.
    const lock = await redis.set(keys.epochRestoreLock, epoch, 'PX', 120_000, 'NX');
    if (lock !== 'OK') return;
    try {
      if (this.stats.restored !== null) log.warn({ from: this.stats.restored, to: epoch }, 'Redis epoch changed');
      await this.#waitForProxies(epoch);
      if (this.#stopped) return;
      const started = performance.now();
      const proofs = await this.#restore();
      if (!(await markEpochRestored(redis, keys, epoch))) return; // lost again meanwhile: the next check restores it
      this.stats.restored = epoch;
      this.stats.restores++;
      this.stats.lastRestoreMs = performance.now() - started;
      this.stats.proofsRestored += proofs;
      log.info({ epoch, proofs, ms: Math.round(this.stats.lastRestoreMs) }, 'Redis epoch restored from PostgreSQL');
    } finally {
      await unlock(redis, keys.epochRestoreLock, epoch).catch(() => {});
    }
  }

  #remember(registry: Record<string, string>): void {
    for (const [instance, json] of Object.entries(registry)) {
      const entry = registryEntry(json);
      if (entry) this.#proxies.set(instance, entry);
    }
    for (const [instance, entry] of this.#proxies)
      if (Date.now() - entry.seenMs > 10 * ALIVE_MS) this.#proxies.delete(instance);
  }

  /** The widest acceptance window in use: this control plane's, or a proxy's that accepts older proofs. */
  #windowSeconds(): number {
    return Math.max(this.#o.acceptWindowSeconds, ...[...this.#proxies.values()].map((p) => p.acceptWindowSeconds));
  }

  /** Until every proxy seen alive lately has acknowledged the new epoch (it put back what it had written), or graceMs. */
  async #waitForProxies(epoch: string): Promise<void> {
    const alive = [...this.#proxies].filter(([, p]) => Date.now() - p.seenMs < ALIVE_MS).map(([id]) => id);
    // Watched for less than ALIVE_MS (just started): a proxy alive but not yet seen is waited for too (the full grace).
    const complete = Date.now() - this.#startedMs >= ALIVE_MS;
    const until = Date.now() + this.#o.graceMs;
    for (;;) {
      const acked = new Set(await this.#o.redis.smembers(this.#o.keys.epochAcks(epoch)));
      if (complete && alive.length > 0 && alive.every((id) => acked.has(id))) return;
      if (Date.now() >= until || this.#stopped) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async #prune(): Promise<void> {
    if (Date.now() - this.#prunedAt < PRUNE_EVERY_MS) return;
    this.#prunedAt = Date.now();
    const age = 2 * (this.#windowSeconds() + WINDOW_MARGIN_SECONDS);
    // In slices, so that one prune never holds many rows locked at once.
    while (!this.#stopped && ((await this.#o.pool.query(PRUNE_SQL, [age])).rowCount ?? 0) >= PRUNE_SLICE);
    // Proxies gone for long leave the registry (this control plane keeps its own list for the restore).
    const registry = await this.#o.redis.hgetall(this.#o.keys.proxies);
    const gone = Object.entries(registry)
      .filter(([, json]) => {
        const seen = registryEntry(json)?.seenMs;
        return seen === undefined || Date.now() - seen > 10 * ALIVE_MS;
      })
      .map(([instance]) => instance);
    if (gone.length > 0) await this.#o.redis.hdel(this.#o.keys.proxies, ...gone);
  }

  /** Writes config, held proofs and today's spend into Redis; returns how many proofs it restored. */
  async #restore(): Promise<number> {
    const { pool, redis, keys, publisher } = this.#o;
    const { rows: now } = await pool.query<{ now: Date }>('SELECT now()');
    const since = now[0]!.now;
    await publisher.resync();
    const windowSeconds = this.#windowSeconds() + WINDOW_MARGIN_SECONDS;
    let restored = 0;
    let after: [Date, string] = [new Date(0), ''];
    for (;;) {
      const { rows } = await pool.query<{ proof_id: string; gateway_request_id: string; consumed_at: Date }>(
        HELD_PROOFS_SQL,
        [windowSeconds, ...after],
      );
      if (rows.length === 0) break;
      const pipeline = redis.pipeline();
      // NX: a proof a proxy marked again meanwhile (or a call admitted since) keeps its holder.
      for (const row of rows) pipeline.set(keys.paymentUsed(row.proof_id), row.gateway_request_id, 'NX');
      const results = await pipeline.exec();
      const failed = results?.find(([error]) => error)?.[0];
      if (failed) throw failed;
      restored += rows.length;
      const last = rows.at(-1)!;
      after = [last.consumed_at, last.proof_id];
    }
    const day = currentUtcDay();
    const { rows } = await pool.query<{ buyer_id: string; spent: string }>(SPEND_TODAY_SQL);
    if (rows.length > 0) {
      const pipeline = redis.pipeline();
      for (const row of rows) pipeline.set(keys.spend(row.buyer_id, day), row.spent, 'EX', 172_800);
      await pipeline.exec();
    }
    // A proof given back while this ran may have been written above after the consumer released it: release again.
    const { rows: given } = await pool.query<{ gateway_request_id: string }>(GIVEN_BACK_SINCE_SQL, [
      since,
      windowSeconds,
    ]);
    await releaseInRedis(
      pool,
      this.#scripts,
      given.map((r) => r.gateway_request_id),
      this.#o.log,
    );
    return restored;
  }
}
