-- §3.5 ledger: every paid gateway request that reached the seller posts one balanced double-entry journal, posted by
-- the events consumer (src/ledger/posting.ts) in the transaction that records the request's events.
--
-- Amounts are integer atomic units of the currency (bigint), signed in entries: a buyer debit is negative, a seller
-- credit and the marketplace fee positive, so that every journal sums to zero. Journals and entries are append-only;
-- a correction is a reversing journal (at most one per journal).

CREATE TABLE ledger_accounts (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  owner_id   text NOT NULL,                  -- agt_… id, or 'marketplace' for the fee revenue account
  role       text NOT NULL CHECK (role IN ('buyer', 'seller_payable', 'marketplace_fee')),
  currency   text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (owner_id, role, currency),
  CHECK ((role = 'marketplace_fee') = (owner_id = 'marketplace'))
);

CREATE TABLE ledger_journals (
  id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind                text NOT NULL CHECK (kind IN ('payment', 'refund')),
  gateway_request_id  text NOT NULL,
  idempotency_key     text NOT NULL UNIQUE,
  listing_id          text NOT NULL,
  buyer_id            text NOT NULL,
  seller_id           text NOT NULL,
  currency            text NOT NULL,
  amount_atomic       bigint NOT NULL CHECK (amount_atomic > 0),     -- the price the buyer paid
  fee_atomic          bigint NOT NULL CHECK (fee_atomic BETWEEN 0 AND amount_atomic),
  fee_bps             integer NOT NULL CHECK (fee_bps BETWEEN 0 AND 10000),
  network             text,                   -- the payment's settlement reference (CAIP-2 network, transaction)
  tx                  text,
  reverses_journal_id bigint UNIQUE REFERENCES ledger_journals (id),
  created_at          timestamptz NOT NULL DEFAULT now(),
  CHECK (idempotency_key = gateway_request_id || ':' || kind),
  CHECK ((kind = 'refund') = (reverses_journal_id IS NOT NULL))
);
-- One settlement pays for one request: a transaction booked twice is refused (and raised as an alarm by posting).
-- Refunds carry the reference of the payment they reverse, so only payments take part.
CREATE UNIQUE INDEX ledger_journals_settlement_idx ON ledger_journals (network, tx)
  WHERE kind = 'payment' AND tx IS NOT NULL;
CREATE INDEX ledger_journals_request_idx ON ledger_journals (gateway_request_id);

CREATE TABLE ledger_entries (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  journal_id    bigint NOT NULL REFERENCES ledger_journals (id),
  account_id    bigint NOT NULL REFERENCES ledger_accounts (id),
  entry_type    text NOT NULL CHECK (entry_type IN ('buyer_debit', 'seller_credit', 'marketplace_fee',
                                                    'buyer_debit_reversal', 'seller_credit_reversal',
                                                    'marketplace_fee_reversal')),
  amount_atomic bigint NOT NULL CHECK (amount_atomic <> 0),
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_entries_journal_idx ON ledger_entries (journal_id);
CREATE INDEX ledger_entries_account_idx ON ledger_entries (account_id, id DESC);

-- Append-only: history is corrected by reversing journals, never rewritten.
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % refused (post a reversing journal instead)', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER ledger_journals_append_only BEFORE UPDATE OR DELETE ON ledger_journals
  FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_journals_no_truncate BEFORE TRUNCATE ON ledger_journals
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
  FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

-- Balanced at commit. A journal is checked once, at the commit of the transaction that created it (deferred, because
-- its entries are written after it): it must have at least two entries, summing to zero. Entries added to a journal
-- of an earlier transaction are checked at the end of their statement instead: that journal must still balance.
-- (Checking per journal rather than per entry keeps the cost of a batch's commit to one lookup per journal.)
CREATE FUNCTION ledger_check_balanced(journal bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  total numeric;
  n     bigint;
BEGIN
  SELECT coalesce(sum(amount_atomic), 0), count(*) INTO total, n FROM ledger_entries WHERE journal_id = journal;
  IF n < 2 OR total <> 0 THEN
    RAISE EXCEPTION 'journal % is not balanced (% entries summing to %)', journal, n, total
      USING ERRCODE = 'check_violation';
  END IF;
END $$;
CREATE FUNCTION ledger_journal_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM ledger_check_balanced(NEW.id);
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_journals_balanced AFTER INSERT ON ledger_journals
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_journal_balanced();
-- A journal this transaction created (its row's xmin is the transaction's id and its created_at the transaction's
-- start) is left to its own deferred check above; any other journal that received entries is checked now. A journal
-- created inside a subtransaction counts as another's: checked at the end of each entries statement, which is
-- stricter, never looser. The per-journal lookups are scalar subqueries so that they stay index lookups.
CREATE FUNCTION ledger_entries_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  journal bigint;
BEGIN
  FOR journal IN
    SELECT t.journal_id FROM (SELECT DISTINCT journal_id FROM added_entries) t
     WHERE (SELECT j.xmin = pg_current_xact_id()::xid AND j.created_at = now()
              FROM ledger_journals j WHERE j.id = t.journal_id) IS NOT TRUE
  LOOP
    PERFORM ledger_check_balanced(journal);
  END LOOP;
  RETURN NULL;
END $$;
CREATE TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
  REFERENCING NEW TABLE AS added_entries
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_balanced();

-- "Same key, different amounts" (or one settlement claimed by two requests): never posted, kept for an operator.
CREATE TABLE ledger_alarms (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  reason          text NOT NULL CHECK (reason IN ('amount_mismatch', 'settlement_reused')),
  idempotency_key text NOT NULL,
  journal_id      bigint REFERENCES ledger_journals (id),   -- the journal already posted, when there is one
  posted          jsonb,                                    -- what that journal holds
  received        jsonb NOT NULL,                           -- what this delivery would have posted
  fingerprint     text NOT NULL UNIQUE,                     -- a redelivery of the same conflict adds no row
  created_at      timestamptz NOT NULL DEFAULT now()
);
