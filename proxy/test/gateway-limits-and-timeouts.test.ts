import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProxyServer } from '../src/app.js';
import {
  eventually,
  expectApiError,
  gatewayCall,
  type RawResponse,
  rawRequest,
  startSeller,
  startTestStack,
  type TestSeller,
  type TestStack,
} from './stack.js';

const PATH_TOKEN = 'limits-private-path-3b9d';
const BODY_LIMIT_BYTES = 2048;
const TIMEOUT_MS = 1000;

let stack: TestStack;
let proxy: ProxyServer;
let seller: TestSeller;
let sellerKey: string;
let buyerKey: string;
let listingId: string;

beforeAll(async () => {
  stack = await startTestStack();
  proxy = stack.proxies[0]!;
  seller = await startSeller((req, res, body) => {
    const answer = () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ bytes: body.length }));
    };
    if (req.url!.endsWith('/slow')) setTimeout(answer, TIMEOUT_MS * 2.5);
    else answer();
  });
  sellerKey = (await stack.plane.register('seller')).apiKey;
  buyerKey = (await stack.plane.register('buyer')).apiKey;
  listingId = (await stack.plane.createListing(sellerKey, { private_endpoint_url: `${seller.url}/${PATH_TOKEN}` }))
    .listing.id;
  const patched = await stack.plane.call('PATCH', `/api/v1/listings/${listingId}`, {
    key: sellerKey,
    body: { body_limit_bytes: BODY_LIMIT_BYTES, timeout_ms: TIMEOUT_MS },
  });
  if (patched.status !== 200) throw new Error(`patch failed: ${patched.text}`);
  await eventually(() => {
    expect(proxy.store.listing(listingId)).toMatchObject({ bodyLimitBytes: BODY_LIMIT_BYTES, timeoutMs: TIMEOUT_MS });
  });
});
afterAll(async () => {
  await seller.close();
  await stack.stop();
});

/** The error body says nothing of where the seller lives. */
const expectNoPrivateUrl = (res: RawResponse, port: string) => {
  const visible = JSON.stringify({ ...res.json.error, request_id: undefined });
  for (const secret of [port, PATH_TOKEN, '127.0.0.1', 'localhost']) expect(visible).not.toContain(secret);
};

const stillServes = async () => {
  const res = await gatewayCall(proxy, listingId, buyerKey, { body: { after: true } });
  expect(res.status, res.text).toBe(200);
};

const body = (bytes: number) => JSON.stringify({ pad: 'x'.repeat(bytes - 10) });

describe("a listing's body limit", () => {
  it('accepts a body at the limit', async () => {
    const payload = body(BODY_LIMIT_BYTES);
    expect(payload.length).toBe(BODY_LIMIT_BYTES);
    const res = await rawRequest(proxy.url, `/api/v1/gateway/${listingId}`, {
      headers: { authorization: `Bearer ${buyerKey}`, 'content-type': 'application/json' },
      body: payload,
    });
    expect(res.status, res.text).toBe(200);
    expect(res.json).toEqual({ bytes: BODY_LIMIT_BYTES });
  });

  it.each([BODY_LIMIT_BYTES + 1, 1024 * 1024])(
    'refuses a %i-byte body declared by Content-Length with 413, forwarding nothing',
    async (bytes) => {
      const before = seller.requests.length;
      const res = await rawRequest(proxy.url, `/api/v1/gateway/${listingId}`, {
        headers: { authorization: `Bearer ${buyerKey}`, 'content-type': 'application/json' },
        body: body(bytes),
      });
      expectApiError(res, 413, 'PAYLOAD_TOO_LARGE');
      expect(res.json.error.limit_bytes).toBe(BODY_LIMIT_BYTES);
      expect(seller.requests.length).toBe(before);
      await stillServes();
    },
  );

  it('refuses a larger chunked body (no Content-Length) with 413, forwarding nothing', async () => {
    const before = seller.requests.length;
    const chunk = 'x'.repeat(700);
    const res = await rawRequest(proxy.url, `/api/v1/gateway/${listingId}`, {
      headers: { authorization: `Bearer ${buyerKey}`, 'content-type': 'application/octet-stream' },
      body: [chunk, chunk, chunk, chunk, chunk],
    });
    expectApiError(res, 413, 'PAYLOAD_TOO_LARGE');
    expect(seller.requests.length).toBe(before);
    await stillServes();
  });
});

describe('seller failures', () => {
  it('answers 504 UPSTREAM_TIMEOUT when the seller is slower than the listing timeout', async () => {
    const res = await gatewayCall(proxy, listingId, buyerKey, { subPath: '/slow' });
    expectApiError(res, 504, 'UPSTREAM_TIMEOUT');
    expect(res.headers['x-crochet-request-id']).toMatch(/^gr_/);
    expectNoPrivateUrl(res, new URL(seller.url).port);
    await stillServes();
  });

  it('answers 502 UPSTREAM_UNAVAILABLE when the seller refuses connections', async () => {
    // A port that was just free: listen, note it, close.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const closedPort = String((probe.address() as AddressInfo).port);
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const { listing } = await stack.plane.createListing(sellerKey, {
      private_endpoint_url: `http://127.0.0.1:${closedPort}/${PATH_TOKEN}`,
    });
    const res = await eventually(async () => {
      const r = await gatewayCall(proxy, listing.id, buyerKey);
      expect(r.status, r.text).not.toBe(404); // not yet propagated
      return r;
    });
    expectApiError(res, 502, 'UPSTREAM_UNAVAILABLE');
    expectNoPrivateUrl(res, closedPort);
    await stillServes();
  });
});
