import { generateApiKey, newId } from '@crochet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProxyServer } from '../src/app.js';
import {
  eventually,
  expectApiError,
  gatewayCall,
  startSeller,
  startTestStack,
  type TestSeller,
  type TestStack,
} from './stack.js';

let stack: TestStack;
let proxies: ProxyServer[];
let seller: TestSeller;
let sellerKey: string;
let listingId: string;

beforeAll(async () => {
  stack = await startTestStack({ proxies: 2 });
  proxies = stack.proxies.slice();
  seller = await startSeller();
  sellerKey = (await stack.plane.register('seller')).apiKey;
  listingId = (await stack.plane.createListing(sellerKey, { private_endpoint_url: `${seller.url}/echo` })).listing.id;
});
afterAll(async () => {
  await seller.close();
  await stack.stop();
});

const onBoth = async (check: (proxy: ProxyServer) => Promise<void>) => {
  for (const proxy of proxies) await check(proxy);
};

const expectOk = async (proxy: ProxyServer, id: string, apiKey: string) => {
  const res = await gatewayCall(proxy, id, apiKey);
  expect(res.status, res.text).toBe(200);
};

describe('key state on every proxy', () => {
  it('refuses a revoked key on both proxies; a new key works on both', async () => {
    const buyer = await stack.plane.register('buyer');
    await onBoth((proxy) => expectOk(proxy, listingId, buyer.apiKey));

    const second = await stack.plane.call('POST', '/api/v1/keys', { key: buyer.apiKey, body: { name: 'second' } });
    expect(second.status, second.text).toBe(201);
    const secondKey: string = second.body.data.api_key;
    const me = await stack.plane.call('GET', '/api/v1/me', { key: buyer.apiKey });
    const firstKeyId: string = me.body.data.current_key_id;
    expect(firstKeyId).toBeTruthy();
    const revoked = await stack.plane.call('DELETE', `/api/v1/keys/${firstKeyId}`, { key: secondKey });
    expect(revoked.status, revoked.text).toBe(200);

    await eventually(() =>
      onBoth(async (proxy) => {
        expectApiError(await gatewayCall(proxy, listingId, buyer.apiKey), 401, 'API_KEY_REVOKED');
      }),
    );
    await eventually(() => onBoth((proxy) => expectOk(proxy, listingId, secondKey)));

    // A key created after the proxies loaded their config.
    const third = await stack.plane.call('POST', '/api/v1/keys', { key: secondKey, body: { name: 'third' } });
    expect(third.status, third.text).toBe(201);
    await eventually(() => onBoth((proxy) => expectOk(proxy, listingId, third.body.data.api_key)));
  });

  it('refuses missing, malformed and unknown keys', async () => {
    await onBoth(async (proxy) => {
      expectApiError(await gatewayCall(proxy, listingId, null), 401, 'AUTH_REQUIRED');
      expectApiError(
        await gatewayCall(proxy, listingId, null, { headers: { authorization: 'Basic dXNlcjpwYXNz' } }),
        401,
        'AUTH_REQUIRED',
      );
      expectApiError(await gatewayCall(proxy, listingId, 'am_k_not-a-real-key'), 401, 'API_KEY_MALFORMED');
      // Right shape, wrong checksum.
      const good = generateApiKey();
      const badChecksum = `${good.slice(0, -1)}${good.endsWith('A') ? 'B' : 'A'}`;
      expectApiError(await gatewayCall(proxy, listingId, badChecksum), 401, 'API_KEY_MALFORMED');
      expectApiError(await gatewayCall(proxy, listingId, generateApiKey()), 401, 'API_KEY_INVALID');
    });
  });
});

describe('listing state on every proxy', () => {
  it('answers 404 LISTING_NOT_FOUND for an unknown listing', async () => {
    const buyer = await stack.plane.register('buyer-unknown');
    await onBoth(async (proxy) => {
      expectApiError(await gatewayCall(proxy, newId('listing'), buyer.apiKey), 404, 'LISTING_NOT_FOUND');
    });
  });

  it('answers 409 LISTING_PAUSED once paused and 409 LISTING_ARCHIVED once archived', async () => {
    const buyer = await stack.plane.register('buyer-states');
    const { listing } = await stack.plane.createListing(sellerKey, { private_endpoint_url: `${seller.url}/echo` });
    await eventually(() => onBoth((proxy) => expectOk(proxy, listing.id, buyer.apiKey)));

    const paused = await stack.plane.call('PATCH', `/api/v1/listings/${listing.id}`, {
      key: sellerKey,
      body: { status: 'paused' },
    });
    expect(paused.status, paused.text).toBe(200);
    const before = seller.requests.length;
    await eventually(() =>
      onBoth(async (proxy) => {
        expectApiError(await gatewayCall(proxy, listing.id, buyer.apiKey), 409, 'LISTING_PAUSED');
      }),
    );

    const archived = await stack.plane.call('DELETE', `/api/v1/listings/${listing.id}`, { key: sellerKey });
    expect(archived.status, archived.text).toBeLessThan(300);
    await eventually(() =>
      onBoth(async (proxy) => {
        expectApiError(await gatewayCall(proxy, listing.id, buyer.apiKey), 409, 'LISTING_ARCHIVED');
      }),
    );
    expect(seller.requests.length).toBe(before);
  });

  it('answers 503 PAYMENT_RAILS_UNAVAILABLE for a paid listing, forwarding nothing', async () => {
    const buyer = await stack.plane.register('buyer-paid');
    const { listing } = await stack.plane.createListing(sellerKey, {
      private_endpoint_url: `${seller.url}/echo`,
      pricing_model: 'per_call',
      price: { amount: '0.01', currency: 'USDC' },
    });
    const before = seller.requests.length;
    await eventually(() =>
      onBoth(async (proxy) => {
        expectApiError(await gatewayCall(proxy, listing.id, buyer.apiKey), 503, 'PAYMENT_RAILS_UNAVAILABLE');
      }),
    );
    expect(seller.requests.length).toBe(before);
  });
});
