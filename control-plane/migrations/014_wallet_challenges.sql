-- Wallet sign-in challenges now serve two purposes (DESIGN §3.1, §3.9): 'recover' (whoever signs gets a new key for
-- the wallet's agent) and 'verify' (the agent that asked, with its API key, adds the wallet and keeps its keys). One
-- table keeps one nonce space and one way to consume a challenge; a 'verify' challenge is bound to its agent.
ALTER TABLE recovery_challenges RENAME TO wallet_challenges;
ALTER TABLE wallet_challenges RENAME CONSTRAINT recovery_challenges_pkey TO wallet_challenges_pkey;
ALTER TABLE wallet_challenges
  ADD COLUMN purpose text NOT NULL DEFAULT 'recover' CHECK (purpose IN ('recover', 'verify')),
  ADD COLUMN agent_id text REFERENCES agents (id),
  ADD CONSTRAINT wallet_challenges_agent_check CHECK ((purpose = 'verify') = (agent_id IS NOT NULL));
ALTER TABLE wallet_challenges ALTER COLUMN purpose DROP DEFAULT;
-- Expired challenges are pruned as new ones are issued.
CREATE INDEX wallet_challenges_expiry_idx ON wallet_challenges (expires_at);
