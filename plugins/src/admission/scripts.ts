/**
 * Every Lua script the gateway runs in Redis, in one place (DESIGN §2): admission of free, unpaid and paid calls
 * (rate limits, exactly-once proof consumption, spend caps and the start record in one round trip), and giving a
 * proof back; and the event outbox's batched write. `index.ts` wraps each in a typed function (the outbox's in
 * usage-events); nothing else sends Lua.
 *
 * Rules every script keeps:
 * - The start record is appended as stream fields (`e`: the event JSON the proxy built; `p`: the verified payment's
 *   JSON from the verification record), never by editing JSON text.
 * - A paid admission is idempotent by gateway request id: run twice for the same request (a retry after a timeout),
 *   the second run finds the proof held by that request and answers "admitted" again without a second effect.
 * - A paid admission carries a deadline in Redis's own clock: a script that reaches Redis after it (queued behind a
 *   pause, say) does nothing. So once the deadline has passed, one more run tells the whole truth.
 * - Paid admission refuses to run on a Redis whose epoch is not the one the proxy adopted (restored state).
 *
 * Proof ids of a verified payment beyond the presented one are named from the "used" key prefix: undeclared keys,
 * fine on a single Redis or a primary/replica pair, not on a cluster (DESIGN §4 plans hash tags for that).
 */

/** `now` in milliseconds by Redis's clock; every script starts with it. */
const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

// GCRA (generic cell rate algorithm) over two keys: a burst of a whole minute's allowance, then the steady rate.
// Both limits are decided before either is charged, so a request refused by one costs nothing against the other.
// lk, ll: key- and listing-limit state keys; kl, ll: their limits per minute.
const LIMITS = `
local function gcra(key, limit)
  local interval = 60000 / limit
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - 60000
  if allow_at > now then return 0, new_tat, 0, allow_at - now end
  return 1, new_tat, math.floor((now - allow_at) / interval), 0
end
-- {allowed, limit, remaining, reset_ms, retry_after_ms} of the tighter limit (the refusing one when refused), and a
-- function that charges both.
local function limits(key_state, key_limit, listing_state, listing_limit)
  local ka, ktat, krem, kretry = gcra(key_state, key_limit)
  local la, ltat, lrem, lretry = gcra(listing_state, listing_limit)
  local charge = function()
    redis.call('SET', key_state, tostring(ktat), 'PX', math.ceil(ktat - now) + 1)
    redis.call('SET', listing_state, tostring(ltat), 'PX', math.ceil(ltat - now) + 1)
  end
  if ka == 0 or la == 0 then
    local limit = key_limit
    if ka == 1 then limit = listing_limit end
    local retry = math.ceil(math.max(kretry, lretry))
    return {0, limit, 0, retry, retry}, charge
  end
  if lrem < krem then return {1, listing_limit, lrem, math.ceil(ltat - now), 0}, charge end
  return {1, key_limit, krem, math.ceil(ktat - now), 0}, charge
end
`;

/**
 * Free calls. KEYS: key-limit state, listing-limit state, events stream. ARGV: key limit/min, listing limit/min,
 * start event JSON. Returns {allowed, limit, remaining, reset_ms, retry_after_ms, stream id ('' when refused)}.
 */
export const ADMIT_FREE = `${NOW}${LIMITS}
local d, charge = limits(KEYS[1], tonumber(ARGV[1]), KEYS[2], tonumber(ARGV[2]))
if d[1] == 0 then return {0, d[2], 0, d[4], d[5], ''} end
charge()
local id = redis.call('XADD', KEYS[3], '*', 'e', ARGV[3])
return {1, d[2], d[3], d[4], 0, id}
`;

// Spend reservations (DESIGN §2): a 402 issued to an agent with a daily cap reserves its price until the payment
// request expires, so that the requirements out at any time never promise more than the cap leaves. Per agent, not
// per day (a request issued before midnight and paid after it is counted on the day it is admitted): a sorted set by
// expiry (members '<listing>|<payment request id>|<price>'), the same members at score 0 for lookup by prefix, and
// their total. Expired reservations are dropped lazily, at most 100 per script, by every script that reads the total;
// one not dropped yet only counts for longer (the buyer may be refused, never charged past the cap).
// rz, rl, rt: the reservation keys. \255 ends a prefix range.
const RESERVATIONS = `
local function fmt(n) return string.format('%d', n) end
local function reserved_price(member) return tonumber(string.match(member, '|(%d+)$')) end
local function drop_expired(rz, rl, rt)
  -- A set gone (expired whole) takes its total with it: the total never counts prices no set holds.
  if redis.call('EXISTS', rz) == 0 then redis.call('DEL', rt) return end
  local gone = redis.call('ZRANGEBYSCORE', rz, '-inf', now, 'LIMIT', 0, 100)
  if #gone == 0 then return end
  local sum = 0
  for _, m in ipairs(gone) do sum = sum + reserved_price(m) end
  redis.call('ZREM', rz, unpack(gone))
  redis.call('ZREM', rl, unpack(gone))
  redis.call('DECRBY', rt, fmt(sum))
end
local function reserve(rz, rl, rt, member, until_ms)
  redis.call('ZADD', rz, until_ms, member)
  redis.call('ZADD', rl, 0, member)
  redis.call('INCRBY', rt, fmt(reserved_price(member)))
  local keep = until_ms - now + 60000
  for _, key in ipairs({rz, rl, rt}) do
    if redis.call('PTTL', key) < keep then redis.call('PEXPIRE', key, keep) end
  end
end
local function unreserve(rz, rl, rt, member)
  if redis.call('ZREM', rz, member) == 1 then
    redis.call('ZREM', rl, member)
    redis.call('DECRBY', rt, fmt(reserved_price(member)))
  end
end
-- The live reservation a payment takes over: the one of the payment request it names, else (a payment that names
-- none — an EVM transfer, Relay, x402 — or whose own was taken by one of those) any of its listing. Reservations of
-- one listing are for the same price and interchangeable; the admission check bounds the spend whatever is found.
local function find_reservation(rl, listing, request_id)
  if request_id then
    local p = listing .. '|' .. request_id .. '|'
    local own = redis.call('ZRANGEBYLEX', rl, '[' .. p, '[' .. p .. '\\255', 'LIMIT', 0, 1)[1]
    if own then return own end
  end
  return redis.call('ZRANGEBYLEX', rl, '[' .. listing .. '|', '[' .. listing .. '|\\255', 'LIMIT', 0, 1)[1]
end
`;

/**
 * A paid listing called without a proof: counted against the limits and recorded like any call (each 402 issues a
 * payment request, so an agent cannot ask for them without bound), and, for a buyer with a daily spend cap, its price
 * reserved against the cap until the payment request expires — refused when the spend today plus the live
 * reservations leave no room for it.
 * KEYS: key-limit, listing-limit, events, the buyer's spend today, the buyer's reservations (by expiry, by prefix,
 * total). ARGV: key limit/min, listing limit/min, start event JSON, daily cap ('' for none), price, reservation
 * member ('<listing>|<payment request id>|<price>'), how long it holds (ms). Returns {outcome, limit, remaining,
 * reset_ms, retry_after_ms, spent, stream id, reserved}; outcome: payment_required | spend_cap | rate_limited.
 */
export const ADMIT_UNPAID = `${NOW}${LIMITS}${RESERVATIONS}
local d, charge = limits(KEYS[1], tonumber(ARGV[1]), KEYS[2], tonumber(ARGV[2]))
if d[1] == 0 then return {'rate_limited', d[2], 0, d[4], d[5], '', '', ''} end
charge()
local id = redis.call('XADD', KEYS[3], '*', 'e', ARGV[3])
local spent = redis.call('GET', KEYS[4]) or '0'
if ARGV[4] == '' then return {'payment_required', d[2], d[3], d[4], 0, spent, id, '0'} end
drop_expired(KEYS[5], KEYS[6], KEYS[7])
local reserved = redis.call('GET', KEYS[7]) or '0'
if tonumber(spent) + tonumber(reserved) + tonumber(ARGV[5]) > tonumber(ARGV[4]) then
  return {'spend_cap', d[2], d[3], d[4], 0, spent, id, reserved}
end
reserve(KEYS[5], KEYS[6], KEYS[7], ARGV[6], now + tonumber(ARGV[7]))
return {'payment_required', d[2], d[3], d[4], 0, spent, id, reserved}
`;

/**
 * A call with a payment proof. KEYS: 1 epoch, 2 key-limit, 3 listing-limit, 4 events, 5 the payment's verification
 * record (hash listing, buyer, payment, settlement, spend_held, refused, reservation, reserved_until), 6 the buyer's
 * spend today, 7 8 9 the buyer's reservations (by expiry, by prefix, total), 10… the "used" key of the presented
 * proof id. ARGV: 1 the proxy's epoch, 2 key limit/min, 3 listing limit/min, 4 start event JSON,
 * 5 gateway request id, 6 listing id, 7 buyer id, 8 "used" key prefix, 9 daily cap ('' none), 10 price, 11 '1' when
 * the payment's money has already moved (direct transfer, Relay), 12 deadline (Redis ms), 13 a verification made
 * just now: payment JSON ('' none), 14 its settlement JSON, 15 seconds to keep the verification record.
 *
 * Returns {outcome, limit, remaining, reset_ms, retry_after_ms, detail, extra, stream id}:
 *   admitted           detail: payment JSON, extra: settlement JSON (also when this request already held the proof)
 *   used               detail: the gateway request the proof paid for
 *   unverified | mismatch | late | epoch
 *   rate_limited       the proof stays verified and unconsumed
 *   spend_cap          detail: spent today; nothing consumed (a payment that settles later stays usable)
 *   spend_cap_refund   detail: spent today, extra: payment JSON; the proof is consumed and the call recorded, for
 *                      the gateway to mark for refund (its money already moved). Remembered on the verification
 *                      record (`refused`), so a run again for the same request repeats the refusal.
 * A payment whose settlement was pending when its call was answered holds its spend (spend_held): its retry is neither
 * capped nor counted again.
 *
 * Under a cap, the payment takes over a live reservation — its own payment request's where the payment names it (a
 * Solana memo), else any of this listing — and needs only the spend today plus its price to fit the cap (its room was set
 * aside when its 402 was issued). Admitted, the reservation becomes spend, once: it is dropped as the spend counter
 * grows, and remembered on the verification record so that a proof given back gets it back. A payment without a live
 * reservation (expired, or lost with Redis) must fit beside every live reservation: the room others were promised is
 * not its to take.
 */
export const ADMIT_PAID = `${NOW}${RESERVATIONS}
if now > tonumber(ARGV[12]) then return {'late', 0, 0, 0, 0, '', '', ''} end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'epoch', 0, 0, 0, 0, '', '', ''} end
if ARGV[13] ~= '' and redis.call('EXISTS', KEYS[5]) == 0 then
  redis.call('HSET', KEYS[5], 'listing', ARGV[6], 'buyer', ARGV[7], 'payment', ARGV[13], 'settlement', ARGV[14])
  redis.call('EXPIRE', KEYS[5], tonumber(ARGV[15]))
end
${LIMITS}
local me = ARGV[5]
local v = redis.call('HMGET', KEYS[5], 'listing', 'buyer', 'payment', 'settlement', 'spend_held', 'refused')
local d, charge = limits(KEYS[2], tonumber(ARGV[2]), KEYS[3], tonumber(ARGV[3]))
-- This request already holds the proof (a run again after a timeout): the same answer as the first run gave.
local function again()
  if v[6] == me then return {'spend_cap_refund', 0, 0, 0, 0, redis.call('GET', KEYS[6]) or '0', v[3] or '', ''} end
  return {'admitted', d[2], d[3], d[4], 0, v[3] or '', v[4] or '', ''}
end
for i = 10, #KEYS do
  local by = redis.call('GET', KEYS[i])
  if by == me then return again() end
  if by then return {'used', 0, 0, 0, 0, by, '', ''} end
end
if not v[3] then return {'unverified', 0, 0, 0, 0, '', '', ''} end
if v[1] ~= ARGV[6] or v[2] ~= ARGV[7] then return {'mismatch', 0, 0, 0, 0, '', '', ''} end
local used = {}
local payment = cjson.decode(v[3])
for _, id in ipairs(payment.proof_ids) do
  local key = ARGV[8] .. id
  local by = redis.call('GET', key)
  if by == me then return again() end
  if by then return {'used', 0, 0, 0, 0, by, '', ''} end
  used[#used + 1] = key
end
if d[1] == 0 then return {'rate_limited', d[2], 0, d[4], d[5], '', '', ''} end
-- The start record carries Redis's time of the consumption ('t'): which of two requests consumed a proof last is
-- decided by one clock, not by the proxies' own.
local function consume()
  for i = 10, #KEYS do redis.call('SET', KEYS[i], me) end
  for _, key in ipairs(used) do redis.call('SET', key, me) end
  return redis.call('XADD', KEYS[4], '*', 'e', ARGV[4], 'p', v[3], 't', tostring(now))
end
local spent = tonumber(redis.call('GET', KEYS[6]) or '0')
local held
if not v[5] and ARGV[9] ~= '' then
  drop_expired(KEYS[7], KEYS[8], KEYS[9])
  local request_id = payment.payment_request_id
  if type(request_id) ~= 'string' then request_id = nil end
  held = find_reservation(KEYS[8], ARGV[6], request_id)
  local room = tonumber(ARGV[9]) - spent
  if not held then room = room - tonumber(redis.call('GET', KEYS[9]) or '0') end
  if tonumber(ARGV[10]) > room then
    if ARGV[11] ~= '1' then return {'spend_cap', 0, 0, 0, 0, fmt(spent), '', ''} end
    -- Its money moved and is to be refunded: the reservation it came with is done with.
    if held then unreserve(KEYS[7], KEYS[8], KEYS[9], held) end
    redis.call('HSET', KEYS[5], 'refused', me)
    local id = consume()
    return {'spend_cap_refund', 0, 0, 0, 0, fmt(spent), v[3], id}
  end
end
charge()
if v[5] then
  redis.call('HDEL', KEYS[5], 'spend_held')
else
  if held then
    redis.call('HSET', KEYS[5], 'reservation', held, 'reserved_until', redis.call('ZSCORE', KEYS[7], held))
    unreserve(KEYS[7], KEYS[8], KEYS[9], held)
  end
  redis.call('INCRBY', KEYS[6], ARGV[10])
  redis.call('EXPIRE', KEYS[6], 172800)
end
local id = consume()
return {'admitted', d[2], d[3], d[4], 0, v[3], v[4] or '', id}
`;

/**
 * Gives a proof back. KEYS: 1 the verification record, 2 the buyer's spend counter, 3 4 5 the buyer's reservations
 * (by expiry, by prefix, total), 6… "used" keys of proof ids the caller knows. ARGV: 1 gateway request id, 2 price,
 * 3 mode, 4 "used" key prefix. Every proof id of the payment (the given ones and those in the verification record)
 * still held by this request is released — never one another request holds. When anything was released:
 *   give     nothing was charged: the price comes off the spend counter, and the reservation the payment took over
 *            at admission is put back while its payment request lives (the retry finds its room again)
 *   hold     a settlement is pending: the spend stays counted and is marked on the record for the retry
 * Idempotent: a second run finds nothing held and changes nothing. Returns the number of ids released.
 */
export const RELEASE = `${NOW}${RESERVATIONS}
local held = {}
for i = 6, #KEYS do held[#held + 1] = KEYS[i] end
local payment = redis.call('HGET', KEYS[1], 'payment')
if payment then
  for _, id in ipairs(cjson.decode(payment).proof_ids or {}) do held[#held + 1] = ARGV[4] .. id end
end
local released = 0
for _, key in ipairs(held) do
  if redis.call('GET', key) == ARGV[1] then released = released + redis.call('DEL', key) end
end
if released > 0 then
  local recorded = redis.call('EXISTS', KEYS[1]) == 1
  if recorded and redis.call('HGET', KEYS[1], 'refused') == ARGV[1] then
    -- Refused past the cap (spend_cap_refund) by this request: nothing was counted and its reservation is done with,
    -- so nothing comes off the spend and nothing is put back.
    redis.call('HDEL', KEYS[1], 'refused')
  elseif ARGV[3] == 'hold' then
    if recorded then redis.call('HSET', KEYS[1], 'spend_held', '1') end
  else
    if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('DECRBY', KEYS[2], ARGV[2]) end
    local r = redis.call('HMGET', KEYS[1], 'reservation', 'reserved_until')
    if r[1] then
      redis.call('HDEL', KEYS[1], 'reservation', 'reserved_until')
      if tonumber(r[2]) > now then reserve(KEYS[3], KEYS[4], KEYS[5], r[1], tonumber(r[2])) end
    end
  end
end
return released
`;

/**
 * Gives a refunded call's spend back (its seller failed after the money moved: the money is due back, so it does not
 * count against the cap). KEYS: 1 the verification record, 2 the buyer's spend counter, 3 the "used" key of the
 * presented proof id. ARGV: 1 gateway request id, 2 price. Only for the request that consumed the proof, and once (the
 * record remembers it: `spend_returned`); with no record (lost with Redis) nothing changes — the spend stays counted,
 * which can refuse the buyer early, never let it spend past the cap. Returns 1 when the spend was given back.
 */
export const RETURN_SPEND = `
if redis.call('GET', KEYS[3]) ~= ARGV[1] or redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HSETNX', KEYS[1], 'spend_returned', ARGV[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('DECRBY', KEYS[2], ARGV[2]) end
return 1
`;

/**
 * The Redis epoch (DESIGN §2 durability rule), bound to the server's run id. KEYS: epoch, epoch run id. ARGV: a new
 * random epoch. A Redis with no epoch (never used, or back empty), or one whose run id changed since the epoch was set
 * (restarted from its AOF or a snapshot, or a replica promoted: it may have lost its last writes), gets the new epoch
 * — so every such Redis is restored, not only an empty one. The run id is read here, in the same step. Returns the
 * epoch in force.
 */
export const EPOCH = `
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
local epoch = redis.call('GET', KEYS[1])
if not epoch or redis.call('GET', KEYS[2]) ~= run then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('SET', KEYS[2], run)
  return ARGV[1]
end
return epoch
`;

/** Ends a lock only if it is still the holder's. KEYS: the lock. ARGV: what the holder set. */
export const UNLOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/** Marks an epoch restored, only if Redis still has that epoch. KEYS: epoch, epoch restored. ARGV: the epoch. */
export const MARK_RESTORED = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
return 1
`;

/**
 * The event outbox's write (usage-events): many stream entries in one call. KEYS: the events stream. ARGV: for each
 * entry its field count, then its fields. Returns each entry's id in order, or '' for one Redis refused (out of
 * memory, say): as a pipeline of XADDs would, each entry is appended or refused on its own.
 */
export const APPEND_EVENTS = `
local ids = {}
local i = 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local id = redis.pcall('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + n))
  if type(id) == 'string' then ids[#ids + 1] = id else ids[#ids + 1] = '' end
  i = i + n + 1
end
return ids
`;
