import { createHmac } from 'node:crypto';

/**
 * The gateway's request signature (DESIGN §3.3). Sellers verify it; both the gateway and the endpoint test sign
 * with these functions so there is one definition of the canonical string.
 */

/** Headers the gateway sets on every forwarded request. Lowercase, as Node presents them. */
export const SIGNATURE_HEADERS = Object.freeze({
  requestId: 'x-crochet-request-id',
  listingId: 'x-crochet-listing-id',
  timestamp: 'x-crochet-timestamp',
  bodySha256: 'x-crochet-body-sha256',
  signature: 'x-crochet-signature',
  test: 'x-crochet-test',
} as const);

/** Sellers reject a timestamp further than this from their clock. */
export const SIGNATURE_TOLERANCE_SECONDS = 300;

/** Signing secrets are `crs_` + 43 base64url characters (32 random bytes). */
export const SIGNING_SECRET_PREFIX = 'crs_';

/** The string the HMAC covers: `timestamp.request_id.listing_id.body_sha256`. */
export const canonicalString = (timestamp: number, requestId: string, listingId: string, bodySha256: string): string =>
  `${timestamp}.${requestId}.${listingId}.${bodySha256}`;

/** One `v1=<hex>` entry: HMAC-SHA256 keyed with the secret's UTF-8 bytes. */
export const signatureEntry = (secret: string, canonical: string): string =>
  `v1=${createHmac('sha256', secret).update(canonical, 'utf8').digest('hex')}`;

/** The `X-Crochet-Signature` value: one entry per valid secret, comma-separated (several during a rotation). */
export const signatureHeader = (secrets: readonly string[], canonical: string): string =>
  secrets.map((secret) => signatureEntry(secret, canonical)).join(',');
