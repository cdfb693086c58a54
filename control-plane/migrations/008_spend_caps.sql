-- An operator's daily spend cap per agent, in atomic USDC units (null: no cap). Pushed to the proxies in the agent's
-- config entry; the proxies count spend per agent and UTC day in Redis and refuse paid calls past the cap.
ALTER TABLE agents ADD COLUMN daily_spend_cap_atomic bigint CHECK (daily_spend_cap_atomic >= 0);
