import { EVENT_FIELD, type GatewayEvent } from '@crochet/protocol';
import type { Redis } from 'ioredis';
import { APPEND_EVENTS } from '../admission/scripts.js';

/**
 * The proxy's outbox of gateway events (DESIGN §2 durability rule). An event is in one of two queues until the
 * control plane has committed it to PostgreSQL:
 *
 *   unsent   not in Redis yet: completion events (batched, so a request's answer never waits on Redis) and start
 *            records kept while Redis was unreachable. Written in batches (one APPEND_EVENTS script call each),
 *            on a timer that backs off while Redis fails — never once per push.
 *   sent     in the events stream, with its entry id, waiting for the control plane's committed watermark
 *            (`events:committed`) to pass it. Start records the admission scripts append are added here directly.
 *
 * If Redis loses its data (a new epoch), every sent event goes back to unsent and is appended again: the consumer
 * applies events idempotently, so what arrives twice changes nothing, and nothing the stream lost is lost.
 *
 * Memory is bounded (`maxEvents`, default 200 000 events): past it the oldest sent events are forgotten first (they
 * are in Redis; only a Redis loss before their commit would lose them), then the oldest unsent ones are dropped.
 * Both are counted (`forgotten`, `dropped`) for the metrics; reconciliation reports what a drop left incomplete.
 */
export interface EventOutboxOptions {
  redis: Redis;
  streamKey: string;
  /** A flush writes up to four times this many events in one call; this many pending start one at once. */
  batchSize?: number;
  /** Flush unsent events this often while there are some (and Redis answers). */
  flushIntervalMs?: number;
  /** Events kept in both queues together. */
  maxEvents?: number;
  /** Longest wait between attempts while Redis fails (the backoff doubles from 100 ms up to this). */
  retryMaxMs?: number;
}

/** One stream entry's fields, as appended: `e` and the event JSON, then for a paid start `p` and its payment JSON. */
export type EventFields = readonly string[];

/** APPEND_EVENTS: the stream, then each entry's field count and fields; each entry's id, or '' if refused. */
type AppendEvents = (stream: string, ...args: string[]) => Promise<string[]>;

interface Sent {
  fields: EventFields;
  id: string;
}

/** Stream entry ids ("<ms>-<seq>") compared as the pair of integers they are. */
export const compareStreamIds = (a: string, b: string): number => {
  const da = a.indexOf('-');
  const db = b.indexOf('-');
  const ma = Number(da < 0 ? a : a.slice(0, da));
  const mb = Number(db < 0 ? b : b.slice(0, db));
  if (ma !== mb) return ma < mb ? -1 : 1;
  const sa = da < 0 ? 0 : Number(a.slice(da + 1));
  const sb = db < 0 ? 0 : Number(b.slice(db + 1));
  return sa === sb ? 0 : sa < sb ? -1 : 1;
};

export class EventOutbox {
  readonly #o: Required<EventOutboxOptions>;
  #unsent: EventFields[] = [];
  #sent: Sent[] = [];
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #failures = 0;
  /** Events appended to the stream since start (by this outbox or reported by the scripts). */
  appended = 0;
  /** Unsent events dropped because the outbox was full: lost unless reconciliation restores them. */
  dropped = 0;
  /** Sent events forgotten before their commit because the outbox was full. */
  forgotten = 0;
  /** Writes to Redis that failed (each is followed by a backoff, never by a write per push). */
  failedWrites = 0;

  readonly #append: AppendEvents;

  constructor(options: EventOutboxOptions) {
    this.#o = { batchSize: 256, flushIntervalMs: 10, maxEvents: 200_000, retryMaxMs: 5_000, ...options };
    const { redis } = this.#o;
    redis.defineCommand('crochetAppendEvents', { lua: APPEND_EVENTS, numberOfKeys: 1 });
    this.#append = (redis as unknown as Record<string, AppendEvents>)['crochetAppendEvents']!.bind(redis);
  }

  /** Events not in Redis yet, including those promised (`promise`) and not pushed yet. */
  get unsent(): number {
    return this.#unsent.length + this.#promised;
  }

  #promised = 0;

  /**
   * Promises an event that will be pushed later (a completion whose payment outcome is still being settled): counted
   * in `unsent` from now on, so that nobody takes the outbox for drained while it is on its way.
   */
  promise(): (event: GatewayEvent) => void {
    this.#promised++;
    let kept = false;
    return (event) => {
      if (kept) return;
      kept = true;
      this.#promised--;
      this.push(event);
    };
  }

  /** Events in the stream, not yet known to be committed to PostgreSQL. */
  get uncommitted(): number {
    return this.#sent.length;
  }

  push(event: GatewayEvent): void {
    this.pushJson(JSON.stringify(event));
  }

  pushJson(json: string): void {
    this.pushFields([EVENT_FIELD, json]);
  }

  /** An entry to append as it is (fields as `sent` takes them). */
  pushFields(fields: EventFields): void {
    this.#make(1);
    this.#unsent.push(fields);
    // A write in flight schedules what follows it. Otherwise a full batch goes out at once, unless Redis is failing:
    // then the backoff timer decides (never a write per push).
    if (this.#flushing) return;
    if (this.#unsent.length >= this.#o.batchSize && this.#failures === 0) void this.flush();
    else this.#schedule(this.#delayMs());
  }

  /** An entry a script appended to the stream (its id as the script returned it). */
  sent(fields: EventFields, id: string): void {
    this.appended++;
    this.#make(1);
    this.#sent.push({ fields, id });
  }

  /** The control plane committed every event up to this stream id: forget them. */
  committed(watermark: string): void {
    let n = 0;
    while (n < this.#sent.length && compareStreamIds(this.#sent[n]!.id, watermark) <= 0) n++;
    if (n > 0) this.#sent.splice(0, n);
  }

  /**
   * Redis lost the stream (a new epoch): every sent event is appended again. Returns every event not known committed
   * (the sent ones and those not written yet), oldest first, so that the caller can restore what they consumed (the
   * proofs of paid starts) and what they gave back (the outcomes of ends). A write in flight is waited for first: its
   * events are counted where it leaves them (sent, or unsent again), never missed.
   */
  async rewind(): Promise<EventFields[]> {
    while (this.#flushing) await this.#flushing;
    const again = this.#sent.map((s) => s.fields);
    this.#sent = [];
    this.#unsent = [...again, ...this.#unsent];
    this.#failures = 0;
    this.#schedule(0);
    return [...this.#unsent];
  }

  /** Writes what is unsent; resolves when written, or after one failed attempt (what failed is kept for later). */
  flush(): Promise<void> {
    if (this.#flushing) {
      return this.#flushing.then(() => (this.#unsent.length && this.#failures === 0 ? this.flush() : undefined));
    }
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#unsent.length === 0) return Promise.resolve();
    const batch = this.#unsent.splice(0, this.#o.batchSize * 4);
    // One script call for the batch (APPEND_EVENTS): one command for the Redis client to build and answer, not one
    // per event.
    const args: string[] = [];
    for (const fields of batch) args.push(String(fields.length), ...fields);
    this.#flushing = this.#append(this.#o.streamKey, ...args)
      .then((ids) => {
        const failed: EventFields[] = [];
        for (const [i, fields] of batch.entries()) {
          const id = ids[i];
          if (typeof id !== 'string' || id === '') failed.push(fields);
          else {
            this.appended++;
            this.#sent.push({ fields, id });
          }
        }
        if (failed.length) this.#requeue(failed);
        else this.#failures = 0;
      })
      .catch(() => this.#requeue(batch))
      .finally(() => {
        this.#flushing = undefined;
        if (this.#unsent.length === 0) return;
        const full = this.#unsent.length >= this.#o.batchSize && this.#failures === 0;
        this.#schedule(full ? 0 : this.#delayMs());
      });
    return this.#flushing;
  }

  /**
   * Waits (at most `timeoutMs`) until every promised event was pushed and everything unsent is written, then stops
   * the timer. What is still unsent after that is counted in `unsent` (and lost with the process: reconciliation
   * reports what it leaves).
   */
  async close(timeoutMs = 10_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.unsent > 0 && Date.now() < until) {
      await this.flush();
      if (this.unsent > 0) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(delayMs: number): void {
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, delayMs);
  }

  #delayMs(): number {
    return this.#failures === 0 ? this.#o.flushIntervalMs : Math.min(this.#o.retryMaxMs, 100 * 2 ** this.#failures);
  }

  #requeue(batch: EventFields[]): void {
    this.failedWrites++;
    this.#unsent.unshift(...batch);
    this.#failures = Math.min(this.#failures + 1, 16);
    this.#make(0);
  }

  /** Makes room for `incoming` more events within the cap. */
  #make(incoming: number): void {
    let excess = this.#unsent.length + this.#sent.length + incoming - this.#o.maxEvents;
    if (excess <= 0) return;
    const forget = Math.min(excess, this.#sent.length);
    if (forget > 0) {
      this.#sent.splice(0, forget);
      this.forgotten += forget;
      excess -= forget;
    }
    if (excess > 0) {
      this.#unsent.splice(0, excess);
      this.dropped += excess;
    }
  }
}
