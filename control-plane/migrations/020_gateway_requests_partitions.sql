-- Gateway-request history partitioned by time (DESIGN §4 scale: "PostgreSQL history is time-partitioned with
-- retention"), so that history older than CROCHET_HISTORY_RETENTION_DAYS goes a whole partition at a time (DROP,
-- not DELETE: no dead rows, no vacuum debt) — src/history-partitions.ts keeps the partitions.
--
-- The partition key is the id: `gr_` + a ULID, whose first 10 characters are its millisecond time in Crockford
-- base32, so id order is time order and a time boundary is an id string (`gr_` + the boundary's 10 time
-- characters). The primary key on id includes the partition key, so it stays a primary key, and every
-- `ON CONFLICT (id)` of the events consumer keeps working. One partition per calendar month (UTC), named
-- gateway_requests_pYYYY_MM. A DEFAULT partition takes any id outside the created ranges (ids that are not
-- time-ordered ULIDs, a proxy clock far off): an insert never depends on the maintenance job having run.
--
-- reviews.gateway_request_id loses its foreign key: a review outlives the call it is about (the Score reads reviews
-- alone), and a foreign key into the history would stop retention from dropping any month with a reviewed call in
-- it. routes/reviews.ts checks the call (who bought it, that it completed and settled) when the review is written;
-- the unique constraint (one review per call) stays.
--
-- The rows are copied under this migration's lock on gateway_requests: the events consumer waits meanwhile (events
-- wait in the stream, as when PostgreSQL is down) — db.ts gives migrations a long statement timeout.

-- Month arithmetic below is in UTC whatever the session's time zone (a month added in local time moves by an hour
-- across a daylight-saving change).
SET LOCAL TimeZone = 'UTC';

ALTER TABLE reviews DROP CONSTRAINT IF EXISTS reviews_gateway_request_id_fkey;

-- The month boundary `at` as a partition bound: `gr_` and the ULID time part of its millisecond (protocol ids.ts
-- ulid(); control-plane src/history-partitions.ts partitionBound() is the same, and a test holds them together).
CREATE FUNCTION gateway_request_id_bound(at timestamptz) RETURNS text LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
  ms bigint := floor(extract(epoch FROM at) * 1000)::bigint;
  chars text := '';
BEGIN
  IF ms < 0 OR ms >= 281474976710656 THEN -- 2^48: a ULID's time has 48 bits
    RAISE EXCEPTION 'gateway_request_id_bound: % is outside the ULID time range', at
      USING ERRCODE = 'numeric_value_out_of_range';
  END IF;
  FOR i IN 1..10 LOOP
    chars := substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', (ms % 32)::int + 1, 1) || chars;
    ms := ms / 32;
  END LOOP;
  RETURN 'gr_' || chars;
END $$;

ALTER TABLE gateway_requests RENAME TO gateway_requests_unpartitioned;
ALTER INDEX gateway_requests_pkey RENAME TO gateway_requests_unpartitioned_pkey;
ALTER TABLE gateway_requests_unpartitioned RENAME CONSTRAINT gateway_requests_status_check
  TO gateway_requests_unpartitioned_status_check;
ALTER TABLE gateway_requests_unpartitioned RENAME CONSTRAINT gateway_requests_price_atomic_check
  TO gateway_requests_unpartitioned_price_atomic_check;

-- Every column and check of migrations 002, 006 and 013, in the same order.
CREATE TABLE gateway_requests (
  id                  text NOT NULL,          -- gr_… (ULID, so id order is time order)
  listing_id          text NOT NULL,
  seller_id           text,
  buyer_id            text,
  key_id              text,
  method              text,
  path                text,
  status              text NOT NULL,
  http_status         integer,
  error_code          text,
  latency_ms          integer,
  upstream_latency_ms integer,
  bytes_in            bigint,
  bytes_out           bigint,
  price_atomic        bigint,
  currency            text,
  payment             jsonb,
  created_at          timestamptz NOT NULL,   -- start.at; until the start arrives, estimated from the end
  completed_at        timestamptz,            -- end.at
  receipt             text,
  CONSTRAINT gateway_requests_pkey PRIMARY KEY (id),
  CONSTRAINT gateway_requests_status_check CHECK (status IN (
    'forwarded', 'completed', 'upstream_error', 'client_aborted', 'refused', 'payment_required', 'payment_pending')),
  CONSTRAINT gateway_requests_price_atomic_check CHECK (price_atomic >= 0)
) PARTITION BY RANGE (id);

CREATE TABLE gateway_requests_default PARTITION OF gateway_requests DEFAULT;

-- A partition for each month from the oldest row's (by its id's time, which places it; at most ten years back) to
-- two months ahead (the job's MONTHS_AHEAD): the rows move into their months, and the job only has to keep adding
-- months ahead.
DO $$
DECLARE
  this_month timestamptz := date_trunc('month', now(), 'UTC');
  month timestamptz;
  first_id text;
  ms bigint := 0;
BEGIN
  SELECT min(id) INTO first_id FROM gateway_requests_unpartitioned WHERE id ~ '^gr_[0-9A-HJKMNP-TV-Z]{26}$';
  IF first_id IS NOT NULL THEN
    FOR i IN 4..13 LOOP
      ms := ms * 32 + strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(first_id, i, 1)) - 1;
    END LOOP;
    month := date_trunc('month', to_timestamp(ms / 1000.0), 'UTC');
  END IF;
  month := greatest(least(coalesce(month, this_month), this_month), this_month - interval '120 months');
  WHILE month <= this_month + interval '2 months' LOOP
    EXECUTE format('CREATE TABLE %I PARTITION OF gateway_requests FOR VALUES FROM (%L) TO (%L)',
                   'gateway_requests_p' || to_char(month AT TIME ZONE 'UTC', 'YYYY_MM'),
                   gateway_request_id_bound(month),
                   gateway_request_id_bound(month + interval '1 month'));
    month := month + interval '1 month';
  END LOOP;
END $$;

INSERT INTO gateway_requests (id, listing_id, seller_id, buyer_id, key_id, method, path, status, http_status,
                              error_code, latency_ms, upstream_latency_ms, bytes_in, bytes_out, price_atomic, currency,
                              payment, created_at, completed_at, receipt)
SELECT id, listing_id, seller_id, buyer_id, key_id, method, path, status, http_status, error_code, latency_ms,
       upstream_latency_ms, bytes_in, bytes_out, price_atomic, currency, payment, created_at, completed_at, receipt
  FROM gateway_requests_unpartitioned;

DROP TABLE gateway_requests_unpartitioned;

-- The indexes in use after migration 019, on every partition (and on those the job attaches later).
CREATE INDEX gateway_requests_buyer_idx ON gateway_requests (buyer_id, id DESC);
CREATE INDEX gateway_requests_seller_idx ON gateway_requests (seller_id, id DESC);
CREATE INDEX gateway_requests_listing_idx ON gateway_requests (listing_id, id DESC);
CREATE INDEX gateway_requests_forwarded_idx ON gateway_requests (created_at) WHERE status = 'forwarded';
CREATE INDEX gateway_requests_paid_by_buyer_idx ON gateway_requests (buyer_id, created_at) WHERE payment ? 'rail';

ANALYZE gateway_requests;

-- The months retention dropped (their id ranges), recorded in the transaction that drops each. The events consumer
-- ignores an event of a call in one of them (a late duplicate of what was recorded and dropped would otherwise come
-- back as a partial row in the DEFAULT partition), and reconciliation does not report such calls as missing. Months
-- still held stay out of it, whatever their age.
CREATE TABLE gateway_requests_dropped (
  from_id    text PRIMARY KEY,
  to_id      text NOT NULL,
  dropped_at timestamptz NOT NULL DEFAULT now(),
  CHECK (from_id < to_id)
);
