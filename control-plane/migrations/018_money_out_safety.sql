-- Money out, safer under a chain that cannot tell (issue 12 review).
--
-- A transfer is never signed anew unless the chain can say it did not land: every earlier attempt is kept (its id and
-- the block height or nonce it was valid for), and one whose fate cannot be told stays open with the reason, for an
-- operator — its amount stays reserved, nothing is sent again.
ALTER TABLE money_transfers ADD COLUMN attempts jsonb NOT NULL DEFAULT '[]'::jsonb;
ALTER TABLE money_transfers ADD COLUMN review text;
-- A payout request's body under its Idempotency-Key ({network, amount, to} as sent): the same key with another body
-- is refused, whatever the first payout came to.
ALTER TABLE money_transfers ADD COLUMN idempotency_request text;
-- A refund whose transfer failed on chain is owed again and gets a new transfer: one refund at a time per request,
-- failed ones kept beside it.
ALTER TABLE money_transfers DROP CONSTRAINT money_transfers_gateway_request_id_key;
CREATE UNIQUE INDEX money_transfers_refund_idx ON money_transfers (gateway_request_id) WHERE status <> 'failed';
-- Every transfer of a request, failed ones too (a request's refund transfer, the refund queue's attempt count).
CREATE INDEX money_transfers_request_idx ON money_transfers (gateway_request_id) WHERE gateway_request_id IS NOT NULL;
-- Rows signed and still pending were written by a job that sent before it said so: count them as maybe sent.
UPDATE money_transfers SET status = 'broadcast' WHERE status = 'pending' AND signed_tx IS NOT NULL;
