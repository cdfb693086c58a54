import { randomBytes } from 'node:crypto';
import type { RedisKeys } from '@crochet/protocol';
import type { Redis } from 'ioredis';
import {
  ADMIT_FREE,
  ADMIT_PAID,
  ADMIT_UNPAID,
  EPOCH,
  MARK_RESTORED,
  RELEASE,
  RETURN_SPEND,
  UNLOCK,
} from './scripts.js';

/**
 * Admission (DESIGN §2 hot-path rule): the per-key and per-listing rate limits, proof consumption and the spend cap,
 * checked in the same Redis round trip that records the request's start. The scripts are in `scripts.ts`; these are
 * their typed calls. When Redis cannot be reached, `LocalAdmission` applies the same limits per process (an explicit,
 * documented fallback for free listings only; the caller decides when to use it).
 */

/** Who is calling what, and under which limits. */
export interface AdmissionRequest {
  keyId: string;
  listingId: string;
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

/** What the scripts appended to the events stream: its entry id, '' when nothing. */
export interface Appended {
  streamId: string;
}

export interface UnpaidAdmissionRequest extends AdmissionRequest {
  buyerId: string;
  /** The UTC day (`currentUtcDay`) whose spend counts against the cap. */
  day: string;
  spendCapAtomic: string | null;
  priceAtomic: string;
}

/** A 402's request: under a cap, its price is reserved for the payment request it issues until that expires. */
export interface PaymentRequiredRequest extends UnpaidAdmissionRequest {
  paymentRequestId: string;
  /** How long the reservation holds (ms): the payment request's lifetime and the time to present a last-moment payment. */
  reserveMs: number;
}

export type UnpaidAdmission = (
  | ({ outcome: 'payment_required' } & Admission)
  | ({ outcome: 'spend_cap'; spentAtomic: string; reservedAtomic: string } & Admission)
  | ({ outcome: 'rate_limited' } & Admission)
) &
  Appended;

export interface PaidAdmissionRequest extends UnpaidAdmissionRequest {
  gatewayRequestId: string;
  /** The epoch this proxy adopted (restored state); a Redis on another epoch refuses. */
  epoch: string;
  /** The id the proof is presented under (its verification record and first "used" key). */
  proofId: string;
  /** The payment's money has already moved (direct transfer, Relay): past the cap it is recorded for refund. */
  alreadySettled: boolean;
  /** Unix ms by Redis's clock after which the script does nothing. */
  deadlineMs: number;
  /** A verification made just now, recorded by the script before it decides (one round trip, not two). */
  verified?: { payment: string; settlement: string; ttlSeconds: number };
}

export type PaidAdmission =
  | ({ outcome: 'admitted'; payment: string; settlement: string } & Admission & Appended)
  | ({ outcome: 'rate_limited' } & Admission)
  | { outcome: 'spend_cap'; spentAtomic: string }
  | ({ outcome: 'spend_cap_refund'; spentAtomic: string; payment: string } & Appended)
  | { outcome: 'used'; gatewayRequestId: string }
  | { outcome: 'unverified' | 'mismatch' | 'late' | 'epoch' };

export interface ReleaseRequest {
  gatewayRequestId: string;
  /** Proof ids to release besides those the verification record lists. */
  proofIds: readonly string[];
  /** The presented proof id (its verification record). */
  proofId: string;
  buyerId: string;
  day: string;
  priceAtomic: string;
  mode: 'give' | 'hold';
}

/** The gateway's Redis scripts, defined once on a connection (EVALSHA with a transparent EVAL fallback). */
export interface GatewayScripts {
  admitFree(request: AdmissionRequest): Promise<Admission & Appended>;
  admitUnpaid(request: PaymentRequiredRequest): Promise<UnpaidAdmission>;
  admitPaid(request: PaidAdmissionRequest): Promise<PaidAdmission>;
  /** Gives a proof back (RELEASE in scripts.ts); idempotent. Returns how many proof ids were released. */
  release(request: ReleaseRequest): Promise<number>;
  /** Gives a refunded call's spend back (RETURN_SPEND in scripts.ts); idempotent. True when it was given back. */
  returnSpend(request: Omit<ReleaseRequest, 'proofIds' | 'mode'>): Promise<boolean>;
  /** Marks a proof id (an x402 settlement's transaction) used by a gateway request, unless it is already. */
  consume(proofId: string, gatewayRequestId: string): Promise<void>;
}

type Reply = (string | number)[];
type Command = (...args: (string | number)[]) => Promise<Reply>;

const admission = (reply: Reply, allowed: boolean): Admission => ({
  allowed,
  limit: Number(reply[1]),
  remaining: Number(reply[2]),
  resetMs: Number(reply[3]),
  retryAfterMs: Number(reply[4]),
});

export const createGatewayScripts = (redis: Redis, keys: RedisKeys): GatewayScripts => {
  const define = (name: string, lua: string): Command => {
    redis.defineCommand(name, { lua });
    return (redis as unknown as Record<string, Command>)[name]!.bind(redis);
  };
  const free = define('crochetAdmitFree', ADMIT_FREE);
  const unpaid = define('crochetAdmitUnpaid', ADMIT_UNPAID);
  const paid = define('crochetAdmitPaid', ADMIT_PAID);
  const release = define('crochetRelease', RELEASE);
  const returnSpend = define('crochetReturnSpend', RETURN_SPEND);
  const reservations = (agentId: string) => [
    keys.reservations(agentId),
    keys.reservationsByPrefix(agentId),
    keys.reservationsTotal(agentId),
  ];
  const usedPrefix = keys.paymentUsed('');
  return {
    admitFree: async (r) => {
      const reply = await free(
        3,
        keys.rateKey(r.keyId),
        keys.rateListing(r.listingId),
        keys.events,
        r.keyLimitPerMinute,
        r.listingLimitPerMinute,
        r.startEvent,
      );
      // Object.assign, not `{ ...admission(), streamId }` (V8's slow path for a leading spread: see admit.ts).
      return Object.assign(admission(reply, reply[0] === 1), { streamId: String(reply[5]) });
    },
    admitUnpaid: async (r) => {
      const reply = await unpaid(
        7,
        keys.rateKey(r.keyId),
        keys.rateListing(r.listingId),
        keys.events,
        keys.spend(r.buyerId, r.day),
        ...reservations(r.buyerId),
        r.keyLimitPerMinute,
        r.listingLimitPerMinute,
        r.startEvent,
        r.spendCapAtomic ?? '',
        r.priceAtomic,
        `${r.listingId}|${r.paymentRequestId}|${r.priceAtomic}`,
        Math.ceil(r.reserveMs),
      );
      const outcome = String(reply[0]);
      const streamId = String(reply[6]);
      if (outcome === 'rate_limited') return { outcome, ...admission(reply, false), streamId };
      if (outcome === 'spend_cap') {
        const spent = { spentAtomic: String(reply[5]), reservedAtomic: String(reply[7]) };
        return { outcome, ...admission(reply, true), ...spent, streamId };
      }
      return { outcome: 'payment_required', ...admission(reply, true), streamId };
    },
    admitPaid: async (r) => {
      const reply = await paid(
        10,
        keys.epoch,
        keys.rateKey(r.keyId),
        keys.rateListing(r.listingId),
        keys.events,
        keys.paymentVerified(r.proofId),
        keys.spend(r.buyerId, r.day),
        ...reservations(r.buyerId),
        keys.paymentUsed(r.proofId),
        r.epoch,
        r.keyLimitPerMinute,
        r.listingLimitPerMinute,
        r.startEvent,
        r.gatewayRequestId,
        r.listingId,
        r.buyerId,
        usedPrefix,
        r.spendCapAtomic ?? '',
        r.priceAtomic,
        r.alreadySettled ? '1' : '0',
        Math.ceil(r.deadlineMs),
        r.verified?.payment ?? '',
        r.verified?.settlement ?? '',
        r.verified?.ttlSeconds ?? 0,
      );
      const [outcome, , , , , detail, extra, streamId] = reply.map(String) as string[];
      switch (outcome) {
        case 'admitted':
          return {
            outcome,
            ...admission(reply, true),
            payment: detail!,
            settlement: extra!,
            streamId: streamId!,
          };
        case 'rate_limited':
          return { outcome, ...admission(reply, false) };
        case 'spend_cap':
          return { outcome, spentAtomic: detail! };
        case 'spend_cap_refund':
          return { outcome, spentAtomic: detail!, payment: extra!, streamId: streamId! };
        case 'used':
          return { outcome, gatewayRequestId: detail! };
        case 'mismatch':
        case 'late':
        case 'epoch':
          return { outcome };
        default:
          return { outcome: 'unverified' };
      }
    },
    release: async (r) => {
      const used = r.proofIds.map((id) => keys.paymentUsed(id));
      const reply = (await release(
        5 + used.length,
        keys.paymentVerified(r.proofId),
        keys.spend(r.buyerId, r.day),
        ...reservations(r.buyerId),
        ...used,
        r.gatewayRequestId,
        r.priceAtomic,
        r.mode,
        usedPrefix,
      )) as unknown as number;
      return Number(reply);
    },
    returnSpend: async (r) => {
      const reply = await returnSpend(
        3,
        keys.paymentVerified(r.proofId),
        keys.spend(r.buyerId, r.day),
        keys.paymentUsed(r.proofId),
        r.gatewayRequestId,
        r.priceAtomic,
      );
      return Number(reply) === 1;
    },
    consume: async (proofId, gatewayRequestId) => {
      await redis.set(keys.paymentUsed(proofId), gatewayRequestId, 'NX');
    },
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
    const keyState = `k:${request.keyId}`;
    const listingState = `l:${request.listingId}`;
    const k = this.#check(keyState, request.keyLimitPerMinute, now);
    const l = this.#check(listingState, request.listingLimitPerMinute, now);
    if (!k.ok || !l.ok) {
      const retry = Math.ceil(Math.max(k.retry, l.retry));
      const limit = k.ok ? request.listingLimitPerMinute : request.keyLimitPerMinute;
      return { allowed: false, limit, remaining: 0, resetMs: retry, retryAfterMs: retry };
    }
    this.#tat.set(keyState, k.next);
    this.#tat.set(listingState, l.next);
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

/**
 * The epoch in force on this Redis (EPOCH in scripts.ts): read, or set anew when the Redis has none or was restarted
 * since (its run id changed). Whoever looks first names it; both planes call this.
 */
export const currentEpoch = async (redis: Redis, keys: RedisKeys): Promise<string> => {
  const proposed = randomBytes(12).toString('base64url');
  return String(await redis.eval(EPOCH, 2, keys.epoch, keys.epochRunId, proposed));
};

/** Ends a lock only if it still holds `value` (UNLOCK in scripts.ts): a lock that expired and was taken stays. */
export const unlock = async (redis: Redis, key: string, value: string): Promise<boolean> =>
  (await redis.eval(UNLOCK, 1, key, value)) === 1;

/** Marks the epoch restored (the control plane, once it has restored it); false if Redis moved on meanwhile. */
export const markEpochRestored = async (redis: Redis, keys: RedisKeys, epoch: string): Promise<boolean> =>
  (await redis.eval(MARK_RESTORED, 2, keys.epoch, keys.epochRestored, epoch)) === 1;
