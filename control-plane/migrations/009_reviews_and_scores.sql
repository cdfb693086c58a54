-- Trust (DESIGN §3.6): reviews and the Crochet Score.
--
-- A review belongs to one paid gateway request that completed, written by its buyer (routes/reviews.ts checks who
-- may); the unique constraint makes "once per request" hold under concurrent posts. The comment is plain text.

CREATE TABLE reviews (
  id                 text PRIMARY KEY,        -- rev_… (ULID, so id order is time order)
  listing_id         text NOT NULL REFERENCES listings (id),
  reviewer_id        text NOT NULL REFERENCES agents (id),
  gateway_request_id text NOT NULL REFERENCES gateway_requests (id),
  rating             smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
  comment            text CHECK (char_length(comment) BETWEEN 1 AND 1000),
  created_at         timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT reviews_gateway_request_key UNIQUE (gateway_request_id)
);
CREATE INDEX reviews_listing_idx ON reviews (listing_id, id DESC);

-- The score job (src/score/job.ts) writes listings.crochet_score and listings.verified (sorting and filtering read
-- those) and, here, what each score was made of, so that a listing can show its components.
CREATE TABLE listing_scores (
  listing_id  text PRIMARY KEY REFERENCES listings (id),
  score       integer NOT NULL CHECK (score BETWEEN 0 AND 1000),
  components  jsonb NOT NULL,
  computed_at timestamptz NOT NULL
);

-- A seller's score: its listings' scores weighted by their paid calls.
CREATE TABLE seller_scores (
  seller_id   text PRIMARY KEY REFERENCES agents (id),
  score       integer NOT NULL CHECK (score BETWEEN 0 AND 1000),
  paid_calls  bigint NOT NULL,
  listings    integer NOT NULL,
  computed_at timestamptz NOT NULL
);
