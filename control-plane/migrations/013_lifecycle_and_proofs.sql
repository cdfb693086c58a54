-- The gateway request lifecycle (protocol/src/lifecycle.ts): one final state per request. `denied` is now `refused`
-- (stopped before forwarding), `client_aborted` is new (the buyer went away), `refunded` was never written (a refund
-- is a payment outcome, not a request state).
ALTER TABLE gateway_requests DROP CONSTRAINT gateway_requests_status_check;
UPDATE gateway_requests SET status = 'refused' WHERE status = 'denied';
ALTER TABLE gateway_requests ADD CONSTRAINT gateway_requests_status_check CHECK (status IN (
  'forwarded', 'completed', 'upstream_error', 'client_aborted', 'refused', 'payment_required', 'payment_pending'));

-- Consumed payment proofs (DESIGN §2 durability rule): Redis holds them for the hot path; this table is the truth
-- that survives a Redis loss. Written by the events consumer from paid start records (every proof id of the payment)
-- and x402 settlements (the settling transaction); a proof given back (nothing charged, or its settlement pending) is
-- marked released. After a Redis loss the control plane writes the held ones within the acceptance window back into
-- the new Redis before paid calls resume.
CREATE TABLE payment_proofs (
  proof_id           text PRIMARY KEY,
  gateway_request_id text NOT NULL,
  consumed_at        timestamptz NOT NULL,   -- the consuming start record's time; a later consumer replaces it
  released_at        timestamptz             -- given back; null while the proof is held
);
CREATE INDEX payment_proofs_consumed_idx ON payment_proofs (consumed_at);
CREATE INDEX payment_proofs_request_idx ON payment_proofs (gateway_request_id);

-- Today's spend per agent is restored from the paid requests of the day.
CREATE INDEX gateway_requests_paid_by_buyer_idx ON gateway_requests (buyer_id, created_at) WHERE payment ? 'rail';
