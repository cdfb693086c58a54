/**
 * Events the proxies append to the `events` stream (see redis-keys.ts) and the control plane consumes into
 * PostgreSQL. Each stream entry has one field, `e`, holding the JSON of one event. Events of one gateway request
 * share its id; the consumer applies them idempotently and in any order.
 */

export type GatewayStatus =
  | 'payment_required'
  | 'payment_pending'
  | 'forwarded'
  | 'completed'
  | 'upstream_error'
  | 'refunded'
  | 'denied';

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
}

export type GatewayEvent = GatewayStartEvent | GatewayEndEvent;

/** The stream field that holds an event's JSON. */
export const EVENT_FIELD = 'e';
