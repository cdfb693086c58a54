-- The history and ledger write path (events consumer, DESIGN §3.5): every index and per-row check costs each paid
-- call. What no query can use is dropped; the journal balance check runs once per transaction over all the journals
-- it created instead of once per journal.

-- gateway_requests: indexes no query uses. (listing_id, id DESC) stays: a seller's history of one listing reads it,
-- not the whole of the seller's rows.
--   payment ->> 'proof'   : the field was renamed proof_ids (migration 004); nothing reads it.
--   payment -> 'proof_ids' (gin), payment ->> 'tx': the history's payment_proof filter is an OR that also tests the
--                           outcome's tx, which has no index, so the planner can never combine these; it reads the
--                           caller's (buyer_id | seller_id, id DESC) index and filters, as it does today.
--   payable               : its predicate (settled, refund_due) is narrower than reconciliation's bookable one (which
--                           includes unpaid), so it never answers that query; reconciliation walks the primary key.
DROP INDEX IF EXISTS gateway_requests_payment_proof_idx;
DROP INDEX IF EXISTS gateway_requests_payment_proof_ids_idx;
DROP INDEX IF EXISTS gateway_requests_payment_tx_idx;
DROP INDEX IF EXISTS gateway_requests_payable_idx;

-- Balanced at commit, checked per transaction. Each statement that creates journals widens this transaction's
-- unchecked range of journal ids (transaction-local settings, so a rolled back subtransaction takes its part back);
-- the deferred per-journal trigger stays, but the first one to fire at commit checks every journal of the range in
-- one statement (one index range scan over their entries) and marks the range checked, and the others find their
-- journal inside it and return. A journal that fires outside any checked range (none should) is checked alone, as
-- before. The range may hold other transactions' journals (ids interleave): committed ones are balanced, so checking
-- them again is only work; uncommitted ones are invisible here and checked by their own transaction.
CREATE FUNCTION ledger_journals_created() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  lo bigint;
  hi bigint;
  from_id bigint := nullif(current_setting('crochet.ledger_unchecked_from', true), '')::bigint;
  to_id bigint := nullif(current_setting('crochet.ledger_unchecked_to', true), '')::bigint;
BEGIN
  SELECT min(id), max(id) INTO lo, hi FROM created_journals;
  IF lo IS NULL THEN
    RETURN NULL;
  END IF;
  PERFORM set_config('crochet.ledger_unchecked_from', least(lo, from_id)::text, true),
          set_config('crochet.ledger_unchecked_to', greatest(hi, to_id)::text, true);
  RETURN NULL;
END $$;
CREATE TRIGGER ledger_journals_created AFTER INSERT ON ledger_journals
  REFERENCING NEW TABLE AS created_journals
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_journals_created();

-- The journals with ids in [lo, hi] that have fewer than two entries or entries not summing to zero: raises on the
-- first one found.
CREATE FUNCTION ledger_check_balanced_range(lo bigint, hi bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  bad record;
BEGIN
  SELECT j.id, coalesce(t.n, 0) AS n, coalesce(t.total, 0) AS total INTO bad
    FROM ledger_journals j
    LEFT JOIN (SELECT e.journal_id, count(*) AS n, sum(e.amount_atomic) AS total
                 FROM ledger_entries e WHERE e.journal_id BETWEEN lo AND hi GROUP BY e.journal_id) t
           ON t.journal_id = j.id
   WHERE j.id BETWEEN lo AND hi AND (t.n IS NULL OR t.n < 2 OR t.total <> 0)
   ORDER BY j.id
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'journal % is not balanced (% entries summing to %)', bad.id, bad.n, bad.total
      USING ERRCODE = 'check_violation';
  END IF;
END $$;

CREATE OR REPLACE FUNCTION ledger_journal_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  from_id bigint := nullif(current_setting('crochet.ledger_unchecked_from', true), '')::bigint;
  to_id bigint := nullif(current_setting('crochet.ledger_unchecked_to', true), '')::bigint;
BEGIN
  IF from_id IS NOT NULL AND NEW.id BETWEEN from_id AND to_id THEN
    PERFORM ledger_check_balanced_range(from_id, to_id);
    PERFORM set_config('crochet.ledger_unchecked_from', '', true), set_config('crochet.ledger_unchecked_to', '', true),
            set_config('crochet.ledger_checked_from', from_id::text, true),
            set_config('crochet.ledger_checked_to', to_id::text, true);
  ELSIF NEW.id BETWEEN nullif(current_setting('crochet.ledger_checked_from', true), '')::bigint
                   AND nullif(current_setting('crochet.ledger_checked_to', true), '')::bigint THEN
    NULL; -- checked with its range, by the firing that cleared it
  ELSE
    PERFORM ledger_check_balanced(NEW.id);
  END IF;
  RETURN NULL;
END $$;

-- ledger_entries' references, checked per statement: a foreign key checks (and locks) its referenced row once per
-- entry, three entries a payment. Journals can be neither deleted nor renumbered (append-only, migration 005) and
-- accounts neither (below), so that an entry's journal and account exist when it is inserted is the whole
-- guarantee; the statement trigger below checks it for all the statement's entries at once (SQLSTATE 23503, as the
-- foreign keys did).
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_journal_id_fkey;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_account_id_fkey;
CREATE TRIGGER ledger_accounts_no_delete BEFORE DELETE ON ledger_accounts
  FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_accounts_no_truncate BEFORE TRUNCATE ON ledger_accounts
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_accounts_keep_id BEFORE UPDATE OF id ON ledger_accounts
  FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION ledger_append_only();

-- Entries added to a journal outside this transaction's unchecked range (a journal of an earlier transaction, or
-- one whose range was already checked) are checked at the end of their statement: that journal must still balance.
-- Those inside it are left to the range check at commit.
CREATE OR REPLACE FUNCTION ledger_entries_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  from_id bigint := nullif(current_setting('crochet.ledger_unchecked_from', true), '')::bigint;
  to_id bigint := nullif(current_setting('crochet.ledger_unchecked_to', true), '')::bigint;
  bad record;
BEGIN
  -- One primary-key lookup per distinct journal and account (lateral, kept apart by OFFSET 0): as NOT EXISTS, the
  -- planner may hash the whole referenced table instead.
  SELECT a.journal_id, a.account_id, j.id IS NULL AS no_journal INTO bad
    FROM (SELECT DISTINCT journal_id, account_id FROM added_entries) a
    LEFT JOIN LATERAL (SELECT j.id FROM ledger_journals j WHERE j.id = a.journal_id OFFSET 0) j ON true
    LEFT JOIN LATERAL (SELECT c.id FROM ledger_accounts c WHERE c.id = a.account_id OFFSET 0) c ON true
   WHERE j.id IS NULL OR c.id IS NULL
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'ledger_entries: % % does not exist',
      CASE WHEN bad.no_journal THEN 'journal' ELSE 'account' END,
      CASE WHEN bad.no_journal THEN bad.journal_id ELSE bad.account_id END
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  SELECT t.journal_id, s.n, s.total INTO bad
    FROM (SELECT DISTINCT a.journal_id FROM added_entries a
           WHERE from_id IS NULL OR a.journal_id NOT BETWEEN from_id AND to_id) t
   CROSS JOIN LATERAL (SELECT count(*) AS n, coalesce(sum(e.amount_atomic), 0) AS total
                         FROM ledger_entries e WHERE e.journal_id = t.journal_id) s
   WHERE s.n < 2 OR s.total <> 0
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'journal % is not balanced (% entries summing to %)', bad.journal_id, bad.n, bad.total
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$;
