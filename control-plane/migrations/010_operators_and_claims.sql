-- §3.7 humans: operator accounts, the agents they claimed, and the one-time claim codes agents hand them.

CREATE TABLE operators (
  id            text PRIMARY KEY,             -- op_…
  email         text NOT NULL UNIQUE CHECK (email = lower(btrim(email)) AND email <> ''),
  password_hash text NOT NULL,                -- scrypt$N$r$p$salt$key (src/operators/passwords.ts)
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

-- An agent belongs to at most one operator: the agent is the key.
CREATE TABLE operator_agents (
  agent_id    text PRIMARY KEY REFERENCES agents (id),
  operator_id text NOT NULL REFERENCES operators (id),
  claimed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operator_agents_operator_idx ON operator_agents (operator_id, claimed_at, agent_id);

-- Only a hash of the code is kept, so a database read does not hand out claimable codes. A code is used at most once
-- (used_at is set by a single conditional UPDATE); issuing a new code ends the agent's earlier ones.
CREATE TABLE agent_claim_codes (
  code_hash   text PRIMARY KEY,               -- sha256 hex of the code's 8 canonical characters
  agent_id    text NOT NULL REFERENCES agents (id),
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz,
  used_by     text REFERENCES operators (id),
  CHECK ((used_at IS NULL) = (used_by IS NULL))
);
CREATE INDEX agent_claim_codes_open_idx ON agent_claim_codes (agent_id) WHERE used_at IS NULL;
