-- Agents, their API keys and wallets; proof-of-work and wallet-recovery challenges; listings and their signing keys.

CREATE TABLE agents (
  id          text PRIMARY KEY,
  name        text NOT NULL,
  description text NOT NULL DEFAULT '',
  status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
  id           text PRIMARY KEY,
  agent_id     text NOT NULL REFERENCES agents (id),
  key_hash     text NOT NULL UNIQUE,          -- sha256 hex of the whole key; the key itself is never stored
  prefix       text NOT NULL,                 -- am_k_ + 8 characters, safe to show again
  name         text NOT NULL DEFAULT '',
  created_at   timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz,
  revoked_at   timestamptz
);
CREATE INDEX api_keys_agent_idx ON api_keys (agent_id);

CREATE TABLE wallets (
  chain       text NOT NULL CHECK (chain IN ('evm', 'solana')),
  address     text NOT NULL,                  -- normalized: EIP-55 for evm, base58 for solana
  agent_id    text NOT NULL REFERENCES agents (id),
  verified_at timestamptz,                    -- set once the agent proved control by signing (recovery)
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chain, address)
);
CREATE INDEX wallets_agent_idx ON wallets (agent_id);

CREATE TABLE pow_challenges (
  id         text PRIMARY KEY,
  purpose    text NOT NULL CHECK (purpose IN ('register', 'listing')),
  agent_id   text REFERENCES agents (id),    -- listing challenges are bound to the agent that asked
  salt       text NOT NULL,
  difficulty integer NOT NULL,
  expires_at timestamptz NOT NULL,
  used_at    timestamptz
);
CREATE INDEX pow_challenges_expiry_idx ON pow_challenges (expires_at);

CREATE TABLE recovery_challenges (
  nonce      text PRIMARY KEY,
  chain      text NOT NULL,
  address    text NOT NULL,
  message    text NOT NULL,
  expires_at timestamptz NOT NULL,
  used_at    timestamptz
);

-- array_to_string is only STABLE (it may depend on settings for other element types); for text[] it is immutable,
-- which a generated column needs.
CREATE FUNCTION crochet_tags_text(text[]) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT array_to_string($1, ' ') $$;

CREATE TABLE listings (
  id                  text PRIMARY KEY,
  seller_id           text NOT NULL REFERENCES agents (id),
  name                text NOT NULL,
  description         text NOT NULL,
  pricing_model       text NOT NULL CHECK (pricing_model IN ('free', 'per_call')),
  price_atomic        bigint NOT NULL DEFAULT 0 CHECK (price_atomic >= 0),
  currency            text NOT NULL DEFAULT 'USDC',
  status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'archived')),
  tags                text[] NOT NULL DEFAULT '{}',
  input_schema        jsonb,
  output_example      jsonb,
  endpoint_url_enc    text NOT NULL,          -- AES-256-GCM, see crypto-box.ts
  endpoint_scheme     text NOT NULL,
  endpoint_host       text NOT NULL,
  endpoint_updated_at timestamptz NOT NULL DEFAULT now(),
  fee_bps             integer CHECK (fee_bps BETWEEN 0 AND 10000),
  crochet_score       integer CHECK (crochet_score BETWEEN 0 AND 1000),
  verified            boolean NOT NULL DEFAULT false,
  review_count        integer NOT NULL DEFAULT 0,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  search              tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', name || ' ' || description || ' ' || crochet_tags_text(tags))
  ) STORED,
  CHECK ((pricing_model = 'free') = (price_atomic = 0))
);
CREATE INDEX listings_seller_idx ON listings (seller_id);
CREATE INDEX listings_search_idx ON listings USING gin (search);
CREATE INDEX listings_tags_idx ON listings USING gin (tags);

CREATE TABLE listing_signing_keys (
  id         text PRIMARY KEY,                -- sk_…, shown to the seller as key_id
  listing_id text NOT NULL REFERENCES listings (id),
  secret_enc text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz                      -- null: current; set when rotated out (end of the overlap window)
);
CREATE INDEX listing_signing_keys_listing_idx ON listing_signing_keys (listing_id, created_at DESC);
