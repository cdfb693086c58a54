-- Money out (DESIGN §3.9): seller payouts and on-chain refunds, booked in the ledger, exactly once.
--
-- The ledger gains, beside payment and refund journals:
--   refund           (changed for new refunds) the call is not charged: the seller's credit and the fee are reversed
--                    and the price becomes owed to the buyer (refund_payable), instead of being taken as already paid
--                    back — which it is not until the USDC went back on chain
--   refund_transfer  the refund sent on chain: refund_payable −price, buyer +price (buyer_debit_reversal)
--   payout           a seller's payable sent on chain: seller_payable −amount, seller_paid +amount
--   loss             a call the seller served whose settlement was refused afterwards (after_response): the
--                    marketplace pays the seller's share (seller_payable +, marketplace_fee − marketplace_loss)
-- Earlier refund journals reversed the buyer's debit at once (refunds then were paid out of band); they stay as they
-- are (journals are append-only).

ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_role_check;
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_role_check
  CHECK (role IN ('buyer', 'seller_payable', 'marketplace_fee', 'refund_payable', 'seller_paid'));

ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_entry_type_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_entry_type_check CHECK (entry_type IN (
  'buyer_debit', 'seller_credit', 'marketplace_fee',
  'buyer_debit_reversal', 'seller_credit_reversal', 'marketplace_fee_reversal',
  'refund_owed', 'refund_sent', 'seller_payout', 'payout_sent', 'marketplace_loss'));

-- A payout belongs to no gateway request: journals name the transfer they book instead.
ALTER TABLE ledger_journals ADD COLUMN transfer_id text;
ALTER TABLE ledger_journals ALTER COLUMN gateway_request_id DROP NOT NULL;
ALTER TABLE ledger_journals ALTER COLUMN listing_id DROP NOT NULL;
ALTER TABLE ledger_journals ALTER COLUMN buyer_id DROP NOT NULL;
ALTER TABLE ledger_journals DROP CONSTRAINT ledger_journals_kind_check;
ALTER TABLE ledger_journals ADD CONSTRAINT ledger_journals_kind_check
  CHECK (kind IN ('payment', 'refund', 'refund_transfer', 'payout', 'loss'));
ALTER TABLE ledger_journals DROP CONSTRAINT ledger_journals_check1;
ALTER TABLE ledger_journals ADD CONSTRAINT ledger_journals_idempotency_check CHECK (
  CASE kind
    WHEN 'payout' THEN gateway_request_id IS NULL AND transfer_id IS NOT NULL
                       AND idempotency_key = transfer_id || ':payout'
    WHEN 'refund_transfer' THEN gateway_request_id IS NOT NULL AND transfer_id IS NOT NULL
                       AND idempotency_key = gateway_request_id || ':refund_transfer'
    ELSE gateway_request_id IS NOT NULL AND listing_id IS NOT NULL AND buyer_id IS NOT NULL
         AND idempotency_key = gateway_request_id || ':' || kind
  END);

-- Every transfer the marketplace sends on chain: seller payouts and buyer refunds. A row is written before anything is
-- signed, the signed transaction (and its id) before it is broadcast, and the journal in the same transaction that
-- marks it confirmed — so a process that dies anywhere in between finds, on restart, exactly what to do: sign, send
-- again the same signed transaction, look it up on chain, or book it.
CREATE TABLE money_transfers (
  id                 text PRIMARY KEY,                -- po_… (payout) or rf_… (refund)
  kind               text NOT NULL CHECK (kind IN ('payout', 'refund')),
  owner_id           text NOT NULL,                   -- the seller paid out, or the buyer refunded
  gateway_request_id text UNIQUE,                     -- a refund: the request refunded (one refund each)
  idempotency_key    text,                            -- a payout request's Idempotency-Key (per owner)
  network            text NOT NULL,                   -- CAIP-2
  to_address         text NOT NULL,
  amount_atomic      bigint NOT NULL CHECK (amount_atomic > 0),
  currency           text NOT NULL,
  status             text NOT NULL CHECK (status IN ('pending', 'broadcast', 'confirmed', 'failed')),
  tx                 text,                            -- the transaction's id, known once it is signed
  signed_tx          text,                            -- the signed transaction, sent again as it is after a crash
  valid_until        bigint,                          -- Solana: the last block height its blockhash is valid for
  error              text,
  requested_by       text NOT NULL CHECK (requested_by IN ('api', 'auto', 'refund')),
  journal_id         bigint REFERENCES ledger_journals (id),
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  confirmed_at       timestamptz,
  CHECK ((kind = 'refund') = (gateway_request_id IS NOT NULL)),
  CHECK ((status = 'confirmed') = (journal_id IS NOT NULL)),
  UNIQUE (owner_id, idempotency_key)
);
CREATE INDEX money_transfers_open_idx ON money_transfers (network, created_at) WHERE status IN ('pending', 'broadcast');
CREATE INDEX money_transfers_owner_idx ON money_transfers (owner_id, id DESC);

-- Automatic payouts: a seller may ask to be paid out on a network whenever its payable reaches a threshold.
ALTER TABLE agents ADD COLUMN payout_network text;
ALTER TABLE agents ADD COLUMN payout_threshold_atomic bigint CHECK (payout_threshold_atomic > 0);
ALTER TABLE agents ADD CONSTRAINT agents_payout_setting_check
  CHECK ((payout_network IS NULL) = (payout_threshold_atomic IS NULL));
