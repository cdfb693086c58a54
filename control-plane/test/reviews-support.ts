import type {
  GatewayEndEvent,
  GatewayEvent,
  GatewayStartEvent,
  PaymentOutcome,
  PaymentRecord,
} from '@crochet/protocol';
import { type Call, endEvent, startEvent } from './events-support.js';

/**
 * Shared by the review and score test files: gateway calls in the shapes the proxies record them (DESIGN §3.4), as
 * events for the consumer.
 */

/** A verified Solana transfer paying for request `id` (one transaction per request, as the ledger requires). */
export const paymentFor = (id: string, amountAtomic = '10000'): PaymentRecord => ({
  rail: 'solana-transfer',
  network: 'solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1',
  payer: 'BuyerWa11et1111111111111111111111111111111',
  amount_atomic: amountAtomic,
  asset: 'EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v',
  tx: `tx${id.slice(3)}`,
  proof_ids: [`solana:tx${id.slice(3)}`],
});

export type CallKind =
  /** paid, the seller answered 200, the payment settled: the one kind a buyer may review */
  | 'paid'
  /** no payment proof: the gateway answered 402 */
  | 'unpaid'
  /** paid, the seller timed out: 504, the settled payment is due a refund */
  | 'timeout'
  /** paid, the seller answered 500: due a refund */
  | 'seller_error'
  /** paid, the seller answered 400: the buyer's mistake, due a refund */
  | 'buyer_error'
  /** paid, answered 200, the settlement still pending */
  | 'pending'
  /** paid and forwarded, no end recorded yet */
  | 'in_flight'
  /** a free listing's call */
  | 'free';

/** The events one call of `kind` leaves; `fields` adjust the start (e.g. `at`). */
export const callEvents = (
  call: Call,
  kind: CallKind,
  fields: Partial<GatewayStartEvent> = {},
): { id: string; events: GatewayEvent[] } => {
  const start = startEvent(call, { price_atomic: kind === 'free' ? '0' : '10000', ...fields });
  if (kind !== 'free' && kind !== 'unpaid') start.payment = paymentFor(start.id, start.price_atomic);
  const outcome = (status: PaymentOutcome['status']): PaymentOutcome => ({ status, tx: start.payment?.tx ?? null });
  const end: Partial<GatewayEndEvent> | null = {
    paid: { payment_outcome: outcome('settled') },
    unpaid: {
      status: 'payment_required' as const,
      http_status: 402,
      error_code: 'PAYMENT_REQUIRED',
      upstream_latency_ms: null,
    },
    timeout: {
      status: 'upstream_error' as const,
      http_status: 504,
      error_code: 'UPSTREAM_TIMEOUT',
      upstream_latency_ms: 30_000,
      payment_outcome: outcome('refund_due'),
    },
    seller_error: { http_status: 500, payment_outcome: outcome('refund_due') },
    buyer_error: { http_status: 400, payment_outcome: outcome('refund_due') },
    pending: { payment_outcome: outcome('pending') },
    in_flight: null,
    free: {},
  }[kind];
  return { id: start.id, events: end === null ? [start] : [start, endEvent(start, end)] };
};
