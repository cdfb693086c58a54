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

/**
 * The control plane here allows private endpoints (so these URLs save, as a DNS change after saving would let them
 * through), the proxy does not: its connect-time guard is the last line, and it must hold for every spelling of a
 * private address that URL parsing normalizes.
 */
const PATH_TOKEN = 'ssrf-private-path-7c1e';

let stack: TestStack;
let strict: ProxyServer;
let seller: TestSeller;
let port: string;
let sellerKey: string;
let buyerKey: string;

beforeAll(async () => {
  stack = await startTestStack({ proxyEnv: { CROCHET_ALLOW_PRIVATE_ENDPOINTS: '0' } });
  strict = stack.proxies[0]!;
  seller = await startSeller();
  port = new URL(seller.url).port;
  sellerKey = (await stack.plane.register('seller')).apiKey;
  buyerKey = (await stack.plane.register('buyer')).apiKey;
});
afterAll(async () => {
  await seller.close();
  await stack.stop();
});

/** Host spellings (URL parsing turns the last three into 127.0.0.1 or its IPv4-mapped form). */
const PRIVATE_HOSTS = ['127.0.0.1', 'localhost', '169.254.169.254', '[::ffff:127.0.0.1]', '2130706433', '0177.0.0.1'];
const privateUrl = (host: string) =>
  host === '169.254.169.254' ? `http://${host}/latest/meta-data/${PATH_TOKEN}` : `http://${host}:${port}/${PATH_TOKEN}`;

describe('the connect-time SSRF guard', () => {
  it('lets a proxy that allows private endpoints reach the seller (the control case)', async () => {
    const permissive = await stack.addProxy({ CROCHET_ALLOW_PRIVATE_ENDPOINTS: '1' });
    const { listing } = await stack.plane.createListing(sellerKey, { private_endpoint_url: privateUrl('127.0.0.1') });
    const res = await eventually(async () => {
      const r = await gatewayCall(permissive, listing.id, buyerKey);
      expect(r.status, r.text).toBe(200);
      return r;
    });
    expect(res.status).toBe(200);
    expect(seller.requests.at(-1)!.url).toBe(`/${PATH_TOKEN}`);
  });

  it.each(PRIVATE_HOSTS)('refuses an endpoint on %s with 502 UPSTREAM_FORBIDDEN', async (host) => {
    const url = privateUrl(host);
    const { listing } = await stack.plane.createListing(sellerKey, { private_endpoint_url: url });
    const before = seller.requests.length;
    const res = await eventually(async () => {
      const r = await gatewayCall(strict, listing.id, buyerKey, { subPath: '/more' });
      expect(r.status, r.text).not.toBe(404); // the listing has not reached the proxy yet
      return r;
    });
    const error = expectApiError(res, 502, 'UPSTREAM_FORBIDDEN');
    expect(error.request_id).toBe(res.headers['x-crochet-request-id']);
    expect(seller.requests.length, `${url} reached the seller`).toBe(before);

    // Nothing of the private URL in what the buyer gets (the request id is random and could hold any digits).
    const visible = JSON.stringify({
      error: { ...res.json.error, request_id: undefined },
      headers: { ...res.headers, 'x-crochet-request-id': undefined },
    });
    for (const secret of [port, PATH_TOKEN, '127.0.0.1', 'localhost', '169.254', '2130706433', '0177', '::ffff']) {
      expect(visible, `${url} leaked ${secret}`).not.toContain(secret);
    }
  });
});
