import { randomBytes } from 'node:crypto';
import type { EventFields, EventOutbox } from '@crochet/plugins';
import type { RedisKeys } from '@crochet/protocol';
import type { Redis } from 'ioredis';
import type { ConfigStore } from './config-store.js';

/**
 * What the proxy knows about the Redis it works against (DESIGN §2 durability rule).
 *
 * Epoch: a Redis carries a random id (`epoch`). A proxy adopts an epoch once the control plane has restored it
 * (`epoch:restored`: config, consumed proofs, spend counters from PostgreSQL) and the proxy has loaded that config.
 * A Redis that lost everything has no epoch, or a new one: the proxy then appends again every event the control
 * plane has not committed yet and marks again the proofs those events consumed — before the control plane finishes
 * its restore — and paid calls wait (the admission script refuses a Redis on another epoch) until it adopts the new
 * epoch. Free calls go on from the config in memory meanwhile.
 *
 * Clock: the admission script's deadline is in Redis's clock; the offset to it is measured on every poll.
 *
 * Watermark: the control plane publishes the stream id up to which everything is committed (`events:committed`);
 * the outbox forgets what is below it.
 */

export interface RedisStateOptions {
  redis: Redis;
  keys: RedisKeys;
  store: ConfigStore;
  outbox: EventOutbox;
  pollMs: number;
  /** Marks again, in a new Redis, the proofs that the given (rewound) events consumed. */
  reassert: (entries: EventFields[]) => Promise<void>;
  log: { warn(details: object, message: string): void };
}

export class RedisState {
  readonly #o: RedisStateOptions;
  #timer: NodeJS.Timeout | undefined;
  #checking: Promise<void> | undefined;
  #offsetMs = 0;
  /** The epoch whose lost events this proxy has put back. */
  #reasserted: string | null = null;
  /** The epoch this proxy adopted (restored state, config loaded); null until then. */
  epoch: string | null = null;
  /** The epoch Redis had at the last check. */
  current: string | null = null;
  /** Epoch changes this proxy has lived through (for the metrics). */
  changes = 0;

  constructor(options: RedisStateOptions) {
    this.#o = options;
  }

  /** Paid calls wait: no epoch adopted yet, or Redis is on another one. */
  get restoring(): boolean {
    return this.epoch === null || this.current !== this.epoch;
  }

  /** Now, in Redis's clock (ms). */
  redisNow(): number {
    return Date.now() + this.#offsetMs;
  }

  /** Starts watching; resolves after the first look (adopted, if the control plane has restored this Redis). */
  start(): Promise<void> {
    this.#o.redis.on('ready', () => void this.check());
    this.#timer = setInterval(() => void this.check(), this.#o.pollMs);
    this.#timer.unref();
    return this.check();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Looks at Redis now (concurrent calls share one look); never throws. */
  check(): Promise<void> {
    this.#checking ??= this.#check()
      .catch(() => {}) // Redis unreachable: the next poll looks again
      .finally(() => {
        this.#checking = undefined;
      });
    return this.#checking;
  }

  async #check(): Promise<void> {
    const { redis, keys, outbox, store, log } = this.#o;
    const sentAt = Date.now();
    const results = await redis.pipeline().mget(keys.epoch, keys.epochRestored, keys.eventsCommitted).time().exec();
    const receivedAt = Date.now();
    const [[mgetError, values], [timeError, time]] = results as [
      [Error | null, (string | null)[]],
      [Error | null, string[]],
    ];
    if (mgetError || timeError) throw mgetError ?? timeError;
    this.#offsetMs = Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000) - (sentAt + receivedAt) / 2;
    let [epoch, restored, committed] = values;
    if (!epoch) {
      // A Redis never used, or one that lost everything: give it an epoch (whoever comes first names it).
      await redis.set(keys.epoch, randomBytes(12).toString('base64url'), 'NX');
      epoch = await redis.get(keys.epoch);
      if (!epoch) return;
    }
    this.current = epoch;
    if (epoch === this.epoch) {
      if (committed) outbox.committed(committed);
      return;
    }
    if (this.epoch !== null && this.#reasserted !== epoch) {
      // The Redis this proxy worked with is gone: what it had not committed is appended again and the proofs it
      // consumed are marked again, now, while the control plane waits before restoring the rest.
      this.changes++;
      log.warn({ from: this.epoch, to: epoch }, 'Redis epoch changed: restoring what this proxy had written');
      const entries = outbox.rewind();
      await this.#o.reassert(entries);
      await outbox.flush();
    }
    this.#reasserted = epoch;
    if (restored !== epoch) return;
    await store.reload();
    this.epoch = epoch;
  }
}

/** Whether Redis looks unavailable right now: after a failed hot-path call, for a short while, free calls skip it. */
export class RedisHealth {
  #suspectUntil = 0;
  readonly #windowMs: number;

  constructor(windowMs = 1_000) {
    this.#windowMs = windowMs;
  }

  suspect(): boolean {
    return this.#suspectUntil !== 0 && performance.now() < this.#suspectUntil;
  }

  failed(): void {
    this.#suspectUntil = performance.now() + this.#windowMs;
  }

  answered(): void {
    this.#suspectUntil = 0;
  }
}
