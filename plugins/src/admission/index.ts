import type { Redis } from 'ioredis';

/**
 * Admission: the per-key and per-listing rate limits, checked in the same Redis round trip that records the
 * request's start event (DESIGN §2 hot-path rule). Limits are GCRA (generic cell rate algorithm): one key per limit
 * holding a theoretical arrival time, a burst of a whole minute's allowance, then the steady rate. Both limits are
 * checked before either is charged, so a request refused by one limit costs nothing against the other.
 *
 * When Redis cannot be reached, `LocalAdmission` applies the same limits per process (an explicit, documented
 * fallback for free listings only; the caller decides when to use it).
 */

// The limits both scripts share. KEYS[1], KEYS[2]: key- and listing-limit state; ARGV[1], ARGV[2]: their limits per
// minute. limits() decides without writing; charge() records the decision once the script admits the call.
const LIMITS_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function gcra(key, limit)
  local interval = 60000 / limit
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - 60000
  if allow_at > now then return 0, new_tat, 0, allow_at - now end
  return 1, new_tat, math.floor((now - allow_at) / interval), 0
end
-- Returns allowed, limit, remaining, reset_ms, retry_after_ms for the tighter limit (the refusing one when refused).
local ka, ktat, krem, kretry = gcra(KEYS[1], tonumber(ARGV[1]))
local la, ltat, lrem, lretry = gcra(KEYS[2], tonumber(ARGV[2]))
local function limits()
  if ka == 0 or la == 0 then
    local limit = tonumber(ARGV[1])
    if ka == 1 then limit = tonumber(ARGV[2]) end
    local retry = math.ceil(math.max(kretry, lretry))
    return 0, limit, 0, retry, retry
  end
  if lrem < krem then return 1, tonumber(ARGV[2]), lrem, math.ceil(ltat - now), 0 end
  return 1, tonumber(ARGV[1]), krem, math.ceil(ktat - now), 0
end
local function charge()
  redis.call('SET', KEYS[1], tostring(ktat), 'PX', math.ceil(ktat - now) + 1)
  redis.call('SET', KEYS[2], tostring(ltat), 'PX', math.ceil(ltat - now) + 1)
end
`;

// KEYS: key-limit state, listing-limit state, events stream. ARGV: key limit/min, listing limit/min, event JSON.
// Returns {allowed, limit, remaining, reset_ms, retry_after_ms} for the tighter of the two limits.
const ADMIT_SCRIPT = `${LIMITS_LUA}
local allowed, limit, remaining, reset, retry = limits()
if allowed == 0 then return {0, limit, 0, reset, retry} end
charge()
redis.call('XADD', KEYS[3], '*', 'e', ARGV[3])
return {1, limit, remaining, reset, 0}
`;

export interface AdmissionRequest {
  keyStateKey: string;
  listingStateKey: string;
  keyLimitPerMinute: number;
  listingLimitPerMinute: number;
  /** JSON of the start event, appended only when admitted. */
  startEvent: string;
}

/** The decision, with what the RateLimit-* headers report (the tighter limit). */
export interface Admission {
  allowed: boolean;
  limit: number;
  remaining: number;
  resetMs: number;
  retryAfterMs: number;
}

type AdmitCommand = (
  keyState: string,
  listingState: string,
  events: string,
  keyLimit: number,
  listingLimit: number,
  event: string,
) => Promise<[number, number, number, number, number]>;

/** Defines the script on a connection (EVALSHA with a transparent EVAL fallback). */
export const createAdmission = (redis: Redis, eventsKey: string) => {
  redis.defineCommand('crochetAdmit', { numberOfKeys: 3, lua: ADMIT_SCRIPT });
  const admit = (redis as unknown as { crochetAdmit: AdmitCommand }).crochetAdmit.bind(redis);
  return async (request: AdmissionRequest): Promise<Admission> => {
    const [allowed, limit, remaining, resetMs, retryAfterMs] = await admit(
      request.keyStateKey,
      request.listingStateKey,
      eventsKey,
      request.keyLimitPerMinute,
      request.listingLimitPerMinute,
      request.startEvent,
    );
    return { allowed: allowed === 1, limit, remaining, resetMs, retryAfterMs };
  };
};

// Paid calls: the same limits, plus exactly-once use of the payment proof, in the same single round trip.
// KEYS: key-limit, listing-limit, events, verified record, the buyer's spend today, then one "used" key per proof id.
// ARGV: key limit/min, listing limit/min, start event JSON (without its closing brace), gateway request id,
//       listing id, buyer id, "used" key prefix, daily spend cap ('' for none), the price this call adds to spend,
//       '1' when the payment's money has already moved on chain (a direct transfer or Relay), '0' when it settles later.
// Returns {outcome, limit, remaining, reset_ms, retry_after_ms, detail, extra} where outcome is one of
// admitted (detail: the verified payment JSON, extra: its settlement), used (detail: the gateway request it paid),
// unverified, mismatch, rate_limited, spend_cap (detail: spent today; the proof is untouched), spend_cap_refund
// (detail: spent today, extra: the payment JSON; the proof is consumed and the call recorded, to be refunded).
const PAID_ADMIT_SCRIPT = `
for i = 6, #KEYS do
  local by = redis.call('GET', KEYS[i])
  if by then return {'used', 0, 0, 0, 0, by, ''} end
end
local verified = redis.call('HMGET', KEYS[4], 'listing', 'buyer', 'payment', 'settlement', 'spend_held')
if not verified[3] then return {'unverified', 0, 0, 0, 0, '', ''} end
if verified[1] ~= ARGV[5] or verified[2] ~= ARGV[6] then return {'mismatch', 0, 0, 0, 0, verified[1], ''} end
-- Every id the verified payment consumes (a Relay request and its fill, say), not only the one presented. They are
-- named from ARGV[7], the "used" key prefix: undeclared keys, fine on a single Redis (not on a cluster).
local ids = cjson.decode(verified[3]).proof_ids
for _, id in ipairs(ids) do
  local by = redis.call('GET', ARGV[7] .. id)
  if by then return {'used', 0, 0, 0, 0, by, ''} end
end
${LIMITS_LUA}
local allowed, limit, remaining, reset, retry = limits()
if allowed == 0 then return {'rate_limited', limit, 0, reset, retry, '', ''} end
-- The operator's cap, before anything is charged. A payment that settles later (x402) is simply not settled: the proof
-- stays valid for a later call. Money that already moved is never left hanging: the proof is consumed and the call
-- recorded with the payment, which the gateway marks for refund.
-- A payment whose settlement was pending when its call was answered still holds its spend (spend_held): its retry is
-- neither capped nor counted again.
local held = verified[5]
local spent = tonumber(redis.call('GET', KEYS[5]) or '0')
if not held and ARGV[8] ~= '' and spent + tonumber(ARGV[9]) > tonumber(ARGV[8]) then
  if ARGV[10] ~= '1' then return {'spend_cap', 0, 0, 0, 0, tostring(spent), ''} end
  for i = 6, #KEYS do redis.call('SET', KEYS[i], ARGV[4]) end
  for _, id in ipairs(ids) do redis.call('SET', ARGV[7] .. id, ARGV[4]) end
  redis.call('XADD', KEYS[3], '*', 'e', ARGV[3] .. ',"payment":' .. verified[3] .. '}')
  return {'spend_cap_refund', 0, 0, 0, 0, tostring(spent), verified[3]}
end
charge()
if held then
  redis.call('HDEL', KEYS[4], 'spend_held')
else
  redis.call('INCRBY', KEYS[5], ARGV[9])
  redis.call('EXPIRE', KEYS[5], 172800)
end
for i = 6, #KEYS do redis.call('SET', KEYS[i], ARGV[4]) end
for _, id in ipairs(ids) do redis.call('SET', ARGV[7] .. id, ARGV[4]) end
redis.call('XADD', KEYS[3], '*', 'e', ARGV[3] .. ',"payment":' .. verified[3] .. '}')
return {'admitted', limit, remaining, reset, 0, verified[3], verified[4] or ''}
`;

export interface PaidAdmissionRequest extends Omit<AdmissionRequest, 'startEvent'> {
  /** The start event's JSON; the script appends the verified payment to it. */
  startEvent: string;
  verifiedKey: string;
  usedKeys: string[];
  /** Prefix of the "used" keys: the script consumes every proof id of the verified payment under it. */
  usedKeyPrefix: string;
  gatewayRequestId: string;
  listingId: string;
  buyerId: string;
  /** The buyer's spend counter for today (`keys.spend`), its daily cap (null: none) and what this call adds. */
  spendKey: string;
  spendCapAtomic: string | null;
  priceAtomic: string;
  /** The payment's money has already moved (direct transfer, Relay): past the cap it is recorded for refund. */
  alreadySettled: boolean;
}

export type PaidAdmission =
  | ({ outcome: 'admitted'; payment: string; settlement: string } & Admission)
  | ({ outcome: 'rate_limited' } & Admission)
  | { outcome: 'spend_cap'; spentAtomic: string }
  | { outcome: 'spend_cap_refund'; spentAtomic: string; payment: string }
  | { outcome: 'used'; gatewayRequestId: string }
  | { outcome: 'unverified' }
  | { outcome: 'mismatch' };

type PaidAdmitCommand = (
  ...args: (string | number)[]
) => Promise<[string, number, number, number, number, string, string]>;

/** Defines the paid admission script; one EVALSHA per call. */
export const createPaidAdmission = (redis: Redis, eventsKey: string) => {
  redis.defineCommand('crochetPaidAdmit', { lua: PAID_ADMIT_SCRIPT });
  const admit = (redis as unknown as { crochetPaidAdmit: PaidAdmitCommand }).crochetPaidAdmit.bind(redis);
  return async (request: PaidAdmissionRequest): Promise<PaidAdmission> => {
    const event = request.startEvent.trimEnd();
    const keys = [
      request.keyStateKey,
      request.listingStateKey,
      eventsKey,
      request.verifiedKey,
      request.spendKey,
      ...request.usedKeys,
    ];
    const [outcome, limit, remaining, resetMs, retryAfterMs, detail, settlement] = await admit(
      keys.length,
      ...keys,
      request.keyLimitPerMinute,
      request.listingLimitPerMinute,
      event.endsWith('}') ? event.slice(0, -1) : event,
      request.gatewayRequestId,
      request.listingId,
      request.buyerId,
      request.usedKeyPrefix,
      request.spendCapAtomic ?? '',
      request.priceAtomic,
      request.alreadySettled ? '1' : '0',
    );
    switch (outcome) {
      case 'admitted':
        return { outcome, allowed: true, limit, remaining, resetMs, retryAfterMs, payment: detail, settlement };
      case 'rate_limited':
        return { outcome, allowed: false, limit, remaining, resetMs, retryAfterMs };
      case 'used':
        return { outcome, gatewayRequestId: detail };
      case 'spend_cap':
        return { outcome, spentAtomic: detail };
      case 'spend_cap_refund':
        return { outcome, spentAtomic: detail, payment: settlement };
      case 'mismatch':
        return { outcome };
      default:
        return { outcome: 'unverified' };
    }
  };
};

/** The same GCRA in process memory, for when Redis cannot be reached. */
export class LocalAdmission {
  readonly #tat = new Map<string, number>();

  #check(key: string, limit: number, now: number) {
    const interval = 60_000 / limit;
    const tat = Math.max(this.#tat.get(key) ?? 0, now);
    const next = tat + interval;
    const allowAt = next - 60_000;
    if (allowAt > now) return { ok: false, next, remaining: 0, retry: allowAt - now };
    return { ok: true, next, remaining: Math.floor((now - allowAt) / interval), retry: 0 };
  }

  admit(request: Omit<AdmissionRequest, 'startEvent'>, now = Date.now()): Admission {
    if (this.#tat.size > 100_000) this.#sweep(now);
    const k = this.#check(request.keyStateKey, request.keyLimitPerMinute, now);
    const l = this.#check(request.listingStateKey, request.listingLimitPerMinute, now);
    if (!k.ok || !l.ok) {
      const retry = Math.ceil(Math.max(k.retry, l.retry));
      const limit = k.ok ? request.listingLimitPerMinute : request.keyLimitPerMinute;
      return { allowed: false, limit, remaining: 0, resetMs: retry, retryAfterMs: retry };
    }
    this.#tat.set(request.keyStateKey, k.next);
    this.#tat.set(request.listingStateKey, l.next);
    const tighter = l.remaining < k.remaining ? l : k;
    const limit = tighter === l ? request.listingLimitPerMinute : request.keyLimitPerMinute;
    return {
      allowed: true,
      limit,
      remaining: tighter.remaining,
      resetMs: Math.ceil(tighter.next - now),
      retryAfterMs: 0,
    };
  }

  #sweep(now: number): void {
    for (const [key, tat] of this.#tat) if (tat < now) this.#tat.delete(key);
  }
}

/** The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers) and Retry-After for a decision. */
export const rateLimitHeaders = (admission: Admission): Record<string, string> => {
  const headers: Record<string, string> = {
    'ratelimit-limit': String(admission.limit),
    'ratelimit-remaining': String(admission.remaining),
    'ratelimit-reset': String(Math.ceil(admission.resetMs / 1000)),
  };
  if (!admission.allowed) headers['retry-after'] = String(Math.max(1, Math.ceil(admission.retryAfterMs / 1000)));
  return headers;
};
