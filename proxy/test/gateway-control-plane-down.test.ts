import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProxyServer } from '../src/app.js';
import {
  eventually,
  expectApiError,
  gatewayCall,
  rawRequest,
  startSeller,
  startTestStack,
  type TestSeller,
  type TestStack,
} from './stack.js';

let stack: TestStack;
let proxy: ProxyServer;
let seller: TestSeller;
let buyerKey: string;
let listingId: string;

beforeAll(async () => {
  stack = await startTestStack();
  proxy = stack.proxies[0]!;
  seller = await startSeller();
  const sellerAgent = await stack.plane.register('seller');
  buyerKey = (await stack.plane.register('buyer')).apiKey;
  listingId = (await stack.plane.createListing(sellerAgent.apiKey, { private_endpoint_url: `${seller.url}/echo` }))
    .listing.id;
});
afterAll(async () => {
  await seller.close();
  // `stop()` closes the plane's app a second time; fastify resolves a repeated close.
  await stack.stop();
});

describe('the control plane goes down', () => {
  it('leaves gateway calls working from memory while the rest of the API answers 503', async () => {
    // --- warm-up: both paths work through the proxy
    await eventually(async () => {
      const res = await gatewayCall(proxy, listingId, buyerKey, { body: { warm: true } });
      expect(res.status, res.text).toBe(200);
    });
    const me = await rawRequest(proxy.url, '/api/v1/me', {
      method: 'GET',
      headers: { authorization: `Bearer ${buyerKey}` },
    });
    expect(me.status, me.text).toBe(200);

    // --- outage: the control plane stops listening (its PostgreSQL and Redis stay up)
    await stack.plane.app.close();

    for (let i = 0; i < 5; i++) {
      const res = await gatewayCall(proxy, listingId, buyerKey, { body: { during: i } });
      expect(res.status, res.text).toBe(200);
      expect(res.json).toEqual({ echo: JSON.stringify({ during: i }) });
      expect(res.headers['x-crochet-request-id']).toMatch(/^gr_/);
    }

    for (const [method, path] of [
      ['GET', '/api/v1/me'],
      ['GET', '/api/v1/listings'],
      ['POST', '/api/v1/keys'],
    ] as const) {
      const res = await rawRequest(proxy.url, path, {
        method,
        headers: { authorization: `Bearer ${buyerKey}`, 'content-type': 'application/json' },
        ...(method === 'POST' ? { body: '{}' } : {}),
      });
      expectApiError(res, 503, 'CONTROL_PLANE_UNAVAILABLE');
      expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    }

    const ready = await rawRequest(proxy.url, '/readyz', { method: 'GET' });
    expect(ready.status).toBe(200);
  });
});
