import { createPrivateKey, createPublicKey } from 'node:crypto';
import { createLocalJWKSet, decodeJwt, importJWK, type JWK, type JWTPayload, jwtVerify, SignJWT } from 'jose';

/**
 * Receipts (DESIGN §3.4): what the gateway signs for a paid call, so that a buyer can prove to anyone — without
 * asking Crochet — which request it paid for, with which payment, and what it got back. A receipt is a compact JWS
 * (a JWT, RFC 7519) signed with EdDSA over Ed25519 (RFC 8037); its `kid` names a key of `/.well-known/jwks.json`.
 *
 * Two receipts per call. The header receipt (`X-Crochet-Receipt` response header) is signed before the answer
 * streams, so it cannot cover the response body. The full receipt adds the status and the hash and size of the
 * body as the gateway streamed it: sent as an HTTP trailer when the client asked for trailers (`TE: trailers`), and
 * kept for `GET /api/v1/gateway-requests/:id/receipt` in every case.
 */

/** The JOSE `typ` of every receipt (RFC 8725 §3.11: explicit typing keeps a receipt from passing for another JWT). */
export const RECEIPT_TYPE = 'crochet-receipt+jwt';
/** Default lifetime of a receipt (`exp` − `iat`): 30 days. */
export const RECEIPT_TTL_SECONDS_DEFAULT = 30 * 86_400;

/** The payment a receipt names: enough to find it on chain or in the buyer's history. */
export interface ReceiptPaymentProof {
  /** The rail that verified it: solana-transfer, evm-transfer, relay or x402-exact. */
  rail: string;
  /** The address that paid. */
  payer: string;
  /** The transaction that moved the funds, when known at signing time (x402 settled after the answer: null). */
  tx: string | null;
  /** Every id the gateway consumed for this payment (a transaction, a Relay request id, an x402 authorization). */
  proof_ids: string[];
}

/** Claims of the header receipt; `iat`, `exp` and the `kid` header are added by the signer. */
export interface HeaderReceiptClaims {
  /** The public base URL of the gateway that signed it. */
  iss: string;
  /** The gateway request id (`gr_…`, the `X-Crochet-Request-Id` of the answer). */
  sub: string;
  listing_id: string;
  /** What the verified payment carried, in atomic units of `asset` (a decimal string). */
  amount: string;
  /** The asset paid (token mint or contract address). */
  asset: string;
  /** CAIP-2 id of the network the payment was made on. */
  network: string;
  payment_proof: ReceiptPaymentProof;
  /** Lowercase hex SHA-256 of the request body the gateway forwarded (the seller sees the same hash). */
  request_body_sha256: string;
}

/** Claims of the full receipt: the header receipt's plus the answer as the gateway streamed it. */
export interface FullReceiptClaims extends HeaderReceiptClaims {
  /** The HTTP status the buyer received. */
  status: number;
  /** Lowercase hex SHA-256 of the response body bytes as sent (after any content coding the seller applied). */
  response_body_sha256: string;
  response_bytes: number;
}

/** A verified receipt's payload: its claims plus the registered ones the signer added. */
export type ReceiptPayload = (HeaderReceiptClaims | FullReceiptClaims) & { iat: number; exp: number };

/** A private Ed25519 JWK with a `kid`, as `CROCHET_RECEIPT_KEYS` holds them. */
export interface ReceiptPrivateJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  kid: string;
  x: string;
  d: string;
}

/** A key as `/.well-known/jwks.json` publishes it. */
export interface ReceiptPublicJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  kid: string;
  x: string;
  alg: 'EdDSA';
  use: 'sig';
}

const KID = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * Parses `CROCHET_RECEIPT_KEYS`: a JSON array of private Ed25519 JWKs, each with a distinct `kid`; the first signs,
 * the others are previous keys still published. Returns a problem as a value (the config readers report it).
 */
export const parseReceiptKeys = (
  text: string,
): { ok: true; keys: ReceiptPrivateJwk[] } | { ok: false; problem: string } => {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, problem: 'must be a JSON array of private Ed25519 JWKs' };
  }
  if (!Array.isArray(value) || value.length === 0) {
    return { ok: false, problem: 'must be a non-empty JSON array of private Ed25519 JWKs (first = signing key)' };
  }
  const keys: ReceiptPrivateJwk[] = [];
  for (const [i, item] of value.entries()) {
    const jwk = item as Record<string, unknown> | null;
    if (typeof jwk !== 'object' || jwk === null || jwk['kty'] !== 'OKP' || jwk['crv'] !== 'Ed25519') {
      return { ok: false, problem: `key ${i} is not an OKP/Ed25519 JWK` };
    }
    const { kid, x, d } = jwk;
    if (typeof kid !== 'string' || !KID.test(kid)) {
      return { ok: false, problem: `key ${i} needs a kid of 1-64 letters, digits, _ . -` };
    }
    if (keys.some((k) => k.kid === kid)) return { ok: false, problem: `kid ${kid} appears twice` };
    if (typeof x !== 'string' || typeof d !== 'string') {
      return { ok: false, problem: `key ${kid} must be a private JWK (with x and d)` };
    }
    // The private part must be the one of the published public part, or every receipt would fail to verify.
    try {
      const derived = createPublicKey(createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', x, d }, format: 'jwk' }));
      if (derived.export({ format: 'jwk' }).x !== x) return { ok: false, problem: `key ${kid}: d does not match x` };
    } catch {
      return { ok: false, problem: `key ${kid} is not a valid Ed25519 key` };
    }
    keys.push({ kty: 'OKP', crv: 'Ed25519', kid, x, d });
  }
  return { ok: true, keys };
};

/** The public half of each key, as the JWKS document lists them. */
export const publicReceiptJwks = (keys: readonly ReceiptPrivateJwk[]): { keys: ReceiptPublicJwk[] } => ({
  keys: keys.map(({ kid, x }) => ({ kty: 'OKP', crv: 'Ed25519', kid, x, alg: 'EdDSA', use: 'sig' })),
});

export interface ReceiptSigner {
  /** The `kid` receipts are signed with (the first configured key). */
  readonly kid: string;
  signHeaderReceipt(claims: HeaderReceiptClaims): Promise<string>;
  signFullReceipt(claims: FullReceiptClaims): Promise<string>;
}

/** A signer over the first of `keys` (the others only verify: they are published, never used to sign). */
export const createReceiptSigner = async (
  keys: readonly ReceiptPrivateJwk[],
  options: { ttlSeconds?: number } = {},
): Promise<ReceiptSigner> => {
  const current = keys[0];
  if (!current) throw new Error('createReceiptSigner needs at least one key');
  const privateKey = await importJWK(current as unknown as JWK, 'EdDSA');
  const ttlSeconds = options.ttlSeconds ?? RECEIPT_TTL_SECONDS_DEFAULT;
  const sign = (claims: HeaderReceiptClaims | FullReceiptClaims): Promise<string> => {
    const iat = Math.floor(Date.now() / 1000);
    // Object.assign, not `{ ...claims, iat, exp }`: V8's slow path for a leading spread (5 µs a receipt on Node 20).
    return new SignJWT(Object.assign({}, claims, { iat, exp: iat + ttlSeconds }) as unknown as JWTPayload)
      .setProtectedHeader({ alg: 'EdDSA', kid: current.kid, typ: RECEIPT_TYPE })
      .sign(privateKey);
  };
  return { kid: current.kid, signHeaderReceipt: sign, signFullReceipt: sign };
};

export type ReceiptVerdict = { valid: true; kid: string; claims: ReceiptPayload } | { valid: false; reason: string };

/**
 * Checks a receipt against a JWKS (what `/.well-known/jwks.json` served): signature by a listed key, EdDSA only,
 * the receipt type, not expired, and (when given) the issuer. A changed claim, a key no longer listed or any other
 * failure is a verdict, not an exception.
 */
export const verifyReceipt = async (
  jws: string,
  jwks: { keys: readonly object[] },
  options: { issuer?: string; currentDate?: Date } = {},
): Promise<ReceiptVerdict> => {
  try {
    const { payload, protectedHeader } = await jwtVerify(jws, createLocalJWKSet({ keys: jwks.keys as JWK[] }), {
      algorithms: ['EdDSA'],
      typ: RECEIPT_TYPE,
      requiredClaims: ['iss', 'sub', 'iat', 'exp'],
      ...(options.issuer ? { issuer: options.issuer } : {}),
      ...(options.currentDate ? { currentDate: options.currentDate } : {}),
    });
    return { valid: true, kid: protectedHeader.kid ?? '', claims: payload as unknown as ReceiptPayload };
  } catch (error) {
    return { valid: false, reason: (error as { code?: string }).code ?? String(error) };
  }
};

/** A receipt's claims without checking its signature (for display; never trust them unverified). */
export const decodeReceipt = (jws: string): ReceiptPayload => decodeJwt(jws) as unknown as ReceiptPayload;
