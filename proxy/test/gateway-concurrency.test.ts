import { createMemoryReplayCache, verifyCrochetRequest } from '@crochet/plugins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProxyServer } from '../src/app.js';
import { gatewayCall, startSeller, startTestStack, type TestSeller, type TestStack } from './stack.js';

const CALLS = 50;

let stack: TestStack;
let proxy: ProxyServer;
let seller: TestSeller;
let buyerKey: string;
let listingId: string;
let signingSecret: string;

beforeAll(async () => {
  stack = await startTestStack();
  proxy = stack.proxies[0]!;
  // Answers a little later than at once, so the calls really overlap inside the gateway.
  seller = await startSeller((_req, res, body) => {
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ echo: JSON.parse(body.toString('utf8')) }));
    }, 50);
  });
  const sellerAgent = await stack.plane.register('seller');
  buyerKey = (await stack.plane.register('buyer')).apiKey;
  const created = await stack.plane.createListing(sellerAgent.apiKey, { private_endpoint_url: `${seller.url}/svc` });
  listingId = created.listing.id;
  signingSecret = created.signingSecret;
});
afterAll(async () => {
  await seller.close();
  await stack.stop();
});

describe('concurrent gateway calls', () => {
  it(`answers ${CALLS} at once, each with its own request id, body and valid signature`, async () => {
    const responses = await Promise.all(
      Array.from({ length: CALLS }, (_, n) => gatewayCall(proxy, listingId, buyerKey, { body: { n } })),
    );
    const ids = new Set<string>();
    responses.forEach((res, n) => {
      expect(res.status, res.text).toBe(200);
      expect(res.json).toEqual({ echo: { n } });
      ids.add(String(res.headers['x-crochet-request-id']));
    });
    expect(ids.size).toBe(CALLS);
    for (const id of ids) expect(id).toMatch(/^gr_/);

    expect(seller.requests).toHaveLength(CALLS);
    // One replay cache across all of them: a request id seen twice would fail as `replayed`.
    const replayCache = createMemoryReplayCache();
    const verifiedIds = new Set<string>();
    for (const arrived of seller.requests) {
      const verified = verifyCrochetRequest(arrived.headers, arrived.body, { secrets: [signingSecret], replayCache });
      expect(verified).toMatchObject({ ok: true, listingId });
      if (verified.ok) verifiedIds.add(verified.requestId);
    }
    expect(verifiedIds).toEqual(ids);
  });
});
