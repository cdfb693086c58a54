import { createHash } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { createFundedWallet, type FundedWallet, transferUsdcWithMemo } from '@crochet/dev-chains';
import {
  createReceiptSigner,
  decodeReceipt,
  type ReceiptPrivateJwk,
  type ReceiptPublicJwk,
  verifyReceipt,
} from '@crochet/plugins';
import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProxyServer } from '../src/app.js';
import { createPaidListing, type PaymentStack, startPaymentStack } from './payment-stack.js';
import { eventually, startSeller, type TestSeller } from './stack.js';

/**
 * DESIGN §3.4 receipts, on a paid Solana call through the whole stack: the header receipt, the full receipt as an
 * HTTP trailer and from the API, the published JWKS, tampering, rotation, and no receipt for free calls.
 */

const newKey = async (kid: string): Promise<ReceiptPrivateJwk> => {
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  return { ...(await exportJWK(privateKey)), kid } as ReceiptPrivateJwk;
};

const ANSWER = Buffer.from(JSON.stringify({ answer: 'x'.repeat(5000) }));

let stack: PaymentStack;
let seller: TestSeller;
let paidListing: string;
let freeListing: string;
let buyerKey: string;
let wallet: FundedWallet;
let keys: { previous: ReceiptPrivateJwk; current: ReceiptPrivateJwk; retired: ReceiptPrivateJwk };

beforeAll(async () => {
  keys = { previous: await newKey('r-2024'), current: await newKey('r-2025'), retired: await newKey('r-2023') };
  // A rotation in progress: the control plane publishes the new key and the previous one; the proxy signs with
  // the new one (the first of its list).
  const rotated = JSON.stringify([keys.current, keys.previous]);
  stack = await startPaymentStack({
    proxyEnv: { CROCHET_RECEIPT_KEYS: rotated },
    planeEnv: { CROCHET_RECEIPT_KEYS: rotated },
  });
  // Chunked, in two writes: the answer's size is known only at its end.
  seller = await startSeller((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(ANSWER.subarray(0, 1000));
    setTimeout(() => res.end(ANSWER.subarray(1000)), 10);
  });
  const sellerAgent = await stack.plane.register('seller');
  buyerKey = (await stack.plane.register('buyer')).apiKey;
  paidListing = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/paid`, '0.01');
  const { listing } = await stack.plane.createListing(sellerAgent.apiKey, {
    pricing_model: 'free',
    private_endpoint_url: `${seller.url}/free`,
  });
  freeListing = listing.id;
  wallet = await createFundedWallet(stack.solana, { sol: 1, usdcAtomic: 1_000_000n });
}, 90_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  trailers: NodeJS.Dict<string>;
  body: Buffer;
}

/** node:http, so that `TE: trailers` is sent as given and the trailers can be read. */
const post = (base: string, path: string, headers: Record<string, string>, body: string): Promise<Answer> =>
  new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () =>
        resolve({ status: res.statusCode!, headers: res.headers, trailers: res.trailers, body: Buffer.concat(chunks) }),
      );
    });
    req.end(body);
  });

const REQUEST_BODY = '{"q":"receipt"}';

/** A paid call: the 402, a Solana transfer with its payment request id as memo, then the call with the proof. */
const paidCall = async (proxy: ProxyServer, headers: Record<string, string> = {}) => {
  const auth = { authorization: `Bearer ${buyerKey}` };
  const unpaid = await post(proxy.url, `/api/v1/gateway/${paidListing}`, auth, REQUEST_BODY);
  expect(unpaid.status).toBe(402);
  expect(unpaid.headers['x-crochet-receipt']).toBeUndefined();
  const paymentRequestId = JSON.parse(unpaid.body.toString()).payment.payment_request_id as string;
  const signature = await transferUsdcWithMemo(
    stack.solana,
    wallet.signer,
    stack.solanaPayTo,
    10_000n,
    paymentRequestId,
  );
  const answer = await post(
    proxy.url,
    `/api/v1/gateway/${paidListing}`,
    { ...auth, 'x-crochet-payment-tx': `${stack.solana.caip2}:${signature}`, ...headers },
    REQUEST_BODY,
  );
  expect(answer.status, answer.body.toString()).toBe(200);
  return { ...answer, signature, id: answer.headers['x-crochet-request-id'] as string };
};

const fetchJwks = async (): Promise<{ keys: ReceiptPublicJwk[] }> => {
  const res = await fetch(`${stack.proxies[0]!.url}/.well-known/jwks.json`);
  expect(res.status).toBe(200);
  expect(res.headers.get('cache-control')).toMatch(/max-age=\d+/);
  return (await res.json()) as { keys: ReceiptPublicJwk[] };
};

const sha256 = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex');

/** Replaces the payload segment of a JWS, keeping its header and signature. */
const withPayload = (jws: string, change: Record<string, unknown>): string => {
  const [header, payload, signature] = jws.split('.');
  const claims = { ...JSON.parse(Buffer.from(payload!, 'base64url').toString()), ...change };
  return `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}`;
};

describe('receipts of paid calls', () => {
  it('the header receipt verifies with the JWKS the proxy serves, and fails when any claim is changed', async () => {
    const answer = await paidCall(stack.proxies[0]!);
    expect(answer.body).toEqual(ANSWER);
    expect(answer.trailers).toEqual({}); // not asked for
    const jws = answer.headers['x-crochet-receipt'] as string;
    const jwks = await fetchJwks();

    // iss is the proxy's PUBLIC_BASE_URL (the test proxies keep the default).
    const verdict = await verifyReceipt(jws, jwks, { issuer: 'http://localhost:8080' });
    expect(verdict.valid, JSON.stringify(verdict)).toBe(true);
    if (!verdict.valid) return;
    expect(verdict.kid).toBe('r-2025');
    expect(verdict.claims).toMatchObject({
      sub: answer.id,
      listing_id: paidListing,
      amount: '10000',
      network: stack.solana.caip2,
      payment_proof: { rail: 'solana-transfer', payer: wallet.address, tx: answer.signature },
      request_body_sha256: sha256(REQUEST_BODY),
    });
    expect(verdict.claims).not.toHaveProperty('response_body_sha256');

    for (const change of [
      { sub: 'gr_01J00000000000000000000000' },
      { amount: '1' },
      { listing_id: 'lst_01J00000000000000000000000' },
      { request_body_sha256: sha256('other') },
      { payment_proof: { ...verdict.claims.payment_proof, tx: 'other' } },
      { exp: verdict.claims.exp + 86_400 },
    ]) {
      expect(await verifyReceipt(withPayload(jws, change), jwks), JSON.stringify(change)).toMatchObject({
        valid: false,
      });
    }
    // The same claims signed by a key of the right name that is not the published one.
    const impostor = await createReceiptSigner([await newKey('r-2025')]);
    const { iat: _iat, exp: _exp, ...claims } = verdict.claims;
    expect(await verifyReceipt(await impostor.signHeaderReceipt(claims), jwks)).toMatchObject({ valid: false });
  });

  it('with TE: trailers, the full receipt arrives as a trailer and is served afterwards by the API', async () => {
    const answer = await paidCall(stack.proxies[0]!, { te: 'trailers' });
    expect(answer.headers['transfer-encoding']).toBe('chunked');
    expect(answer.headers['content-length']).toBeUndefined();
    expect(answer.headers['trailer']).toMatch(/x-crochet-receipt/i);
    const full = answer.trailers['x-crochet-receipt']!;
    expect(full).toEqual(expect.any(String));
    const jwks = await fetchJwks();
    const verdict = await verifyReceipt(full, jwks);
    expect(verdict.valid, JSON.stringify(verdict)).toBe(true);
    if (!verdict.valid) return;
    expect(verdict.claims).toMatchObject({
      sub: answer.id,
      status: 200,
      response_body_sha256: sha256(answer.body),
      response_bytes: answer.body.length,
      request_body_sha256: sha256(REQUEST_BODY),
    });
    // The header receipt and the full one agree on what was paid for.
    const header = decodeReceipt(answer.headers['x-crochet-receipt'] as string);
    const { iat: _i, exp: _e, ...headerClaims } = header;
    expect(verdict.claims).toMatchObject(headerClaims);

    const served = await eventually(async () => {
      const res = await stack.plane.call('GET', `/api/v1/gateway-requests/${answer.id}/receipt`, { key: buyerKey });
      expect(res.status, res.text).toBe(200);
      return res.body.data;
    }, 10_000);
    expect(served.receipt).toBe(full);
    expect(served.claims).toEqual(decodeReceipt(full));
    expect(served.jwks_url).toBe(`${stack.plane.config.publicBaseUrl}/.well-known/jwks.json`);

    // Nobody but the buyer and the seller sees it.
    const stranger = (await stack.plane.register('stranger')).apiKey;
    const hidden = await stack.plane.call('GET', `/api/v1/gateway-requests/${answer.id}/receipt`, { key: stranger });
    expect([hidden.status, hidden.body.error.code]).toEqual([404, 'GATEWAY_REQUEST_NOT_FOUND']);
  });

  it('without trailers, the full receipt is still recorded from the streamed body', async () => {
    const answer = await paidCall(stack.proxies[0]!);
    const served = await eventually(async () => {
      const res = await stack.plane.call('GET', `/api/v1/gateway-requests/${answer.id}/receipt`, { key: buyerKey });
      expect(res.status, res.text).toBe(200);
      return res.body.data;
    }, 10_000);
    const verdict = await verifyReceipt(served.receipt, await fetchJwks());
    expect(verdict).toMatchObject({
      valid: true,
      claims: { sub: answer.id, status: 200, response_body_sha256: sha256(answer.body) },
    });
  });

  it('free calls carry no receipt', async () => {
    const answer = await post(
      stack.proxies[0]!.url,
      `/api/v1/gateway/${freeListing}`,
      { authorization: `Bearer ${buyerKey}`, te: 'trailers' },
      REQUEST_BODY,
    );
    expect(answer.status).toBe(200);
    expect(answer.headers['x-crochet-receipt']).toBeUndefined();
    expect(answer.headers['trailer']).toBeUndefined();
    expect(answer.trailers).toEqual({});
    const id = answer.headers['x-crochet-request-id'] as string;
    await eventually(async () => {
      const res = await stack.plane.call('GET', `/api/v1/gateway-requests/${id}`, { key: buyerKey });
      expect(res.body.data?.status, res.text).toBe('completed');
    }, 10_000);
    const res = await stack.plane.call('GET', `/api/v1/gateway-requests/${id}/receipt`, { key: buyerKey });
    expect([res.status, res.body.error.code]).toEqual([404, 'RECEIPT_NOT_AVAILABLE']);
  });

  it('rotation: the JWKS publishes the new and the previous key; a key no longer published fails', async () => {
    const jwks = await fetchJwks();
    expect(jwks.keys.map((k) => k.kid)).toEqual(['r-2025', 'r-2024']);
    for (const key of jwks.keys) expect(key).not.toHaveProperty('d');

    // A receipt signed before the rotation (previous key) still verifies while that key is published.
    const before = await createReceiptSigner([keys.previous]);
    const old = await before.signHeaderReceipt({
      iss: 'http://localhost:8080',
      sub: 'gr_01J00000000000000000000000',
      listing_id: paidListing,
      amount: '10000',
      asset: 'x',
      network: stack.solana.caip2,
      payment_proof: { rail: 'solana-transfer', payer: 'p', tx: 't', proof_ids: ['t'] },
      request_body_sha256: sha256(''),
    });
    expect(await verifyReceipt(old, jwks)).toMatchObject({ valid: true, kid: 'r-2024' });

    // A proxy still signing with a key the control plane no longer publishes: its receipts do not verify.
    const stale = await stack.addProxy({ CROCHET_RECEIPT_KEYS: JSON.stringify([keys.retired]) });
    const answer = await paidCall(stale);
    const verdict = await verifyReceipt(answer.headers['x-crochet-receipt'] as string, jwks);
    expect(verdict).toMatchObject({ valid: false, reason: 'ERR_JWKS_NO_MATCHING_KEY' });
  });
});
