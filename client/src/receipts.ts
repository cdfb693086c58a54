import { createLocalJWKSet, decodeJwt, type JWK, jwtVerify } from 'jose';

/**
 * Receipts (DESIGN §3.4): a compact JWS (EdDSA) the gateway signs for every paid call, verifiable by anyone with the
 * keys at `/.well-known/jwks.json`. The header receipt (`X-Crochet-Receipt`) covers the request; the full receipt
 * (`GET /api/v1/gateway-requests/:id/receipt`) adds the status and the SHA-256 of the answer as it was streamed.
 */

export const RECEIPT_TYPE = 'crochet-receipt+jwt';

export interface ReceiptClaims {
  iss: string;
  /** The gateway request id (gr_…). */
  sub: string;
  listing_id: string;
  amount: string;
  asset: string;
  network: string;
  payment_proof: { rail: string; payer: string; tx: string | null; proof_ids: string[] };
  request_body_sha256: string;
  status?: number;
  response_body_sha256?: string;
  response_bytes?: number;
  iat: number;
  exp: number;
}

export type ReceiptVerdict =
  | { valid: true; kid: string; claims: ReceiptClaims; problems: [] }
  | { valid: false; reason: string; claims: ReceiptClaims | null; problems: string[] };

export interface ReceiptExpectations {
  /** The gateway request the receipt must name. */
  requestId?: string;
  /** Lowercase hex SHA-256 of the request body sent. */
  requestBodySha256?: string;
  /** Lowercase hex SHA-256 of the answer received (full receipts only). */
  responseBodySha256?: string;
}

/** Checks the signature against the JWKS, the type, expiry, and any expectation given; a verdict, never a throw. */
export const verifyReceiptWith = async (
  jws: string,
  jwks: { keys: readonly object[] },
  expect: ReceiptExpectations = {},
): Promise<ReceiptVerdict> => {
  let claims: ReceiptClaims | null = null;
  try {
    claims = decodeJwt(jws) as unknown as ReceiptClaims;
  } catch {}
  try {
    const { payload, protectedHeader } = await jwtVerify(jws, createLocalJWKSet({ keys: jwks.keys as JWK[] }), {
      algorithms: ['EdDSA'],
      typ: RECEIPT_TYPE,
      requiredClaims: ['iss', 'sub', 'iat', 'exp'],
    });
    const verified = payload as unknown as ReceiptClaims;
    const problems: string[] = [];
    if (expect.requestId && verified.sub !== expect.requestId) problems.push('names another gateway request');
    if (expect.requestBodySha256 && verified.request_body_sha256 !== expect.requestBodySha256) {
      problems.push('request body hash differs from what was sent');
    }
    if (expect.responseBodySha256 && verified.response_body_sha256 !== expect.responseBodySha256) {
      problems.push('response body hash differs from what was received');
    }
    if (problems.length > 0) return { valid: false, reason: problems.join('; '), claims: verified, problems };
    return { valid: true, kid: protectedHeader.kid ?? '', claims: verified, problems: [] };
  } catch (error) {
    const reason = (error as { code?: string }).code ?? String(error);
    return { valid: false, reason, claims, problems: [reason] };
  }
};
