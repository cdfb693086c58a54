-- Per-listing gateway settings the seller controls; the proxies enforce them from the published config.
ALTER TABLE listings
  ADD COLUMN rate_limit_per_minute integer CHECK (rate_limit_per_minute BETWEEN 1 AND 1000000),
  ADD COLUMN body_limit_bytes integer NOT NULL DEFAULT 1048576 CHECK (body_limit_bytes BETWEEN 1024 AND 10485760),
  ADD COLUMN timeout_ms integer NOT NULL DEFAULT 30000 CHECK (timeout_ms BETWEEN 1000 AND 120000);

-- Per-agent settings an operator controls (rate limit per key for now; caps and pauses come with operators).
ALTER TABLE agents
  ADD COLUMN rate_limit_per_minute integer CHECK (rate_limit_per_minute BETWEEN 1 AND 1000000);

-- The outcome of the seller's last POST /listings/:id/endpoint/test: {ok, status, latency_ms, error, tested_at}.
ALTER TABLE listings ADD COLUMN endpoint_last_test jsonb;
