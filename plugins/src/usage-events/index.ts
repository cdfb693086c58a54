import { EVENT_FIELD, type GatewayEvent } from '@crochet/protocol';
import type { Redis } from 'ioredis';

/**
 * Appends gateway events to the events stream in batches: a request's completion never waits on Redis, and many
 * completions share one pipeline. When Redis is unreachable the events wait in memory (bounded; the oldest are
 * dropped past the bound and counted — reconciliation restores what the start records allow) and go out when it
 * answers again.
 */
export interface EventWriterOptions {
  redis: Redis;
  streamKey: string;
  /** Flush when this many events are waiting. */
  batchSize?: number;
  /** Flush at least this often while events are waiting. */
  flushIntervalMs?: number;
  /** Events kept while Redis is unreachable. */
  maxBuffered?: number;
}

export class EventWriter {
  readonly #o: Required<EventWriterOptions>;
  #buffer: string[] = [];
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  /** Events written since start, and events dropped because the buffer was full. */
  written = 0;
  dropped = 0;

  constructor(options: EventWriterOptions) {
    this.#o = { batchSize: 256, flushIntervalMs: 10, maxBuffered: 100_000, ...options };
  }

  get pending(): number {
    return this.#buffer.length;
  }

  push(event: GatewayEvent): void {
    this.pushJson(JSON.stringify(event));
  }

  pushJson(json: string): void {
    if (this.#buffer.length >= this.#o.maxBuffered) {
      this.#buffer.shift();
      this.dropped++;
    }
    this.#buffer.push(json);
    if (this.#buffer.length >= this.#o.batchSize) void this.flush();
    else this.#timer ??= setTimeout(() => void this.flush(), this.#o.flushIntervalMs);
  }

  /** Writes what is waiting; resolves when written (or kept for later because Redis failed). */
  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#flushing) return this.#flushing.then(() => (this.#buffer.length ? this.flush() : undefined));
    if (this.#buffer.length === 0) return Promise.resolve();
    const batch = this.#buffer.splice(0, this.#o.batchSize * 4);
    const pipeline = this.#o.redis.pipeline();
    for (const json of batch) pipeline.xadd(this.#o.streamKey, '*', EVENT_FIELD, json);
    this.#flushing = pipeline
      .exec()
      .then((results) => {
        const failed = batch.filter((_, i) => results?.[i]?.[0]);
        this.written += batch.length - failed.length;
        if (failed.length) this.#requeue(failed);
        else this.#failures = 0;
      })
      .catch(() => this.#requeue(batch))
      .finally(() => {
        this.#flushing = undefined;
        if (this.#buffer.length) this.#timer ??= setTimeout(() => void this.flush(), this.#retryDelayMs());
      });
    return this.#flushing;
  }

  #requeue(batch: string[]): void {
    this.#buffer.unshift(...batch);
    const excess = this.#buffer.length - this.#o.maxBuffered;
    if (excess > 0) {
      this.#buffer.splice(0, excess);
      this.dropped += excess;
    }
    this.#failures++;
  }

  #failures = 0;
  #retryDelayMs(): number {
    return this.#failures === 0 ? this.#o.flushIntervalMs : Math.min(5_000, 100 * 2 ** Math.min(this.#failures, 6));
  }

  /** Flushes and stops; events Redis refused stay counted in `pending`. */
  async close(): Promise<void> {
    await this.flush();
    clearTimeout(this.#timer);
  }
}
