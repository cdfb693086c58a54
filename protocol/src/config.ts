/**
 * The configuration the control plane publishes to the proxies (DESIGN §2). The control plane writes each entry to
 * Redis and announces every change with a notice; proxies validate entries with these checks when they load them
 * and freeze them, so nothing is validated again per request.
 *
 * Secrets inside (the private endpoint URL, signing secrets) are sealed with the data-plane key, which only the
 * control plane and the proxies hold: Redis never sees them in the clear.
 */

/** Version of the entry shapes below; a proxy refuses entries of another schema version. */
export const CONFIG_SCHEMA_VERSION = 1;

export interface ListingConfig {
  schema: typeof CONFIG_SCHEMA_VERSION;
  id: string;
  seller_id: string;
  status: 'active' | 'paused' | 'archived';
  pricing_model: 'free' | 'per_call';
  price_atomic: string;
  currency: string;
  /** Sealed private endpoint URL. */
  upstream_sealed: string;
  /** Sealed signing secrets that are valid now, newest first (two during a rotation overlap). */
  secrets_sealed: { key_id: string; sealed: string; expires_at: string | null }[];
  /** Requests per minute across all buyers; null: the operator default. */
  rate_limit_per_minute: number | null;
  body_limit_bytes: number;
  timeout_ms: number;
  /** `before_forward`: settle, then forward. `after_response`: verify, forward, settle only if the seller answered 2xx. */
  settlement_policy: 'before_forward' | 'after_response';
}

export interface KeyConfig {
  schema: typeof CONFIG_SCHEMA_VERSION;
  key_id: string;
  agent_id: string;
  status: 'active' | 'revoked';
}

export interface AgentConfig {
  schema: typeof CONFIG_SCHEMA_VERSION;
  id: string;
  status: 'active' | 'paused';
  /** Requests per minute for each of this agent's keys; null: the operator default. */
  rate_limit_per_minute: number | null;
  /** EVM wallets the agent proved control of (lowercase): direct EVM payments must come from one of them. */
  evm_wallets: string[];
  /** Most the agent may spend per UTC day on paid calls, in atomic USDC units; null: no cap. */
  daily_spend_cap_atomic: string | null;
}

/** One change in a notice: an entry set (value) or removed (null). */
export type ConfigChange =
  | { kind: 'listing'; id: string; value: ListingConfig | null }
  | { kind: 'key'; id: string; value: KeyConfig | null }
  | { kind: 'agent'; id: string; value: AgentConfig | null };

/** Published after every change; `reload` asks every proxy to load the whole snapshot again. */
export interface ConfigNotice {
  version: number;
  changes: ConfigChange[];
  reload?: boolean;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isString = (v: unknown): v is string => typeof v === 'string';
const isPositiveInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0;
const isPrefixed = (v: unknown, prefix: string): v is string => isString(v) && v.startsWith(prefix);

/** True when `v` is a ListingConfig a proxy can serve from. */
export const isListingConfig = (v: unknown): v is ListingConfig =>
  isObject(v) &&
  v['schema'] === CONFIG_SCHEMA_VERSION &&
  isPrefixed(v['id'], 'lst_') &&
  isPrefixed(v['seller_id'], 'agt_') &&
  ['active', 'paused', 'archived'].includes(v['status'] as string) &&
  ['free', 'per_call'].includes(v['pricing_model'] as string) &&
  isString(v['price_atomic']) &&
  /^[0-9]{1,20}$/.test(v['price_atomic']) &&
  isString(v['currency']) &&
  isString(v['upstream_sealed']) &&
  Array.isArray(v['secrets_sealed']) &&
  v['secrets_sealed'].every((s) => isObject(s) && isString(s['key_id']) && isString(s['sealed'])) &&
  (v['rate_limit_per_minute'] === null || isPositiveInt(v['rate_limit_per_minute'])) &&
  isPositiveInt(v['body_limit_bytes']) &&
  isPositiveInt(v['timeout_ms']) &&
  (v['settlement_policy'] === 'before_forward' || v['settlement_policy'] === 'after_response');

export const isKeyConfig = (v: unknown): v is KeyConfig =>
  isObject(v) &&
  v['schema'] === CONFIG_SCHEMA_VERSION &&
  isPrefixed(v['key_id'], 'key_') &&
  isPrefixed(v['agent_id'], 'agt_') &&
  (v['status'] === 'active' || v['status'] === 'revoked');

export const isAgentConfig = (v: unknown): v is AgentConfig =>
  isObject(v) &&
  v['schema'] === CONFIG_SCHEMA_VERSION &&
  isPrefixed(v['id'], 'agt_') &&
  (v['status'] === 'active' || v['status'] === 'paused') &&
  (v['rate_limit_per_minute'] === null || isPositiveInt(v['rate_limit_per_minute'])) &&
  Array.isArray(v['evm_wallets']) &&
  v['evm_wallets'].every(isString) &&
  (v['daily_spend_cap_atomic'] === null ||
    (isString(v['daily_spend_cap_atomic']) && /^[0-9]{1,20}$/.test(v['daily_spend_cap_atomic'])));
