import type { ErrorCode } from '@crochet/protocol';
import type { Proof } from '../proof.js';
import type { PaymentRequestRecord } from '../requirements.js';

/**
 * Every payment rail has the same contract, whatever the chain (x402's scheme-by-network shape): `verify` checks a
 * proof against what this call costs and answers a verdict as a value; `settle` (where the rail has a step after
 * verification, as x402 does) moves the funds. Only infrastructure failures and bugs throw.
 */
export interface PaymentCall {
  listingId: string;
  buyerId: string;
  /** Verified EVM wallets of the buyer (lowercase): a direct EVM transfer must come from one of them. */
  buyerEvmWallets: readonly string[];
  priceAtomic: bigint;
  /** Reads a payment request the gateway issued (Solana memos name one). */
  paymentRequest: (id: string) => Promise<PaymentRequestRecord | null>;
}

/** A payment that verified: what it proves and which proof ids it consumes (all of them, atomically). */
export interface VerifiedPayment {
  rail: 'solana-transfer' | 'evm-transfer' | 'relay' | 'x402-exact';
  network: string;
  payer: string;
  amountAtomic: string;
  asset: string;
  /** On-chain transaction that moved the funds, once known. */
  tx: string | null;
  /** Every id this payment consumes: e.g. a Relay request id and its fill transaction. */
  proofIds: string[];
  /** The payment request the payment names (a Solana transfer's memo): its reservation under a cap becomes spend. */
  paymentRequestId?: string;
  /** When the money moved on chain (unix ms), where the rail knows: a proof older than the acceptance window is refused. */
  paidAtMs?: number;
  /** For rails that settle after verifying (x402): the payload to settle, kept with the verification. */
  settlement?: unknown;
}

export type Verdict =
  | { ok: true; payment: VerifiedPayment }
  | { ok: false; code: ErrorCode; message?: string }
  | { ok: 'pending'; code: 'PAYMENT_PENDING' | 'PAYMENT_UNCONFIRMED'; message?: string; retryAfterSeconds: number };

export interface SettleResult {
  ok: boolean;
  /** The settling transaction (x402: the transferWithAuthorization / the Solana transfer). */
  tx: string | null;
  pending?: boolean;
  /** Nothing was broadcast because the chain (or the settler) did not answer: the same payment can be retried. */
  unavailable?: VerifierUnavailableError;
  message?: string;
}

export interface PaymentRail {
  readonly name: VerifiedPayment['rail'];
  /** True when this rail reads this proof. */
  accepts(proof: Proof): boolean;
  verify(proof: Proof, call: PaymentCall): Promise<Verdict>;
  settle?(payment: VerifiedPayment): Promise<SettleResult>;
}

/**
 * The service a rail checks payments with — a chain's RPC, Relay's API — failed, did not answer in time, or answered
 * something the rail cannot use. The payment may well be fine: the buyer gets 503 `PAYMENT_VERIFIER_UNAVAILABLE`
 * naming the rail and the verifier, with Retry-After, and retries with the same proof. Never `STATE_UNAVAILABLE`
 * (that is our own stores), never a refusal.
 *
 * `verifier` and `reason` are shown to the buyer: they name the service and what went wrong in words of our own,
 * never an upstream's message or URL (RPC URLs carry provider keys). The original error stays in `cause`, for logs.
 */
export class VerifierUnavailableError extends Error {
  override name = 'VerifierUnavailableError';
  /** How long the buyer should wait before retrying. */
  readonly retryAfterSeconds: number;
  constructor(
    /** e.g. `Relay API`, `Solana RPC`, `EVM RPC`. */
    readonly verifier: string,
    /** e.g. `did not answer within 5000 ms`, `answered HTTP 502`. */
    readonly reason: string,
    options: { cause?: unknown; retryAfterSeconds?: number } = {},
  ) {
    super(`${verifier} ${reason}`, options.cause === undefined ? {} : { cause: options.cause });
    this.retryAfterSeconds = options.retryAfterSeconds ?? 2;
  }
}

/** A name for an error that is safe to show (a class name such as `HttpRequestError`, never its message). */
export const errorKind = (error: unknown): string =>
  error instanceof Error && /^[A-Za-z][A-Za-z0-9_]{0,60}$/.test(error.name) ? error.name : 'an error';

/** Asks a rail's verifier (e.g. `EVM RPC (eip155:8453)`); whatever goes wrong is the verifier's failure. */
export const askVerifier = async <T>(verifier: string, call: () => Promise<T>): Promise<T> => {
  try {
    return await call();
  } catch (error) {
    if (error instanceof VerifierUnavailableError) throw error;
    throw new VerifierUnavailableError(verifier, `failed (${errorKind(error)})`, { cause: error });
  }
};

export const pending = (
  code: 'PAYMENT_PENDING' | 'PAYMENT_UNCONFIRMED',
  message?: string,
  retryAfterSeconds = 2,
): Verdict => ({ ok: 'pending', code, retryAfterSeconds, ...(message ? { message } : {}) });

export const refuse = (code: ErrorCode, message?: string): Verdict => ({
  ok: false,
  code,
  ...(message ? { message } : {}),
});
