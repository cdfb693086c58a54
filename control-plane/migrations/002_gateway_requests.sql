-- Gateway requests, recorded from the proxies' event stream (protocol events.ts) by events-consumer.ts.
--
-- A row is built from two events that may arrive in either order: gateway.start (who, what, price) and gateway.end
-- (outcome). So only id, listing_id, status and created_at are always known; the columns of the other event stay
-- NULL until it arrives. No foreign keys: an event is a fact the proxy already acted on, and a missing referent must
-- not stop the stream behind it.

CREATE TABLE gateway_requests (
  id                  text PRIMARY KEY,       -- gr_… (ULID, so id order is time order)
  listing_id          text NOT NULL,
  seller_id           text,
  buyer_id            text,
  key_id              text,
  method              text,
  path                text,
  status              text NOT NULL CHECK (status IN ('payment_required', 'payment_pending', 'forwarded', 'completed',
                                                      'upstream_error', 'refunded', 'denied')),
  http_status         integer,
  error_code          text,
  latency_ms          integer,
  upstream_latency_ms integer,
  bytes_in            bigint,
  bytes_out           bigint,
  price_atomic        bigint CHECK (price_atomic >= 0),
  currency            text,
  payment             jsonb,                  -- filled by the payments work: {proof, network, tx, …}
  created_at          timestamptz NOT NULL,   -- start.at; until the start arrives, estimated from the end
  completed_at        timestamptz             -- end.at
);

CREATE INDEX gateway_requests_buyer_idx ON gateway_requests (buyer_id, id DESC);
CREATE INDEX gateway_requests_seller_idx ON gateway_requests (seller_id, id DESC);
CREATE INDEX gateway_requests_listing_idx ON gateway_requests (listing_id, id DESC);
CREATE INDEX gateway_requests_payment_proof_idx ON gateway_requests ((payment ->> 'proof'))
  WHERE payment IS NOT NULL;
