-- The ledger write path, second pass (events consumer, DESIGN §3.5): per-row work on every journal that only a refund
-- needs, and a reference check that looked each entry's journal and account up as a pair.

-- reverses_journal_id: only refunds have one. Its UNIQUE constraint indexed every journal's NULL, and its foreign key
-- fired a trigger per journal. A partial unique index keeps "at most one reversal per journal" for refunds alone; the
-- reference is checked once per statement (below), as migration 019 does for entries: journals can be neither
-- deleted nor renumbered (append-only), so that the journal reversed exists when its refund is inserted is the whole
-- guarantee (SQLSTATE 23503, as the foreign key said).
CREATE UNIQUE INDEX ledger_journals_reverses_idx ON ledger_journals (reverses_journal_id)
  WHERE reverses_journal_id IS NOT NULL;
ALTER TABLE ledger_journals DROP CONSTRAINT ledger_journals_reverses_journal_id_key;
ALTER TABLE ledger_journals DROP CONSTRAINT ledger_journals_reverses_journal_id_fkey;

CREATE OR REPLACE FUNCTION ledger_journals_created() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  lo bigint;
  hi bigint;
  missing bigint;
  from_id bigint := nullif(current_setting('crochet.ledger_unchecked_from', true), '')::bigint;
  to_id bigint := nullif(current_setting('crochet.ledger_unchecked_to', true), '')::bigint;
BEGIN
  SELECT min(id), max(id) INTO lo, hi FROM created_journals;
  IF lo IS NULL THEN
    RETURN NULL;
  END IF;
  -- One primary-key lookup per journal reversed (lateral, kept apart by OFFSET 0, as in ledger_entries_balanced).
  SELECT c.reverses_journal_id INTO missing
    FROM (SELECT DISTINCT reverses_journal_id FROM created_journals WHERE reverses_journal_id IS NOT NULL) c
    LEFT JOIN LATERAL (SELECT j.id FROM ledger_journals j WHERE j.id = c.reverses_journal_id OFFSET 0) j ON true
   WHERE j.id IS NULL
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'ledger_journals: journal % reversed does not exist', missing
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  PERFORM set_config('crochet.ledger_unchecked_from', least(lo, from_id)::text, true),
          set_config('crochet.ledger_unchecked_to', greatest(hi, to_id)::text, true);
  RETURN NULL;
END $$;

-- Entries' references: each distinct journal and each distinct account looked up once (a payment batch of n calls:
-- about n journals and far fewer accounts), instead of both for every distinct pair (3n).
CREATE OR REPLACE FUNCTION ledger_entries_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  from_id bigint := nullif(current_setting('crochet.ledger_unchecked_from', true), '')::bigint;
  to_id bigint := nullif(current_setting('crochet.ledger_unchecked_to', true), '')::bigint;
  bad record;
BEGIN
  SELECT t.what, t.id INTO bad
    FROM (SELECT 'journal' AS what, a.journal_id AS id
            FROM (SELECT DISTINCT journal_id FROM added_entries) a
            LEFT JOIN LATERAL (SELECT j.id FROM ledger_journals j WHERE j.id = a.journal_id OFFSET 0) j ON true
           WHERE j.id IS NULL
          UNION ALL
          SELECT 'account', a.account_id
            FROM (SELECT DISTINCT account_id FROM added_entries) a
            LEFT JOIN LATERAL (SELECT c.id FROM ledger_accounts c WHERE c.id = a.account_id OFFSET 0) c ON true
           WHERE c.id IS NULL) t
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'ledger_entries: % % does not exist', bad.what, bad.id
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

