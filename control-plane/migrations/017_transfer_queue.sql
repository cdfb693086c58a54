-- The transfers job (control-plane/src/payouts/transfers.ts) looks for refunds owed and not yet sent, and for
-- transfers still open: both by partial indexes, so that each run reads what is due rather than the whole history.
CREATE INDEX ledger_journals_refunds_idx ON ledger_journals (id) WHERE kind = 'refund';
-- Sellers that asked for automatic payouts.
CREATE INDEX agents_auto_payout_idx ON agents (id) WHERE payout_network IS NOT NULL;
