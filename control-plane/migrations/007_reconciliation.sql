-- §3.5 reconciliation (src/ledger/reconcile.ts): settled payments seen by the proxies ↔ journals ↔ (where a rail is
-- configured) on-chain transfers to the marketplace.
--
-- Journals are append-only (a trigger refuses UPDATE), so "this journal was checked on chain" cannot be a column of
-- ledger_journals: it lives here, one row per checked payment journal, written once its transaction gave a definite
-- answer (a transaction not yet confirmed, or an RPC failure, leaves no row and is checked again by the next run).

CREATE TABLE ledger_reconciliations (
  journal_id    bigint PRIMARY KEY REFERENCES ledger_journals (id),
  reconciled_at timestamptz NOT NULL DEFAULT now(),
  ok            boolean NOT NULL,               -- the transaction paid the marketplace at least the journal's amount
  detail        text                            -- why not, when not
);
CREATE INDEX ledger_reconciliations_failed_idx ON ledger_reconciliations (journal_id) WHERE NOT ok;

-- What reconciliation finds becomes an alarm too (idempotent on the fingerprint, like posting's alarms).
ALTER TABLE ledger_alarms DROP CONSTRAINT IF EXISTS ledger_alarms_reason_check;
ALTER TABLE ledger_alarms ADD CONSTRAINT ledger_alarms_reason_check CHECK (reason IN (
  'amount_mismatch', 'settlement_reused',                                    -- posting
  'journal_amount_mismatch', 'journal_settlement_mismatch', 'unpostable', 'onchain_mismatch'  -- reconciliation
));

-- The periodic run looks for requests whose end never arrived and for payable requests without journals.
CREATE INDEX gateway_requests_forwarded_idx ON gateway_requests (created_at) WHERE status = 'forwarded';
CREATE INDEX gateway_requests_payable_idx ON gateway_requests (id)
  WHERE payment -> 'outcome' ->> 'status' IN ('settled', 'refund_due');
