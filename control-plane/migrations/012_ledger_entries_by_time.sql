-- The operator dashboard sums an agent's entries for today and in total on every refresh: an index by account and
-- time that carries the amount answers both with an index-only scan instead of visiting every entry's row.
CREATE INDEX ledger_entries_account_time_idx ON ledger_entries (account_id, created_at) INCLUDE (amount_atomic);
