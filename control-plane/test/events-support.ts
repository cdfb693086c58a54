import {
  EVENT_FIELD,
  type GatewayEndEvent,
  type GatewayEvent,
  type GatewayStartEvent,
  newId,
  redisKeys,
} from '@crochet/protocol';
import type { Redis } from 'ioredis';

/**
 * Shared by the event-consumer and history test files: gateway events in the protocol's shape, written the way the
 * proxies write them (`XADD <events> * e <json>`).
 */

export interface Call {
  listingId: string;
  sellerId: string;
  buyerId: string;
}

/** A gateway.start for a new request (or for `fields.id`). */
export const startEvent = (call: Call, fields: Partial<GatewayStartEvent> = {}): GatewayStartEvent => ({
  type: 'gateway.start',
  v: 1,
  id: newId('gatewayRequest'),
  listing_id: call.listingId,
  seller_id: call.sellerId,
  buyer_id: call.buyerId,
  key_id: newId('key'),
  method: 'POST',
  path: '/echo',
  price_atomic: '10000',
  currency: 'USDC',
  at: Date.now(),
  ...fields,
});

/** The gateway.end of a start, 120 ms later unless `fields` say otherwise. */
export const endEvent = (start: GatewayStartEvent, fields: Partial<GatewayEndEvent> = {}): GatewayEndEvent => ({
  type: 'gateway.end',
  v: 1,
  id: start.id,
  listing_id: start.listing_id,
  status: 'completed',
  http_status: 200,
  error_code: null,
  latency_ms: 120,
  upstream_latency_ms: 100,
  bytes_in: 42,
  bytes_out: 1234,
  at: start.at + 120,
  ...fields,
});

/** XADDs events in one pipeline, in the given order; returns their entry ids. */
export const publish = async (redis: Redis, prefix: string, ...events: GatewayEvent[]): Promise<string[]> =>
  publishRaw(redis, prefix, ...events.map((event) => JSON.stringify(event)));

/** XADDs entries whose `e` field is any text (garbage included). */
export const publishRaw = async (redis: Redis, prefix: string, ...values: string[]): Promise<string[]> => {
  const pipeline = redis.pipeline();
  for (const value of values) pipeline.xadd(redisKeys(prefix).events, '*', EVENT_FIELD, value);
  const results = (await pipeline.exec()) ?? [];
  return results.map(([error, id]) => {
    if (error) throw error;
    return id as string;
  });
};

/** The columns a recorded request is compared on. */
export const ROW_COLUMNS =
  'id, listing_id, seller_id, buyer_id, key_id, method, path, status, http_status, error_code, latency_ms, ' +
  'upstream_latency_ms, bytes_in, bytes_out, price_atomic, currency, payment, created_at, completed_at';

/** What a start and its end must add up to in gateway_requests. */
export const expectedRow = (start: GatewayStartEvent, end: GatewayEndEvent | null) => ({
  id: start.id,
  listing_id: start.listing_id,
  seller_id: start.seller_id,
  buyer_id: start.buyer_id,
  key_id: start.key_id,
  method: start.method,
  path: start.path,
  status: end?.status ?? 'forwarded',
  http_status: end?.http_status ?? null,
  error_code: end?.error_code ?? null,
  latency_ms: end?.latency_ms ?? null,
  upstream_latency_ms: end?.upstream_latency_ms ?? null,
  bytes_in: end ? String(end.bytes_in) : null,
  bytes_out: end ? String(end.bytes_out) : null,
  price_atomic: start.price_atomic,
  currency: start.currency,
  payment: null,
  created_at: new Date(start.at),
  completed_at: end ? new Date(end.at) : null,
});
