import {
  type Admission,
  buildAccepts,
  buildPaymentBody,
  buildPaymentRequired,
  type PaidAdmission,
  type PaidAdmissionRequest,
  type PaymentCall,
  type PaymentRail,
  type PaymentRequestRecord,
  type PaymentsConfig,
  parseProof,
  proofKeyId,
  rateLimitHeaders,
  txProofId,
  type VerifiedPayment,
} from '@crochet/plugins';
import { ApiError, fromAtomic, newId, type PaymentRecord, type RedisKeys } from '@crochet/protocol';
import { encodePaymentRequiredHeader } from '@x402/core/http';
import type { Redis } from 'ioredis';
import type { GatewayListing } from './config-store.js';
import type { ProxyMetrics, VerificationOutcome } from './metrics.js';

/**
 * The payment step of the gateway (DESIGN §3.4) for `per_call` listings, as one function the pipeline calls:
 * no proof → 402 with the payment requirements; a proof → admitted (limits, exactly-once consumption and the start
 * record in one Redis script), or a precise denial. A proof this gateway has not verified yet is verified on its
 * rail once, remembered in Redis, and admitted; a verification that is not final answers PAYMENT_PENDING.
 */
export interface PaymentDeps {
  config: PaymentsConfig;
  rails: PaymentRail[];
  redis: Redis;
  keys: RedisKeys;
  paidAdmit: (request: PaidAdmissionRequest) => Promise<PaidAdmission>;
  solanaFeePayer: string | undefined;
  publicBaseUrl: string;
  /** Verification counts and latency by rail and outcome. */
  metrics?: ProxyMetrics;
}

export type PaymentDecision =
  | { ok: true; admission: Admission; payment: VerifiedPayment; rail: PaymentRail; verifiedKey: string }
  /** `refund`: the call was refused after its payment was consumed (money already moved): record it for refund. */
  | { ok: false; error: ApiError; refund?: { payment: VerifiedPayment; rail: PaymentRail } };

/** Verified-but-unconsumed proofs are remembered this long (a retry after a timeout does not hit the chain again). */
const VERIFIED_TTL_SECONDS = 24 * 3600;

const usedKey = (keys: RedisKeys, proofId: string) => keys.paymentUsed(proofId);
const verifiedKey = (keys: RedisKeys, proofId: string) => keys.paymentVerified(proofId);
const requestKey = (keys: RedisKeys, id: string) => keys.paymentRequest(id);

const toRecord = (p: VerifiedPayment): PaymentRecord => ({
  rail: p.rail,
  network: p.network,
  payer: p.payer,
  amount_atomic: p.amountAtomic,
  asset: p.asset,
  tx: p.tx,
  proof_ids: p.proofIds,
});

export const payForCall = async (
  deps: PaymentDeps,
  call: {
    listing: GatewayListing;
    buyerId: string;
    buyerEvmWallets: readonly string[];
    headers: Record<string, string | string[] | undefined>;
    gatewayRequestId: string;
    admission: Omit<PaidAdmissionRequest, 'verifiedKey' | 'usedKeys' | 'usedKeyPrefix' | 'alreadySettled'>;
  },
): Promise<PaymentDecision> => {
  const { config, keys, redis } = deps;
  const parsed = parseProof(call.headers);
  if (!parsed.ok) return { ok: false, error: new ApiError('PAYMENT_INVALID', { message: parsed.message }) };

  // --- no proof: 402 with what to pay --------------------------------------------------------------------------
  if (!parsed.proof) {
    const id = newId('payment');
    const expiresAtMs = Date.now() + config.requestTtlSeconds * 1000;
    const record: PaymentRequestRecord = {
      id,
      listing_id: call.listing.id,
      buyer_id: call.buyerId,
      amount_atomic: call.listing.priceAtomic.toString(),
      currency: call.listing.currency,
      expires_at: expiresAtMs,
    };
    // An agent at its operator's cap is told so before it pays, not after (one read, only for a capped agent). The
    // request is kept past its expiry: a transfer made in time and presented late must still find what it paid for.
    const cap = call.admission.spendCapAtomic;
    if (cap !== null) {
      const spent = (await redis.get(call.admission.spendKey)) ?? '0';
      if (BigInt(spent) + call.listing.priceAtomic > BigInt(cap)) {
        return { ok: false, error: spendCapExceeded(cap, spent, call.listing.priceAtomic) };
      }
    }
    await redis.set(requestKey(keys, id), JSON.stringify(record), 'EX', config.requestTtlSeconds + 24 * 3600);
    const input = {
      paymentRequestId: id,
      listingId: call.listing.id,
      priceAtomic: call.listing.priceAtomic,
      currency: 'USDC' as const,
      resourceUrl: `${deps.publicBaseUrl}/api/v1/gateway/${call.listing.id}`,
      expiresAtMs,
      solanaFeePayer: deps.solanaFeePayer,
    };
    const accepts = buildAccepts(config, input);
    const message = 'This listing is paid per call; the call was not paid.';
    return {
      ok: false,
      error: new ApiError('PAYMENT_REQUIRED', {
        message,
        headers: {
          'payment-required': encodePaymentRequiredHeader(buildPaymentRequired(accepts, input, message) as never),
        },
        details: { payment: buildPaymentBody(config, accepts, input) },
      }),
    };
  }

  // --- a proof: which rail, which id ---------------------------------------------------------------------------
  const proof = parsed.proof;
  const rail = deps.rails.find((r) => r.accepts(proof));
  if (!rail) return { ok: false, error: new ApiError('PAYMENT_NETWORK_UNSUPPORTED') };
  const primaryId = proofKeyId(proof);
  if (!primaryId) return { ok: false, error: new ApiError('PAYMENT_INVALID') };

  // The presented proof is checked first; once verified, the script consumes every id of the payment with it.
  const admit = () =>
    deps.paidAdmit({
      ...call.admission,
      verifiedKey: verifiedKey(keys, primaryId),
      usedKeys: [usedKey(keys, primaryId)],
      usedKeyPrefix: usedKey(keys, ''),
      alreadySettled: rail.settle === undefined,
    });

  let outcome = await admit();
  if (outcome.outcome === 'unverified') {
    const paymentCall: PaymentCall = {
      listingId: call.listing.id,
      buyerId: call.buyerId,
      buyerEvmWallets: call.buyerEvmWallets,
      priceAtomic: call.listing.priceAtomic,
      paymentRequest: async (id) => {
        const json = await redis.get(requestKey(keys, id));
        return json ? (JSON.parse(json) as PaymentRequestRecord) : null;
      },
    };
    const verifyStart = performance.now();
    let verified: VerificationOutcome = 'error';
    const verdict = await withDeadline(rail.verify(proof, paymentCall), config.verifyTimeoutMs)
      .then((v) => {
        verified = v === 'timeout' ? 'timeout' : v.ok === 'pending' ? 'pending' : v.ok ? 'verified' : 'rejected';
        return v;
      })
      .finally(() => {
        const labels = { rail: rail.name, outcome: verified };
        deps.metrics?.verifications.inc(labels);
        deps.metrics?.verificationDuration.observe(labels, (performance.now() - verifyStart) / 1000);
      });
    if (verdict === 'timeout' || verdict.ok === 'pending') {
      const retry = verdict === 'timeout' ? 2 : verdict.retryAfterSeconds;
      const code = verdict === 'timeout' ? 'PAYMENT_PENDING' : verdict.code;
      return {
        ok: false,
        error: new ApiError(code, {
          ...(verdict !== 'timeout' && verdict.message ? { message: verdict.message } : {}),
          headers: { 'retry-after': String(retry) },
        }),
      };
    }
    if (verdict.ok === false) {
      return { ok: false, error: new ApiError(verdict.code, verdict.message ? { message: verdict.message } : {}) };
    }
    await redis
      .multi()
      .hset(verifiedKey(keys, primaryId), {
        listing: call.listing.id,
        buyer: call.buyerId,
        payment: JSON.stringify(toRecord(verdict.payment)),
        settlement: verdict.payment.settlement === undefined ? '' : JSON.stringify(verdict.payment.settlement),
      })
      .expire(verifiedKey(keys, primaryId), VERIFIED_TTL_SECONDS)
      .exec();
    outcome = await admit();
    if (outcome.outcome === 'admitted') {
      return {
        ok: true,
        admission: outcome,
        payment: verdict.payment,
        rail,
        verifiedKey: verifiedKey(keys, primaryId),
      };
    }
  }

  switch (outcome.outcome) {
    case 'admitted':
      return {
        ok: true,
        admission: outcome,
        payment: fromRecord(outcome.payment, outcome.settlement),
        rail,
        verifiedKey: verifiedKey(keys, primaryId),
      };
    case 'spend_cap_refund': {
      const cap = call.admission.spendCapAtomic ?? '0';
      const error = spendCapExceeded(cap, outcome.spentAtomic, call.listing.priceAtomic, {
        refunded: call.gatewayRequestId,
      });
      return { ok: false, error, refund: { payment: fromRecord(outcome.payment, ''), rail } };
    }
    case 'used':
      return {
        ok: false,
        error: new ApiError('PAYMENT_ALREADY_USED', {
          message: `This payment proof already paid for gateway request ${outcome.gatewayRequestId}.`,
          details: { gateway_request_id: outcome.gatewayRequestId },
        }),
      };
    case 'spend_cap':
      return {
        ok: false,
        error: spendCapExceeded(call.admission.spendCapAtomic ?? '0', outcome.spentAtomic, call.listing.priceAtomic),
      };
    case 'mismatch':
      return {
        ok: false,
        error: new ApiError('PAYMENT_ALREADY_USED', {
          message: 'This payment proof is bound to another listing or agent.',
        }),
      };
    case 'rate_limited':
      // As on free listings (DESIGN §3.3): Retry-After and RateLimit-*. The proof stays verified and unconsumed.
      return {
        ok: false,
        error: new ApiError('RATE_LIMITED', {
          message: `Rate limit of ${outcome.limit} calls per minute reached; the payment was not used.`,
          headers: rateLimitHeaders(outcome),
        }),
      };
    default:
      return { ok: false, error: new ApiError('PAYMENT_PENDING', { headers: { 'retry-after': '1' } }) };
  }
};

const fromRecord = (json: string, settlement: string): VerifiedPayment => {
  const record = JSON.parse(json) as PaymentRecord;
  return {
    rail: record.rail,
    network: record.network,
    payer: record.payer,
    amountAtomic: record.amount_atomic,
    asset: record.asset,
    tx: record.tx,
    proofIds: record.proof_ids,
    ...(settlement ? { settlement: JSON.parse(settlement) as unknown } : {}),
  };
};

/**
 * Past the cap. A payment that settles later (x402) was not settled and stays valid for this listing; a transfer that
 * already moved money (`refunded`: the gateway request it was recorded under) is booked and reversed in the ledger.
 */
const spendCapExceeded = (
  capAtomic: string,
  spentAtomic: string,
  priceAtomic: bigint,
  moved: { refunded: string } | null = null,
) =>
  new ApiError('SPEND_CAP_EXCEEDED', {
    message:
      `This call (${fromAtomic(priceAtomic, 'USDC')} USDC) would take the agent past its daily spend cap of ` +
      `${fromAtomic(BigInt(capAtomic), 'USDC')} USDC (spent today: ${fromAtomic(BigInt(spentAtomic), 'USDC')} USDC). ` +
      (moved
        ? `The transfer already made for it is recorded under gateway request ${moved.refunded} and is due back to ` +
          'the agent (refund_due in the history and the ledger).'
        : 'A payment authorised for it was not settled: no USDC moved, and it stays usable until it expires.'),
    details: {
      daily_spend_cap: fromAtomic(BigInt(capAtomic), 'USDC'),
      spent_today: fromAtomic(BigInt(spentAtomic), 'USDC'),
      ...(moved ? { refund_gateway_request_id: moved.refunded } : {}),
    },
  });

// KEYS: the "used" keys of the payment's proof ids, the buyer's spend counter, the payment's verified record.
// ARGV: gateway request id, amount, 'give' | 'hold'. Only keys still held by this request are released (never a proof
// another request holds). When anything was released, the spend is given back once ('give': nothing was charged), or
// kept and marked on the verified record ('hold': a settlement is pending — its retry is neither capped nor counted
// again).
const RELEASE_LUA = `
local n = #KEYS - 2
local released = 0
for i = 1, n do
  if redis.call('GET', KEYS[i]) == ARGV[1] then released = released + redis.call('DEL', KEYS[i]) end
end
if released > 0 then
  if ARGV[3] == 'hold' then
    if redis.call('EXISTS', KEYS[n + 2]) == 1 then redis.call('HSET', KEYS[n + 2], 'spend_held', '1') end
  elseif redis.call('EXISTS', KEYS[n + 1]) == 1 then
    redis.call('DECRBY', KEYS[n + 1], ARGV[2])
  end
end
return released
`;

/**
 * Gives the proof back: when settlement failed or, after_response, the seller failed (nothing was charged: the
 * call's price comes off the buyer's spend counter), or when settlement is pending (`hold`: the spend stays counted
 * for the retry that will wait for the same transaction).
 */
export const releaseProof = async (
  deps: Pick<PaymentDeps, 'redis' | 'keys'>,
  payment: VerifiedPayment,
  gatewayRequestId: string,
  spend: SpendHold,
  mode: 'give' | 'hold' = 'give',
) => {
  const keys = payment.proofIds.map((id) => usedKey(deps.keys, id));
  await deps.redis.eval(
    RELEASE_LUA,
    keys.length + 2,
    ...keys,
    spend.key,
    spend.verifiedKey,
    gatewayRequestId,
    spend.amountAtomic,
    mode,
  );
};

/** What a paid call added to its buyer's spend counter, and the verified record of the payment it used. */
export interface SpendHold {
  key: string;
  amountAtomic: string;
  verifiedKey: string;
}

/**
 * Marks the transaction that settled an x402 payment as used by the request it paid: the same transaction presented
 * afterwards as `X-Crochet-Payment-Tx` (its sender is the buyer, on Solana its memo is the buyer's payment request)
 * would otherwise pay for a second call.
 */
export const consumeSettlementTx = async (
  deps: Pick<PaymentDeps, 'redis' | 'keys'>,
  payment: VerifiedPayment,
  tx: string | null,
  gatewayRequestId: string,
) => {
  if (!tx) return;
  await deps.redis.set(usedKey(deps.keys, txProofId(payment.network, tx)), gatewayRequestId, 'NX');
};

const withDeadline = <T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve('timeout'), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
