import { verifyCrochetRequest } from '@crochet/plugins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProxyServer } from '../src/app.js';
import {
  expectApiError,
  gatewayCall,
  rawRequest,
  startSeller,
  startTestStack,
  type TestSeller,
  type TestStack,
} from './stack.js';

let stack: TestStack;
let seller: TestSeller;
let proxy: ProxyServer;
let buyerKey: string;
let listingId: string;
let signingSecret: string;

beforeAll(async () => {
  stack = await startTestStack();
  proxy = stack.proxies[0]!;
  seller = await startSeller((req, res, body) => {
    if (req.url!.startsWith('/svc/created')) {
      res.writeHead(201, {
        'content-type': 'application/json',
        'set-cookie': 'seller_session=abc; Path=/',
        location: `${seller.url}/internal`,
        'x-crochet-receipt': 'forged-receipt',
        'x-crochet-request-id': 'gr_forged_by_seller',
        connection: 'x-seller-hop',
        'x-seller-hop': 'hop-only',
        'x-seller-visible': 'yes',
        'payment-response': 'forged-settlement',
        'x-payment-response': 'forged-settlement-v1',
      });
      res.end(JSON.stringify({ created: true }));
      return;
    }
    if (req.url!.startsWith('/svc/missing')) {
      res.writeHead(404, { 'content-type': 'application/json', 'x-seller-visible': 'yes' });
      res.end(JSON.stringify({ seller_says: 'no such thing' }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ echo: body.toString('utf8') }));
  });
  const sellerAgent = await stack.plane.register('seller');
  const buyer = await stack.plane.register('buyer');
  buyerKey = buyer.apiKey;
  const created = await stack.plane.createListing(sellerAgent.apiKey, { private_endpoint_url: `${seller.url}/svc` });
  listingId = created.listing.id;
  signingSecret = created.signingSecret;
});
afterAll(async () => {
  await seller.close();
  await stack.stop();
});

describe("the buyer's request as the seller sees it", () => {
  it('carries no buyer credentials, cookies, payment proofs, hop-by-hop or forged X-Crochet-* headers', async () => {
    const res = await rawRequest(proxy.url, `/api/v1/gateway/${listingId}`, {
      headers: {
        authorization: `Bearer ${buyerKey}`,
        cookie: 'buyer_session=secret',
        'payment-signature': 'forged-payment-signature',
        'x-payment': 'forged-x-payment',
        'x-crochet-signature': 'v1=0000000000000000000000000000000000000000000000000000000000000000',
        'x-crochet-request-id': 'gr_forged',
        'x-crochet-listing-id': 'lst_forged',
        'x-crochet-timestamp': '1',
        'x-crochet-test': '1',
        connection: 'x-drop',
        'x-drop': 'listed-in-connection',
        'proxy-authorization': 'Basic cHJveHk6c2VjcmV0',
        'x-custom': 'kept',
        'content-type': 'application/json',
        accept: 'application/json',
      },
      body: JSON.stringify({ q: 'hygiene' }),
    });
    expect(res.status, res.text).toBe(200);
    const requestId = res.headers['x-crochet-request-id'];
    expect(requestId).toMatch(/^gr_/);
    expect(requestId).not.toBe('gr_forged');

    const arrived = seller.requests.at(-1)!;
    expect(arrived.url).toBe('/svc');
    for (const name of [
      'authorization',
      'cookie',
      'payment-signature',
      'x-payment',
      'x-drop',
      'proxy-authorization',
      'x-crochet-test',
    ]) {
      expect(arrived.headers[name], name).toBeUndefined();
    }
    expect(arrived.headers['connection']).not.toContain('x-drop');
    expect(arrived.headers['x-custom']).toBe('kept');
    expect(arrived.headers['content-type']).toBe('application/json');
    expect(arrived.headers['accept']).toBe('application/json');
    // The X-Crochet-* headers are the gateway's own, and they verify.
    expect(arrived.headers['x-crochet-request-id']).toBe(requestId);
    expect(arrived.headers['x-crochet-listing-id']).toBe(listingId);
    expect(arrived.headers['x-crochet-signature']).not.toContain('v1=0000');
    expect(verifyCrochetRequest(arrived.headers, arrived.body, { secrets: [signingSecret] })).toMatchObject({
      ok: true,
      requestId,
      listingId,
      test: false,
    });
    expect(arrived.body.toString('utf8')).toBe('{"q":"hygiene"}');
  });

  it('appends the sub-path and query to the endpoint path', async () => {
    const res = await gatewayCall(proxy, listingId, buyerKey, { subPath: '/a/b?x=1' });
    expect(res.status, res.text).toBe(200);
    expect(seller.requests.at(-1)!.url).toBe('/svc/a/b?x=1');
  });

  it.each(['GET', 'PUT', 'DELETE'])('passes %s through with its sub-path, query and (signed) body', async (method) => {
    const res = await rawRequest(proxy.url, `/api/v1/gateway/${listingId}/items/7?view=full`, {
      method,
      headers: { authorization: `Bearer ${buyerKey}`, 'content-type': 'application/json' },
      ...(method === 'GET' ? {} : { body: JSON.stringify({ method }) }),
    });
    expect(res.status, res.text).toBe(200);
    const arrived = seller.requests.at(-1)!;
    expect(arrived.method).toBe(method);
    expect(arrived.url).toBe('/svc/items/7?view=full');
    expect(arrived.body.toString('utf8')).toBe(method === 'GET' ? '' : JSON.stringify({ method }));
    expect(verifyCrochetRequest(arrived.headers, arrived.body, { secrets: [signingSecret] })).toMatchObject({
      ok: true,
    });
  });

  it('keeps percent-encoded characters in the sub-path encoded (an encoded ? starts no query)', async () => {
    const res = await gatewayCall(proxy, listingId, buyerKey, { subPath: '/a%3Fb%23c/d%20e?x=1' });
    expect(res.status, res.text).toBe(200);
    expect(seller.requests.at(-1)!.url).toBe('/svc/a%3Fb%23c/d%20e?x=1');
  });

  it.each([
    '/..',
    '/../admin',
    '/a/../../admin',
    '/%2e%2e/admin',
    '/a/%2E%2E',
    '/.',
    '/a%2F..%2Fadmin',
    '/a%5C..',
    '/a%2Fb',
    '/x%00y',
    '/a%0Ab',
    '/%7F',
  ])(
    'refuses the dot-segment, encoded-slash or control-character sub-path %s with 400 VALIDATION_FAILED',
    async (subPath) => {
      const before = seller.requests.length;
      const res = await gatewayCall(proxy, listingId, buyerKey, { subPath });
      expectApiError(res, 400, 'VALIDATION_FAILED');
      expect(seller.requests.length).toBe(before);
    },
  );
});

describe("the seller's response as the buyer sees it", () => {
  it('keeps status, body and ordinary headers; drops cookies, redirects, forged receipts and hop-by-hop headers', async () => {
    const res = await gatewayCall(proxy, listingId, buyerKey, { subPath: '/created' });
    expect(res.status, res.text).toBe(201);
    expect(res.json).toEqual({ created: true });
    expect(res.headers['x-seller-visible']).toBe('yes');
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers['set-cookie']).toBeUndefined();
    expect(res.headers['location']).toBeUndefined();
    expect(res.headers['x-crochet-receipt']).toBeUndefined();
    expect(res.headers['x-seller-hop']).toBeUndefined();
    expect(res.headers['payment-response']).toBeUndefined();
    expect(res.headers['x-payment-response']).toBeUndefined();
    expect(res.headers['connection'] ?? '').not.toContain('x-seller-hop');
    const requestId = res.headers['x-crochet-request-id'];
    expect(requestId).toMatch(/^gr_/);
    expect(requestId).toBe(seller.requests.at(-1)!.headers['x-crochet-request-id']);
  });

  it("passes the seller's own 404 through as the seller's answer, not a gateway error", async () => {
    const res = await gatewayCall(proxy, listingId, buyerKey, { subPath: '/missing' });
    expect(res.status).toBe(404);
    expect(res.json).toEqual({ seller_says: 'no such thing' });
    expect(res.headers['x-seller-visible']).toBe('yes');
    expect(res.headers['x-crochet-request-id']).toMatch(/^gr_/);
  });
});
