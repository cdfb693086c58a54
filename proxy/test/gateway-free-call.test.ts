import { verifyCrochetRequest } from '@crochet/plugins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSeller, startTestStack, type TestSeller, type TestStack } from './stack.js';

let stack: TestStack;
let seller: TestSeller;
beforeAll(async () => {
  stack = await startTestStack();
  seller = await startSeller();
});
afterAll(async () => {
  await seller.close();
  await stack.stop();
});

describe('a free gateway call', () => {
  it('reaches the seller signed, and streams the answer back', async () => {
    const sellerAgent = await stack.plane.register('seller');
    const buyer = await stack.plane.register('buyer');
    const { listing, signingSecret } = await stack.plane.createListing(sellerAgent.apiKey, {
      private_endpoint_url: `${seller.url}/echo`,
    });
    const proxy = stack.proxies[0]!;
    const res = await fetch(`${proxy.url}/api/v1/gateway/${listing.id}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${buyer.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ hello: 'world' }),
    });
    const text = await res.text();
    expect(res.status, text).toBe(200);
    expect(JSON.parse(text)).toEqual({ echo: '{"hello":"world"}' });
    const requestId = res.headers.get('x-crochet-request-id');
    expect(requestId).toMatch(/^gr_/);
    expect(res.headers.get('ratelimit-limit')).toBeTruthy();

    const arrived = seller.requests.at(-1)!;
    expect(arrived.url).toBe('/echo');
    expect(arrived.headers['authorization']).toBeUndefined();
    const verified = verifyCrochetRequest(arrived.headers, arrived.body, { secrets: [signingSecret] });
    expect(verified).toMatchObject({ ok: true, requestId, listingId: listing.id });
  });
});
