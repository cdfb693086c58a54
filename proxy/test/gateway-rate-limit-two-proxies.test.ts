import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProxyServer } from '../src/app.js';
import {
  eventually,
  expectApiError,
  gatewayCall,
  type RawResponse,
  startSeller,
  startTestStack,
  type TestSeller,
  type TestStack,
} from './stack.js';

let stack: TestStack;
let seller: TestSeller;
let sellerKey: string;

beforeAll(async () => {
  stack = await startTestStack({ proxies: 2 });
  seller = await startSeller();
  sellerKey = (await stack.plane.register('seller')).apiKey;
});
afterAll(async () => {
  await seller.close();
  await stack.stop();
});

/** `count` calls one after the other, alternating between `proxies`. */
const alternate = async (proxies: ProxyServer[], count: number, listingId: string, apiKey: string) => {
  const results: RawResponse[] = [];
  for (let i = 0; i < count; i++) results.push(await gatewayCall(proxies[i % proxies.length]!, listingId, apiKey));
  return results;
};

const expectLimited = (results: RawResponse[], allowed: number, limit: number) => {
  const ok = results.filter((r) => r.status === 200);
  const limited = results.filter((r) => r.status !== 200);
  expect(ok).toHaveLength(allowed);
  expect(limited).toHaveLength(results.length - allowed);
  // The allowance is spent first: every call after it is refused.
  expect(results.slice(0, allowed).every((r) => r.status === 200)).toBe(true);
  for (const res of ok) {
    expect(res.headers['ratelimit-limit']).toBe(String(limit));
    expect(Number(res.headers['ratelimit-remaining'])).toBeGreaterThanOrEqual(0);
  }
  for (const res of limited) {
    expectApiError(res, 429, 'RATE_LIMITED');
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(res.headers['ratelimit-limit']).toBe(String(limit));
    expect(res.headers['ratelimit-remaining']).toBe('0');
    expect(Number(res.headers['ratelimit-reset'])).toBeGreaterThanOrEqual(1);
  }
};

describe('rate limits shared by all proxies', () => {
  it("holds a listing's limit across two proxies", async () => {
    const [a, b] = stack.proxies as [ProxyServer, ProxyServer];
    const { listing } = await stack.plane.createListing(sellerKey, { private_endpoint_url: `${seller.url}/echo` });
    const patched = await stack.plane.call('PATCH', `/api/v1/listings/${listing.id}`, {
      key: sellerKey,
      body: { rate_limit_per_minute: 10 },
    });
    expect(patched.status, patched.text).toBe(200);
    await eventually(() => {
      for (const proxy of [a, b]) expect(proxy.store.listing(listing.id)?.rateLimitPerMinute).toBe(10);
    });

    const buyerKey = (await stack.plane.register('buyer')).apiKey;
    const before = seller.requests.length;
    const results = await alternate([a, b], 30, listing.id, buyerKey);
    expectLimited(results, 10, 10);
    // Each proxy served some of the ten: the count is shared, not per proxy.
    expect(results.filter((r, i) => i % 2 === 0 && r.status === 200)).toHaveLength(5);
    expect(results.filter((r, i) => i % 2 === 1 && r.status === 200)).toHaveLength(5);
    expect(seller.requests.length - before).toBe(10);
  });

  it("holds a key's limit across two proxies while another key still passes", async () => {
    const c = await stack.addProxy({ CROCHET_KEY_RATE_LIMIT_PER_MINUTE: '5' });
    const d = await stack.addProxy({ CROCHET_KEY_RATE_LIMIT_PER_MINUTE: '5' });
    const { listing } = await stack.plane.createListing(sellerKey, { private_endpoint_url: `${seller.url}/echo` });
    await eventually(() => {
      for (const proxy of [c, d]) expect(proxy.store.listing(listing.id)).toBeDefined();
    });
    const limitedKey = (await stack.plane.register('busy-buyer')).apiKey;
    const otherKey = (await stack.plane.register('other-buyer')).apiKey;

    const results = await alternate([c, d], 15, listing.id, limitedKey);
    expectLimited(results, 5, 5);
    for (const proxy of [c, d]) {
      const res = await gatewayCall(proxy, listing.id, otherKey);
      expect(res.status, res.text).toBe(200);
    }
  });
});
