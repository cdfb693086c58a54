import type { ErrorCode } from './errors.js';

/**
 * The gateway request lifecycle (DESIGN §2 lifecycle rule, §3.5), as data both planes share: the states a gateway
 * request is recorded in, how each way a call can end maps to exactly one final state, and what each final state
 * means for the money of a paid call. The proxy's finalizer (proxy/src/steps/finalize.ts) is the only place that
 * applies it; the control plane records what it says.
 *
 *   admitted ─▶ forwarded ─┬─▶ completed        the seller answered (its body streamed to the end)
 *                          ├─▶ upstream_error   the seller failed: unreachable, timed out, or broke off its answer
 *                          └─▶ client_aborted   the buyer went away before the answer was out
 *   admitted ─▶ refused                         stopped before forwarding (a limit, a bad body, a store outage…)
 *   admitted ─▶ payment_required                answered 402 with payment requirements
 *   admitted ─▶ payment_pending                 answered 402 PAYMENT_PENDING: the payment carries over to the retry
 *
 * A call refused before it was admitted (unknown listing, bad key…) is never recorded. `payment_required` and
 * `payment_pending` end the request they answer: the buyer's paid retry is a new gateway request (DESIGN §3.5 lists
 * them as transient because the buyer's flow goes on — in that next request).
 */

/** Every state a recorded gateway request can be in. */
export const GATEWAY_STATES = [
  'forwarded',
  'payment_required',
  'payment_pending',
  'completed',
  'upstream_error',
  'client_aborted',
  'refused',
] as const;

export type GatewayState = (typeof GATEWAY_STATES)[number];

/** The one transient state: admitted, not answered yet. Its bound is the listing's timeout plus the stream's end. */
export const TRANSIENT_STATES: readonly GatewayState[] = ['forwarded'];

/** True when nothing more happens to a request in this state. */
export const isFinalState = (state: GatewayState): boolean => state !== 'forwarded';

/** How a call ended, as the pipeline saw it. */
export type GatewayExit =
  /** Answered with a registry error before anything was forwarded (includes 402s). */
  | { kind: 'refused'; code: ErrorCode }
  /** The seller's answer streamed to its end. */
  | { kind: 'answered' }
  /** The seller could not be reached, timed out before its headers, or was refused by the SSRF guard. */
  | { kind: 'seller_failed'; code: ErrorCode }
  /** The seller's answer broke off after its headers were passed on. */
  | { kind: 'stream_aborted' }
  /** The buyer's connection closed before the answer was out. */
  | { kind: 'client_gone' };

/** Refusals that tell the buyer to retry with the same proof: the payment carries over to that retry. */
const PENDING_CODES: ReadonlySet<ErrorCode> = new Set([
  'PAYMENT_PENDING',
  'PAYMENT_UNCONFIRMED',
  'PAYMENT_VERIFIER_UNAVAILABLE',
]);

/** The one final state of each exit. */
export const finalState = (exit: GatewayExit): GatewayState => {
  switch (exit.kind) {
    case 'refused':
      if (exit.code === 'PAYMENT_REQUIRED') return 'payment_required';
      if (PENDING_CODES.has(exit.code)) return 'payment_pending';
      return 'refused';
    case 'answered':
      return 'completed';
    case 'seller_failed':
    case 'stream_aborted':
      return 'upstream_error';
    case 'client_gone':
      return 'client_aborted';
  }
};

/**
 * What becomes of a paid call's payment at its exit (DESIGN §3.5 money outcomes):
 * - `book`: the money moved and the seller served: booked as it is.
 * - `settle`: the seller served and the payment settles only now (`after_response`): settle, then book.
 * - `release`: nothing was charged, or the proof can simply pay again (a direct transfer or Relay payment whose call
 *   never reached the seller): the proof is given back, nothing is booked.
 * - `refund`: money moved for a call the seller did not serve: booked and reversed (`refund_due`).
 */
export type PaymentAction = 'book' | 'settle' | 'release' | 'refund';

export interface PaymentExit {
  /** Did the request reach the seller (forwarded)? */
  forwarded: boolean;
  /** The seller's status when its answer headers arrived; null when it never answered. */
  sellerStatus: number | null;
  /** Did the seller's answer stream to its end (or, when the buyer left, was it under way)? */
  state: GatewayState;
  /** Has the money moved already: a direct transfer or Relay payment, or an x402 payment settled before forwarding? */
  moneyMoved: boolean;
  /** Can the proof pay again if given back (a transfer that is already on chain), rather than being spent by us? */
  reusable: boolean;
}

/** The seller served the call: it answered 2xx, and the answer was not cut off on its side. */
export const sellerServed = (exit: Pick<PaymentExit, 'sellerStatus' | 'state'>): boolean =>
  exit.sellerStatus !== null &&
  exit.sellerStatus >= 200 &&
  exit.sellerStatus < 300 &&
  (exit.state === 'completed' || exit.state === 'client_aborted');

export const paymentAction = (exit: PaymentExit): PaymentAction => {
  if (sellerServed(exit)) return exit.moneyMoved ? 'book' : 'settle';
  if (!exit.moneyMoved) return 'release';
  // Money moved and the seller did not serve. Never forwarded and still reusable: the buyer's proof pays its retry.
  if (!exit.forwarded && exit.reusable) return 'release';
  return 'refund';
};
