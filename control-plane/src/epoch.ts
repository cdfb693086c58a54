import { randomBytes } from 'node:crypto';
import { currentUtcDay, type RedisKeys } from '@crochet/protocol';
import type { Redis } from 'ioredis';
import type { ConfigPublisher } from './config-publisher.js';
import type { Pool } from './db.js';

/**
 * The control plane's side of the Redis epoch (DESIGN §2 durability rule). Redis is the fast copy; PostgreSQL is the
 * truth for money. When Redis comes back empty (or is replaced), its epoch is missing or new, and nothing in it can be
 * trusted to say which proofs already paid. Paid calls wait (the admission script refuses a Redis whose epoch the
 * proxy has not adopted) until this restores into the new Redis, from PostgreSQL:
 *
 *   1. config: the whole published state (a full resync; proxies reload it when they adopt the epoch);
 *   2. consumed proofs: every proof held (not given back) within the acceptance window — older proofs are refused by
 *      the rails anyway, so what must be restored is bounded;
 *   3. spend counters: today's spend per agent, so a daily cap holds across the loss.
 *
 * Payment requests need no restore: their ids prove themselves (protocol payment-request.ts).
 *
 * Before restoring it waits `graceMs`: proxies that saw the old Redis append again what the control plane has not
 * committed yet and mark again the proofs those events consumed (proxy/src/redis-state.ts). Then it marks the epoch
 * restored (`epoch:restored`), and proxies adopt it. One control plane restores at a time (a lock in Redis).
 */

export interface EpochKeeperOptions {
  pool: Pool;
  redis: Redis;
  keys: RedisKeys;
  publisher: ConfigPublisher;
  /** `CROCHET_PAYMENT_ACCEPT_WINDOW_SECONDS`: consumed proofs younger than this (plus a margin) are restored. */
  acceptWindowSeconds: number;
  /** `CROCHET_EPOCH_GRACE_MS`: how long proxies get to put back what they wrote before the restore. */
  graceMs: number;
  pollMs: number;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

export interface EpochStats {
  /** The epoch restored last (null until the first check). */
  restored: string | null;
  restores: number;
  lastRestoreMs: number | null;
  proofsRestored: number;
}

// Marks the epoch restored only if Redis still has that epoch (it may have been lost again meanwhile).
const MARK_RESTORED = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
return 1
`;

/** A margin on the acceptance window: a proof presented at the very end of its window is still covered. */
const WINDOW_MARGIN_SECONDS = 300;
const CHUNK = 1_000;

const HELD_PROOFS_SQL = `
  SELECT proof_id, gateway_request_id FROM payment_proofs
   WHERE released_at IS NULL AND consumed_at > now() - $1 * interval '1 second'
     AND proof_id > $2
   ORDER BY proof_id
   LIMIT ${CHUNK}`;

// What the proxies' admission counted against today's cap: paid calls admitted today and not given back (a refusal
// past the cap was never counted).
const SPEND_TODAY_SQL = `
  SELECT buyer_id, sum(price_atomic)::text AS spent FROM gateway_requests
   WHERE payment ? 'rail' AND created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
     AND status <> 'refused'
     AND coalesce(payment -> 'outcome' ->> 'status', '') <> 'released'
     AND buyer_id IS NOT NULL
   GROUP BY buyer_id`;

export class EpochKeeper {
  readonly #o: EpochKeeperOptions;
  #timer: NodeJS.Timeout | undefined;
  #checking: Promise<void> | undefined;
  #stopped = false;
  readonly stats: EpochStats = { restored: null, restores: 0, lastRestoreMs: null, proofsRestored: 0 };

  constructor(options: EpochKeeperOptions) {
    this.#o = options;
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
    let [epoch, restored] = await redis.mget(keys.epoch, keys.epochRestored);
    if (!epoch) {
      await redis.set(keys.epoch, randomBytes(12).toString('base64url'), 'NX');
      epoch = await redis.get(keys.epoch);
      if (!epoch) return;
    }
    if (restored === epoch) {
      this.stats.restored = epoch;
      return;
    }
    // One control plane restores an epoch; the lock expires should it die while doing so.
    const lock = await redis.set(keys.epochRestoreLock, epoch, 'PX', 120_000, 'NX');
    if (lock !== 'OK') return;
    try {
      if (this.stats.restored !== null) log.warn({ from: this.stats.restored, to: epoch }, 'Redis epoch changed');
      await new Promise((resolve) => setTimeout(resolve, this.#o.graceMs));
      if (this.#stopped) return;
      const started = performance.now();
      const proofs = await this.#restore();
      const marked = await redis.eval(MARK_RESTORED, 2, keys.epoch, keys.epochRestored, epoch);
      if (marked !== 1) return; // lost again meanwhile: the next check restores the newer one
      this.stats.restored = epoch;
      this.stats.restores++;
      this.stats.lastRestoreMs = performance.now() - started;
      this.stats.proofsRestored += proofs;
      log.info({ epoch, proofs, ms: Math.round(this.stats.lastRestoreMs) }, 'Redis epoch restored from PostgreSQL');
    } finally {
      await redis.del(keys.epochRestoreLock).catch(() => {});
    }
  }

  /** Writes config, held proofs and today's spend into Redis; returns how many proofs it restored. */
  async #restore(): Promise<number> {
    const { pool, redis, keys, publisher } = this.#o;
    await publisher.resync();
    const windowSeconds = this.#o.acceptWindowSeconds + WINDOW_MARGIN_SECONDS;
    let restored = 0;
    for (let after = ''; ; ) {
      const { rows } = await pool.query<{ proof_id: string; gateway_request_id: string }>(HELD_PROOFS_SQL, [
        windowSeconds,
        after,
      ]);
      if (rows.length === 0) break;
      const pipeline = redis.pipeline();
      // NX: a proof a proxy marked again meanwhile (or a call admitted since) keeps its holder.
      for (const row of rows) pipeline.set(keys.paymentUsed(row.proof_id), row.gateway_request_id, 'NX');
      const results = await pipeline.exec();
      const failed = results?.find(([error]) => error)?.[0];
      if (failed) throw failed;
      restored += rows.length;
      after = rows.at(-1)!.proof_id;
    }
    const day = currentUtcDay();
    const { rows } = await pool.query<{ buyer_id: string; spent: string }>(SPEND_TODAY_SQL);
    if (rows.length > 0) {
      const pipeline = redis.pipeline();
      for (const row of rows) pipeline.set(keys.spend(row.buyer_id, day), row.spent, 'EX', 172_800);
      await pipeline.exec();
    }
    return restored;
  }
}
