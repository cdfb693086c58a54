import { randomBytes } from 'node:crypto';
import { currentEpoch, type EventFields, type EventOutbox } from '@crochet/plugins';
import type { RedisKeys } from '@crochet/protocol';
import type { Redis } from 'ioredis';
import type { ConfigStore } from './config-store.js';

/**
 * What the proxy knows about the Redis it works against (DESIGN §2 durability rule).
 *
 * Epoch: a Redis carries a random id (`epoch`), set anew when it has none or its server restarted (plugins
 * `currentEpoch`). A proxy adopts an epoch once the control plane has restored it (`epoch:restored`: config,
 * consumed proofs, spend counters from PostgreSQL) and the proxy has loaded that config. When the epoch changes, the
 * proxy appends again every event the control plane has not committed yet and marks again the proofs those events
 * consumed, then says so (`epoch:acks:<epoch>`), which the control plane waits for before it restores the rest. Paid
 * calls wait meanwhile (the admission script refuses a Redis on an epoch the proxy has not adopted), also for the
 * moment between a reconnection and the next look; free calls go on from the config in memory.
 *
 * Also here, on the same poll: the offset to Redis's clock (the admission script's deadline is in that clock), the
 * control plane's committed watermark (`events:committed`: the outbox forgets what is below it), and this proxy's
 * entry among the live proxies.
 */

export interface RedisStateOptions {
  redis: Redis;
  keys: RedisKeys;
  store: ConfigStore;
  outbox: EventOutbox;
  pollMs: number;
  /** `CROCHET_PAYMENT_ACCEPT_WINDOW_SECONDS`: told to the control plane, which restores proofs that far back. */
  acceptWindowSeconds: number;
  /** Marks again, in a new Redis, the proofs that the given (rewound) events consumed. */
  reassert: (entries: EventFields[]) => Promise<void>;
  log: { warn(details: object, message: string): void };
}

/** While a new epoch is being restored, `/readyz` says so (503) at most this long, then serves on, degraded. */
const RESTORING_UNREADY_MS = 30_000;

export class RedisState {
  readonly #o: RedisStateOptions;
  readonly #instance = randomBytes(8).toString('hex');
  #timer: NodeJS.Timeout | undefined;
  #checking: Promise<void> | undefined;
  #offsetMs = 0;
  /** The last few clock samples: the offset is taken from the one with the shortest round trip (the least error). */
  readonly #samples: { rttMs: number; offsetMs: number }[] = [];
  /** Set on every reconnection until the next look: the server may have restarted meanwhile. */
  #verifying = false;
  /** The epoch whose lost events this proxy has put back (and acknowledged). */
  #reasserted: string | null = null;
  /** Events rewound for a new epoch and not yet marked again (kept until that succeeds). */
  #rewound: EventFields[] | null = null;
  #restoringSince = 0;
  /** The epoch this proxy adopted (restored state, config loaded); null until then. */
  epoch: string | null = null;
  /** The epoch Redis had at the last look. */
  current: string | null = null;
  /** Epoch changes this proxy has lived through (for the metrics). */
  changes = 0;

  constructor(options: RedisStateOptions) {
    this.#o = options;
  }

  /** Paid calls wait: no epoch adopted yet, Redis is on another one, or Redis reconnected and was not looked at. */
  get restoring(): boolean {
    return this.#verifying || this.epoch === null || this.current !== this.epoch;
  }

  /** `/readyz`: not ready while restoring, for a bounded time (then free calls are served on, degraded). */
  get unready(): boolean {
    return this.restoring && performance.now() - this.#restoringSince < RESTORING_UNREADY_MS;
  }

  /** Now, in Redis's clock (ms). */
  redisNow(): number {
    return Date.now() + this.#offsetMs;
  }

  /** Starts watching; resolves after the first look (adopted, if the control plane has restored this Redis). */
  start(): Promise<void> {
    this.#o.redis.on('ready', () => {
      // Synchronously, before any call can use the new connection: until we have looked, it may be another Redis.
      this.#verifying = true;
      void this.check();
    });
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

  /** Redis's time read between sentAt and receivedAt: it is within half the round trip of their midpoint. */
  #clock(redisMs: number, sentAt: number, receivedAt: number): void {
    this.#samples.push({ rttMs: receivedAt - sentAt, offsetMs: redisMs - (sentAt + receivedAt) / 2 });
    if (this.#samples.length > 8) this.#samples.shift();
    this.#offsetMs = this.#samples.reduce((best, s) => (s.rttMs < best.rttMs ? s : best)).offsetMs;
  }

  async #check(): Promise<void> {
    const { redis, keys, outbox, store, log } = this.#o;
    const verifying = this.#verifying;
    const epoch = await currentEpoch(redis, keys);
    const sentAt = Date.now();
    const results = await redis
      .pipeline()
      .mget(keys.epochRestored, keys.eventsCommitted)
      .time()
      .hset(
        keys.proxies,
        this.#instance,
        JSON.stringify({ seen_ms: sentAt, accept_window_seconds: this.#o.acceptWindowSeconds }),
      )
      .exec();
    const receivedAt = Date.now();
    const [[mgetError, values], [timeError, time]] = results as [
      [Error | null, (string | null)[]],
      [Error | null, string[]],
    ];
    if (mgetError || timeError) throw mgetError ?? timeError;
    this.#clock(Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000), sentAt, receivedAt);
    const [restored, committed] = values;
    if (epoch !== this.current) this.#restoringSince = performance.now();
    const seen = this.current;
    this.current = epoch;
    if (verifying) this.#verifying = false;
    if (epoch === this.epoch) {
      if (committed) outbox.committed(committed);
      return;
    }
    if (seen !== null && seen !== epoch && this.#reasserted !== epoch) {
      // The Redis this proxy worked with lost what it held (or may have): what the control plane has not committed
      // is appended again, and the proofs it consumed are marked again — before the control plane restores the rest.
      this.changes++;
      log.warn({ from: seen, to: epoch }, 'Redis epoch changed: restoring what this proxy had written');
      this.#rewound = [...(this.#rewound ?? []), ...(await outbox.rewind())];
    }
    if (this.#reasserted !== epoch) {
      if (this.#rewound) {
        await this.#o.reassert(this.#rewound);
        this.#rewound = null;
        await outbox.flush();
      }
      await redis.multi().sadd(keys.epochAcks(epoch), this.#instance).expire(keys.epochAcks(epoch), 86_400).exec();
      this.#reasserted = epoch;
    }
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
