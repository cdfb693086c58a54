import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyCrochetRequest } from '@crochet/plugins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';

let plane: TestPlane;
let seller: Server;
let sellerUrl: string;
let secrets: string[] = [];
const verdicts: boolean[] = [];

beforeAll(async () => {
  plane = await startTestControlPlane();
  seller = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/slow') {
        setTimeout(() => res.end('late'), 2_500);
        return;
      }
      const verdict = verifyCrochetRequest(req.headers, Buffer.concat(chunks), { secrets });
      verdicts.push(verdict.ok && verdict.test);
      if (req.url === '/talkative') {
        // A seller that explains itself at length: the test shows the first 512 bytes of it.
        res.writeHead(verdict.ok ? 200 : 401, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`${verdict.ok ? 'ok' : `refused: ${verdict.reason}`} ${'é'.repeat(400)}`);
        return;
      }
      res.writeHead(verdict.ok ? 204 : 401).end();
    });
  });
  await new Promise<void>((resolve) => seller.listen(0, '127.0.0.1', resolve));
  sellerUrl = `http://127.0.0.1:${(seller.address() as AddressInfo).port}`;
});
afterAll(async () => {
  seller.closeAllConnections();
  seller.close();
  await plane.stop();
});

describe('POST /listings/:id/endpoint/test', () => {
  it('sends a signed test request the seller verifies, and remembers the result', async () => {
    const { apiKey } = await plane.register('tester');
    const { listing, signingSecret } = await plane.createListing(apiKey, { private_endpoint_url: `${sellerUrl}/hook` });
    secrets = [signingSecret];
    const res = await plane.call('POST', `/api/v1/listings/${listing.id}/endpoint/test`, { key: apiKey });
    expect(res.status).toBe(200);
    expect(res.body.data).toMatchObject({ ok: true, status: 204, error: null });
    expect(verdicts.at(-1)).toBe(true);
    const metadata = await plane.call('GET', `/api/v1/listings/${listing.id}/endpoint`, { key: apiKey });
    expect(metadata.body.data.last_test).toMatchObject({ ok: true, status: 204 });

    // A wrong secret on the seller's side shows as the seller's 401, not as a gateway error.
    secrets = ['crs_not-the-secret'];
    const rejected = await plane.call('POST', `/api/v1/listings/${listing.id}/endpoint/test`, { key: apiKey });
    expect(rejected.body.data).toMatchObject({ ok: false, status: 401, error: null });
  });

  it("shows the first 512 bytes of the seller's answer", async () => {
    const { apiKey } = await plane.register('tester-3');
    const { listing, signingSecret } = await plane.createListing(apiKey, {
      private_endpoint_url: `${sellerUrl}/talkative`,
    });
    secrets = ['crs_not-the-secret'];
    const refused = await plane.call('POST', `/api/v1/listings/${listing.id}/endpoint/test`, { key: apiKey });
    expect(refused.body.data).toMatchObject({
      ok: false,
      status: 401,
      response: { content_type: 'text/plain; charset=utf-8', truncated: true },
    });
    const excerpt: string = refused.body.data.response.body_excerpt;
    expect(excerpt.startsWith('refused: bad_signature é')).toBe(true);
    expect(Buffer.byteLength(excerpt.replace(/\uFFFD$/, ''), 'utf8')).toBeLessThanOrEqual(512);
    expect(Buffer.byteLength(excerpt, 'utf8')).toBeGreaterThanOrEqual(510);

    secrets = [signingSecret];
    const fine = await plane.call('POST', `/api/v1/listings/${listing.id}/endpoint/test`, { key: apiKey });
    expect(fine.body.data.response.body_excerpt.startsWith('ok é')).toBe(true);
    const metadata = await plane.call('GET', `/api/v1/listings/${listing.id}/endpoint`, { key: apiKey });
    expect(metadata.body.data.last_test.response.truncated).toBe(true);
  });

  it('reports a timeout and an unreachable endpoint without leaking the URL', async () => {
    const { apiKey } = await plane.register('tester-2');
    const slow = await plane.createListing(apiKey, { private_endpoint_url: `${sellerUrl}/slow`, timeout_ms: 1000 });
    const late = await plane.call('POST', `/api/v1/listings/${slow.listing.id}/endpoint/test`, { key: apiKey });
    expect(late.body.data).toMatchObject({ ok: false, status: null, error: 'timeout' });

    const down = await plane.createListing(apiKey, { private_endpoint_url: 'http://127.0.0.1:9/closed-port-path' });
    const res = await plane.call('POST', `/api/v1/listings/${down.listing.id}/endpoint/test`, { key: apiKey });
    expect(res.body.data).toMatchObject({ ok: false, status: null, error: 'unreachable', response: null });
    expect(res.text).not.toContain('closed-port-path');
  });

  it('refuses a private address at connect time when private endpoints are not allowed', async () => {
    const strict = await startTestControlPlane(
      { CROCHET_ALLOW_PRIVATE_ENDPOINTS: '0' },
      { lookup: async () => ['93.184.216.34'] },
    );
    try {
      const { apiKey } = await strict.register('dns-rebinder');
      // Saved while the name resolved to a public address; it now resolves (for real) to loopback.
      const { listing } = await strict.createListing(apiKey, { private_endpoint_url: 'https://localhost/hook' });
      const res = await strict.call('POST', `/api/v1/listings/${listing.id}/endpoint/test`, { key: apiKey });
      expect(res.body.data).toMatchObject({ ok: false, error: 'forbidden_address' });
    } finally {
      await strict.stop();
    }
  });

  it('is for the owner only', async () => {
    const owner = await plane.register('owner');
    const other = await plane.register('other');
    const { listing } = await plane.createListing(owner.apiKey, { private_endpoint_url: `${sellerUrl}/hook` });
    const res = await plane.call('POST', `/api/v1/listings/${listing.id}/endpoint/test`, { key: other.apiKey });
    expect([res.status, res.body.error.code]).toEqual([404, 'LISTING_NOT_FOUND']);
  });
});
