-- When a paid call's payment is settled: before forwarding (default) or only after the seller answered 2xx.
ALTER TABLE listings
  ADD COLUMN settlement_policy text NOT NULL DEFAULT 'before_forward'
    CHECK (settlement_policy IN ('before_forward', 'after_response'));

-- Payments are recorded as {rail, network, payer, amount_atomic, asset, tx, proof_ids[], outcome}; buyers look
-- their calls up by a proof they hold.
CREATE INDEX gateway_requests_payment_proof_ids_idx ON gateway_requests USING gin ((payment -> 'proof_ids'));
CREATE INDEX gateway_requests_payment_tx_idx ON gateway_requests ((payment ->> 'tx')) WHERE payment IS NOT NULL;
