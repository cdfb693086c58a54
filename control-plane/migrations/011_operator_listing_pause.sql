-- §3.7: when an operator paused a listing. While it is set the seller agent cannot change the listing's status (its
-- PATCH answers LISTING_PAUSED_BY_OPERATOR) until the operator resumes it: humans must be able to stop their agents.
-- It is kept on archiving (an archived listing never changes again), so it may sit beside 'archived' too.
ALTER TABLE listings
  ADD COLUMN operator_paused_at timestamptz,
  ADD CONSTRAINT listings_operator_pause_status CHECK (operator_paused_at IS NULL OR status IN ('paused', 'archived'));
