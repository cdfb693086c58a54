/**
 * Events the proxies append to the `events` stream (see redis-keys.ts) and the control plane consumes into
 * PostgreSQL. Each stream entry has a field `e` holding the JSON of one event; a paid call's start entry has a second
 * field `p` holding the JSON of its verified payment (a PaymentRecord), written by the admission script from the
 * verification record. Events of one gateway request share its id; the consumer applies them idempotently and in any
 * order.
 */

import type { GatewayState } from './lifecycle.js';

/** The state a gateway request is recorded in (lifecycle.ts). */
export type GatewayStatus = GatewayState;

/** Written in the same Redis round trip that admitted the request, before it is forwarded. */
export interface GatewayStartEvent {
  type: 'gateway.start';
  v: 1;
  id: string;
  listing_id: string;
  seller_id: string;
  buyer_id: string;
  key_id: string;
  method: string;
  path: string;
  price_atomic: string;
  currency: string;
  /** Unix milliseconds. */
  at: number;
  /** The verified payment of a paid call: the entry's `p` field, joined to the event when it is read. */
  payment?: PaymentRecord;
  /**
   * A paid call: when the admission script consumed its proof, in Redis's clock (the entry's `t` field): which of two
   * requests consumed a proof last is decided by one clock.
   */
  consumed_at?: number;
}

/** What the gateway verified about a paid call's payment. */
export interface PaymentRecord {
  rail: 'solana-transfer' | 'evm-transfer' | 'relay' | 'x402-exact';
  network: string;
  payer: string;
  amount_atomic: string;
  asset: string;
  tx: string | null;
  proof_ids: string[];
  /** The payment request the payment names (a Solana transfer's memo), where it names one. */
  payment_request_id?: string;
}

/**
 * How a paid call's payment ended: settled on chain, still settling, released (never charged), due a refund (settled
 * but the seller failed), or unpaid (the seller served but the settlement was refused afterwards).
 */
export interface PaymentOutcome {
  status: 'settled' | 'pending' | 'released' | 'refund_due' | 'unpaid';
  tx: string | null;
}

/** Written after the response finished (or failed), batched across requests. */
export interface GatewayEndEvent {
  type: 'gateway.end';
  v: 1;
  id: string;
  listing_id: string;
  status: GatewayStatus;
  http_status: number;
  /** Registry code when the gateway answered with an error instead of the seller's response. */
  error_code: string | null;
  latency_ms: number;
  upstream_latency_ms: number | null;
  bytes_in: number;
  bytes_out: number;
  at: number;
  /** Paid calls only. */
  payment_outcome?: PaymentOutcome;
  /** A 402 with payment requirements: the payment_request_id it issued. */
  payment_request_id?: string;
  /**
   * Paid calls whose answer streamed to its end: the full receipt (compact JWS, plugins/src/receipts), served later
   * at `GET /api/v1/gateway-requests/:id/receipt`.
   */
  receipt?: string;
}

export type GatewayEvent = GatewayStartEvent | GatewayEndEvent;

/** The stream field that holds an event's JSON. */
export const EVENT_FIELD = 'e';
/** The stream field of a paid call's start entry that holds its verified payment's JSON. */
export const EVENT_PAYMENT_FIELD = 'p';
/** The stream field of a paid call's start entry that holds Redis's time of the consumption (unix ms). */
export const EVENT_TIME_FIELD = 't';
