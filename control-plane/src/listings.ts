import { randomBytes } from 'node:crypto';
import { checkEndpointUrl } from '@crochet/plugins';
import {
  ApiError,
  type Currency,
  fromAtomic,
  isCurrency,
  PRICE_ATOMIC_MAX,
  SIGNING_SECRET_PREFIX,
  toAtomic,
} from '@crochet/protocol';
import type { Deps } from './app.js';
import { type ScoreDetail, scoreView } from './score/view.js';

/** Listing rows, their API view, and the rules for prices and endpoint URLs. */

export interface ListingRow {
  id: string;
  seller_id: string;
  name: string;
  description: string;
  pricing_model: 'free' | 'per_call';
  price_atomic: string;
  currency: Currency;
  status: 'active' | 'paused' | 'archived';
  tags: string[];
  input_schema: unknown;
  output_example: unknown;
  crochet_score: number | null;
  verified: boolean;
  review_count: number;
  /** Read only where a statement adds LISTING_SCORE_COLUMN (score/view.ts); the score's components. */
  score_detail?: ScoreDetail | null;
  rate_limit_per_minute: number | null;
  body_limit_bytes: number;
  timeout_ms: number;
  settlement_policy: 'before_forward' | 'after_response';
  /** Set while the listing's operator holds it paused (DESIGN §3.7): the seller cannot change its status then. */
  operator_paused_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export const LISTING_COLUMNS =
  'id, seller_id, name, description, pricing_model, price_atomic, currency, status, tags, input_schema, ' +
  'output_example, crochet_score, verified, review_count, rate_limit_per_minute, body_limit_bytes, timeout_ms, ' +
  'settlement_policy, operator_paused_at, ' +
  'created_at, updated_at';

/** Who paused a listing: its operator (only they can resume it) or the seller agent; null unless paused. */
export const pausedBy = (row: { status: string; operator_paused_at: Date | null }): 'operator' | 'seller' | null =>
  row.status !== 'paused' ? null : row.operator_paused_at === null ? 'seller' : 'operator';

export const gatewayUrl = (publicBaseUrl: string, listingId: string): string =>
  `${publicBaseUrl}/api/v1/gateway/${listingId}`;

/** A listing as the API shows it; its owner also learns who paused it (`owner`). */
export const listingView = (row: ListingRow, publicBaseUrl: string, owner = false) => ({
  id: row.id,
  seller_id: row.seller_id,
  name: row.name,
  description: row.description,
  pricing_model: row.pricing_model,
  price: {
    amount: fromAtomic(BigInt(row.price_atomic), row.currency),
    currency: row.currency,
    amount_atomic: row.price_atomic,
  },
  status: row.status,
  ...(owner ? { paused_by: pausedBy(row) } : {}),
  gateway_url: gatewayUrl(publicBaseUrl, row.id),
  tags: row.tags,
  input_schema: row.input_schema ?? null,
  output_example: row.output_example ?? null,
  crochet_score: row.crochet_score,
  verified: row.verified,
  review_count: row.review_count,
  score: scoreView(row.crochet_score, row.verified, row.score_detail),
  gateway: {
    rate_limit_per_minute: row.rate_limit_per_minute,
    body_limit_bytes: row.body_limit_bytes,
    timeout_ms: row.timeout_ms,
    settlement_policy: row.settlement_policy,
  },
  created_at: row.created_at,
  updated_at: row.updated_at,
});

/** The atomic price of a listing for a pricing model and an optional price input; throws PRICE_INVALID otherwise. */
export const resolvePrice = (
  pricingModel: 'free' | 'per_call',
  price: { amount: string; currency?: string | undefined } | undefined,
): { atomic: bigint; currency: Currency } => {
  const currency = price?.currency ?? 'USDC';
  if (!isCurrency(currency))
    throw new ApiError('CURRENCY_UNSUPPORTED', { message: `Currency ${currency} is not supported.` });
  if (pricingModel === 'free') {
    if (price !== undefined && toAtomic(price.amount, currency) !== 0n) {
      throw new ApiError('PRICE_INVALID', { message: 'A free listing takes no price (or a price of "0").' });
    }
    return { atomic: 0n, currency };
  }
  if (price === undefined) throw new ApiError('PRICE_INVALID', { message: 'A per_call listing needs a price.' });
  const atomic = toAtomic(price.amount, currency);
  if (atomic === null || atomic <= 0n || atomic > PRICE_ATOMIC_MAX) {
    throw new ApiError('PRICE_INVALID', {
      message: `price.amount must be a decimal string between 0.000001 and ${fromAtomic(PRICE_ATOMIC_MAX, currency)}.`,
    });
  }
  return { atomic, currency };
};

/** Applies the SSRF rules to a private endpoint URL being saved; returns what may be stored beside the ciphertext. */
export const acceptEndpointUrl = async (
  raw: string,
  deps: Pick<Deps, 'config' | 'lookup'>,
): Promise<{ url: string; scheme: string; host: string }> => {
  const check = await checkEndpointUrl(raw, {
    allowPrivate: deps.config.allowPrivateEndpoints,
    ...(deps.lookup ? { lookup: deps.lookup } : {}),
  });
  // URL.host keeps IPv6 brackets and drops a default port: "[2001:db8::1]:8443", "api.example.com".
  if (check.ok) return { url: check.url.href, scheme: check.scheme, host: check.url.host };
  switch (check.reason) {
    case 'forbidden_address':
      throw new ApiError('ENDPOINT_URL_FORBIDDEN', { message: check.message });
    case 'unresolvable':
      throw new ApiError('ENDPOINT_UNRESOLVABLE', { message: check.message });
    default:
      throw new ApiError('ENDPOINT_URL_INVALID', { message: check.message });
  }
};

export const newSigningSecret = (): string => `${SIGNING_SECRET_PREFIX}${randomBytes(32).toString('base64url')}`;

/** Encryption contexts: a sealed value opens only in the row and field it was sealed for. */
export const endpointUrlContext = (listingId: string): string => `listing:${listingId}:endpoint_url`;
export const signingKeyContext = (listingId: string, keyId: string): string =>
  `listing:${listingId}:signing_key:${keyId}`;
