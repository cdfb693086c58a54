/**
 * Published test vectors of the request signature (DESIGN §3.3): inputs → the exact X-Crochet-Signature value.
 * Served at /signature-test-vectors.json and in /seller-onboarding; the gateway's signer and the seller verifier are
 * tested against them. The expected values were computed with `openssl dgst -sha256 [-hmac <secret>]`, not with
 * this project's code, so they check it.
 */

/** One vector: everything a seller sees, and the header the gateway sends for it. */
export interface SignatureTestVector {
  name: string;
  /** The listing's valid signing secrets, newest first; each is the HMAC key as its UTF-8 string (not decoded). */
  secrets: readonly string[];
  /** X-Crochet-Timestamp: unix seconds (not milliseconds). */
  timestamp: number;
  request_id: string;
  listing_id: string;
  /** The exact body bytes, as a UTF-8 string. */
  body: string;
  /** X-Crochet-Body-SHA256: lowercase hex SHA-256 of the body bytes. */
  body_sha256: string;
  /** What the HMAC covers: timestamp.request_id.listing_id.body_sha256. */
  canonical: string;
  /** X-Crochet-Signature. */
  expected_header: string;
}

const SECRET_NEW = 'crs_ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8';
const SECRET_OLD = 'crs_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8';
const TIMESTAMP = 1_767_225_600; // 2026-01-01T00:00:00Z
const REQUEST_ID = 'gr_01KDH3Q0000000000000000000';
const LISTING_ID = 'lst_01KDH3Q0000000000000000000';
const canonical = (bodySha256: string) => `${TIMESTAMP}.${REQUEST_ID}.${LISTING_ID}.${bodySha256}`;

const JSON_BODY_SHA256 = '6ae0f660046dadcf5fe8462c0e00a062db4c8d67be82f4098c5ea4208d19b076';
const EMPTY_BODY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const UTF8_BODY_SHA256 = '21a7d58770631310566c5ee4f33af0317c73d26cda57e09f1ddc1faf950b6472';

const base = { timestamp: TIMESTAMP, request_id: REQUEST_ID, listing_id: LISTING_ID };

export const SIGNATURE_TEST_VECTORS: readonly SignatureTestVector[] = Object.freeze([
  {
    name: 'one secret, JSON body',
    secrets: [SECRET_OLD],
    ...base,
    body: '{"q":1}',
    body_sha256: JSON_BODY_SHA256,
    canonical: canonical(JSON_BODY_SHA256),
    expected_header: 'v1=45182c93691871ceebfcc54386a3849de5d736cc69d9d6c36e403c37e4fc2f3f',
  },
  {
    name: 'empty body (e.g. a GET)',
    secrets: [SECRET_OLD],
    ...base,
    body: '',
    body_sha256: EMPTY_BODY_SHA256,
    canonical: canonical(EMPTY_BODY_SHA256),
    expected_header: 'v1=ed08cb9f1c7824a3fb0b41a482f0eb30c02aaae9edae1c67564526429c3853b3',
  },
  {
    name: 'non-ASCII body: the hash is over its UTF-8 bytes',
    secrets: [SECRET_OLD],
    ...base,
    body: '{"text":"héllo ✓"}',
    body_sha256: UTF8_BODY_SHA256,
    canonical: canonical(UTF8_BODY_SHA256),
    expected_header: 'v1=3114ae1f8a646c8dc6d5f101f84eae8a7edc55b57bbf2b6af3a5b7ac3b8c5cda',
  },
  {
    name: 'during a rotation: one entry per valid secret, the new one first',
    secrets: [SECRET_NEW, SECRET_OLD],
    ...base,
    body: '{"q":1}',
    body_sha256: JSON_BODY_SHA256,
    canonical: canonical(JSON_BODY_SHA256),
    expected_header:
      'v1=bea53647431bc6bf457a7caff56a909993f5116be8bfe001d65d4ac96940ea9f,' +
      'v1=45182c93691871ceebfcc54386a3849de5d736cc69d9d6c36e403c37e4fc2f3f',
  },
]);

/** The exact specification, as published with the vectors (plain text lines). */
export const SIGNATURE_SPEC = [
  'Request signature (every request the gateway forwards to your private endpoint):',
  '  X-Crochet-Timestamp: unix time in SECONDS (an integer as decimal digits, not milliseconds)',
  '  X-Crochet-Request-Id: gr_…    X-Crochet-Listing-Id: lst_…',
  '  X-Crochet-Body-SHA256: lowercase hex SHA-256 of the exact body bytes you receive (empty body: e3b0c442…b855)',
  '  canonical = timestamp + "." + request_id + "." + listing_id + "." + body_sha256   (UTF-8, no spaces, no newline)',
  '  X-Crochet-Signature: "v1=" + lowercase hex HMAC-SHA256(key, canonical), where key = the signing secret as its',
  '    UTF-8 string, "crs_" prefix included — do NOT base64-decode it.',
  '  During a secret rotation the header holds one v1= entry per valid secret, comma-separated, newest first; accept',
  '  the request when any entry matches one of your secrets. Ignore entries of other versions.',
  'Check: recompute body_sha256 from the bytes you received, recompute the HMAC, compare in constant time, and refuse',
  'timestamps more than 300 s from your clock (either way). X-Crochet-Test: 1 marks endpoint tests (not signed).',
] as const;
