import { ApiError } from '@crochet/protocol';
import type { Redis } from 'ioredis';

/**
 * Counts attempts per bucket (an email, a client address, an operator) in fixed windows in Redis, shared by every
 * control plane. An attempt is counted before the work it guards, in one script with the check, so a burst of
 * concurrent guesses cannot all slip under the limit; the caller refunds (or clears) the attempts that succeeded,
 * which leaves failures counted.
 */

export interface Bucket {
  key: string;
  max: number;
  windowMs: number;
}

// KEYS: counters. ARGV: max, window ms per key. Returns 0 (counted) or the ms until the first full bucket frees up.
const TAKE_SCRIPT = `
for i = 1, #KEYS do
  local n = tonumber(redis.call('GET', KEYS[i]) or '0')
  if n >= tonumber(ARGV[2 * i - 1]) then
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl < 0 then
      ttl = tonumber(ARGV[2 * i])
      redis.call('PEXPIRE', KEYS[i], ttl)
    end
    return ttl
  end
end
for i = 1, #KEYS do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[2 * i]) end
end
return 0
`;

// Never below zero, and never a counter without its expiry (it may have expired since the attempt was counted).
const REFUND_SCRIPT = `
for i = 1, #KEYS do
  local n = tonumber(redis.call('GET', KEYS[i]) or '0')
  if n > 1 then redis.call('DECR', KEYS[i]) elseif n == 1 then redis.call('DEL', KEYS[i]) end
end
return 0
`;

export class AttemptLimiter {
  readonly #redis: Redis;

  constructor(redis: Redis) {
    this.#redis = redis;
  }

  /** Counts one attempt in every bucket, or throws 429 RATE_LIMITED (with Retry-After) when one is full. */
  async take(buckets: Bucket[], message: string): Promise<void> {
    const args = buckets.flatMap((b) => [String(b.max), String(b.windowMs)]);
    const waitMs = Number(await this.#redis.eval(TAKE_SCRIPT, buckets.length, ...buckets.map((b) => b.key), ...args));
    if (waitMs > 0) {
      const seconds = Math.max(1, Math.ceil(waitMs / 1000));
      throw new ApiError('RATE_LIMITED', {
        message: `${message} Retry in ${seconds} s.`,
        headers: { 'retry-after': String(seconds) },
        details: { retry_after_seconds: seconds },
      });
    }
  }

  /** Takes back one attempt from each bucket (the attempt succeeded). */
  async refund(keys: string[]): Promise<void> {
    if (keys.length > 0) await this.#redis.eval(REFUND_SCRIPT, keys.length, ...keys);
  }

  /** Forgets a bucket's attempts. */
  async clear(key: string): Promise<void> {
    await this.#redis.del(key);
  }
}
