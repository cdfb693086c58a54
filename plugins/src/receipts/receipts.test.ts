import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import {
  createReceiptSigner,
  decodeReceipt,
  type FullReceiptClaims,
  type HeaderReceiptClaims,
  parseReceiptKeys,
  publicReceiptJwks,
  RECEIPT_TYPE,
  type ReceiptPrivateJwk,
  verifyReceipt,
} from './index.js';

const newKey = async (kid: string): Promise<ReceiptPrivateJwk> => {
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  return { ...(await exportJWK(privateKey)), kid } as ReceiptPrivateJwk;
};

const claims: HeaderReceiptClaims = {
  iss: 'https://gateway.test',
  sub: 'gr_01J00000000000000000000000',
  listing_id: 'lst_01J00000000000000000000000',
  amount: '10000',
  asset: 'EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v',
  network: 'solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp',
  payment_proof: { rail: 'solana-transfer', payer: 'Buyer111', tx: 'sig1', proof_ids: ['sol:sig1'] },
  request_body_sha256: 'a'.repeat(64),
};
const full: FullReceiptClaims = { ...claims, status: 200, response_body_sha256: 'b'.repeat(64), response_bytes: 12 };

/** Replaces the payload segment of a JWS, keeping its header and signature. */
const withPayload = (jws: string, payload: object): string => {
  const [header, , signature] = jws.split('.');
  return `${header}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${signature}`;
};

describe('receipt keys', () => {
  it('accepts private Ed25519 JWKs with distinct kids and publishes only their public parts', async () => {
    const [a, b] = [await newKey('a'), await newKey('b')];
    const parsed = parseReceiptKeys(JSON.stringify([a, b]));
    expect(parsed).toEqual({ ok: true, keys: [a, b] });
    const { keys } = publicReceiptJwks([a, b]);
    expect(keys.map((k) => k.kid)).toEqual(['a', 'b']);
    for (const key of keys) expect(key).not.toHaveProperty('d');
    expect(keys[0]).toEqual({ kty: 'OKP', crv: 'Ed25519', kid: 'a', x: a.x, alg: 'EdDSA', use: 'sig' });
  });

  it('refuses what would sign receipts nobody can verify', async () => {
    const [a, b] = [await newKey('a'), await newKey('b')];
    const problem = (value: unknown) => {
      const parsed = parseReceiptKeys(typeof value === 'string' ? value : JSON.stringify(value));
      return parsed.ok ? null : parsed.problem;
    };
    expect(problem('not json')).toMatch(/JSON array/);
    expect(problem([])).toMatch(/non-empty/);
    expect(problem([{ ...a, kid: undefined }])).toMatch(/kid/);
    expect(problem([a, { ...b, kid: 'a' }])).toMatch(/twice/);
    expect(problem([{ ...a, d: undefined }])).toMatch(/private/);
    expect(problem([{ ...a, d: b.d }])).toMatch(/does not match/);
    expect(problem([{ ...a, crv: 'P-256' }])).toMatch(/Ed25519/);
  });
});

describe('receipts', () => {
  it('sign header and full claims that verify with the JWKS', async () => {
    const key = await newKey('k1');
    const signer = await createReceiptSigner([key], { ttlSeconds: 3600 });
    const jwks = publicReceiptJwks([key]);
    const header = await verifyReceipt(await signer.signHeaderReceipt(claims), jwks, { issuer: claims.iss });
    expect(header).toMatchObject({ valid: true, kid: 'k1', claims });
    if (!header.valid) throw new Error('unreachable');
    expect(header.claims.exp - header.claims.iat).toBe(3600);
    const jws = await signer.signFullReceipt(full);
    expect(await verifyReceipt(jws, jwks)).toMatchObject({ valid: true, claims: full });
    expect(decodeReceipt(jws)).toMatchObject(full);
    expect(JSON.parse(Buffer.from(jws.split('.')[0]!, 'base64url').toString())).toEqual({
      alg: 'EdDSA',
      kid: 'k1',
      typ: RECEIPT_TYPE,
    });
  });

  it('fail when any claim is changed, or signed by a key not in the JWKS', async () => {
    const [key, stranger] = [await newKey('k1'), await newKey('k1')];
    const jwks = publicReceiptJwks([key]);
    const jws = await (await createReceiptSigner([key])).signFullReceipt(full);
    const payload = decodeReceipt(jws) as unknown as Record<string, unknown>;
    for (const [field, value] of Object.entries({
      sub: 'gr_other',
      amount: '1',
      listing_id: 'lst_other',
      request_body_sha256: 'c'.repeat(64),
      response_body_sha256: 'c'.repeat(64),
      status: 500,
      payment_proof: { ...full.payment_proof, tx: 'sig2' },
    })) {
      const verdict = await verifyReceipt(withPayload(jws, { ...payload, [field]: value }), jwks);
      expect(verdict, field).toMatchObject({ valid: false, reason: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
    }
    // Same kid, other key: the signature does not match the published one.
    const forged = await (await createReceiptSigner([stranger])).signFullReceipt({ ...full, amount: '1' });
    expect(await verifyReceipt(forged, jwks)).toMatchObject({ valid: false });
    const unknown = await (await createReceiptSigner([await newKey('k2')])).signFullReceipt(full);
    expect(await verifyReceipt(unknown, jwks)).toMatchObject({ valid: false, reason: 'ERR_JWKS_NO_MATCHING_KEY' });
  });

  it('fail once expired, with another issuer, or as another kind of JWT', async () => {
    const key = await newKey('k1');
    const jwks = publicReceiptJwks([key]);
    const jws = await (await createReceiptSigner([key], { ttlSeconds: 60 })).signHeaderReceipt(claims);
    const later = new Date(Date.now() + 120_000);
    expect(await verifyReceipt(jws, jwks, { currentDate: later })).toMatchObject({
      valid: false,
      reason: 'ERR_JWT_EXPIRED',
    });
    expect(await verifyReceipt(jws, jwks, { issuer: 'https://elsewhere.test' })).toMatchObject({ valid: false });
    const { importJWK } = await import('jose');
    const plainJwt = await new SignJWT({ ...claims })
      .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(await importJWK(key, 'EdDSA'));
    expect(await verifyReceipt(plainJwt, jwks)).toMatchObject({ valid: false });
  });

  it('rotate: the first key signs, receipts of the previous one verify while it is published', async () => {
    const [previous, current] = [await newKey('old'), await newKey('new')];
    const before = await (await createReceiptSigner([previous])).signHeaderReceipt(claims);
    const signer = await createReceiptSigner([current, previous]);
    expect(signer.kid).toBe('new');
    const after = await signer.signHeaderReceipt(claims);
    const both = publicReceiptJwks([current, previous]);
    expect(await verifyReceipt(after, both)).toMatchObject({ valid: true, kid: 'new' });
    expect(await verifyReceipt(before, both)).toMatchObject({ valid: true, kid: 'old' });
    expect(await verifyReceipt(before, publicReceiptJwks([current]))).toMatchObject({ valid: false });
  });
});
