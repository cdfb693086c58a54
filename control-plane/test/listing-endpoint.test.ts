import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';
import { expectError } from './listing-support.js';

/** §3.2: the owner reads safe endpoint metadata (scheme, host, keys) and points the listing at a new URL. */
describe('GET and PUT /api/v1/listings/:id/endpoint', () => {
  let plane: TestPlane;
  let owner: { apiKey: string; agentId: string };
  let listing: any;
  let keyId: string;
  let signingSecret: string;
  const privatePath = '/v1/hidden-path/run';
  const privateQuery = 'token=very-secret-token';

  beforeAll(async () => {
    // Host names resolve through an injected lookup: the test needs no real DNS.
    plane = await startTestControlPlane(
      {},
      {
        lookup: async (host) => {
          if (host === 'seller.example') return ['93.184.216.35'];
          throw new Error(`getaddrinfo ENOTFOUND ${host}`);
        },
      },
    );
    owner = await plane.register('owner');
    ({ listing, keyId, signingSecret } = await plane.createListing(owner.apiKey, {
      private_endpoint_url: `https://93.184.216.34${privatePath}?${privateQuery}#frag`,
    }));
  });
  afterAll(async () => {
    await plane?.stop();
  });

  const getEndpoint = () => plane.call('GET', `/api/v1/listings/${listing.id}/endpoint`, { key: owner.apiKey });
  const putEndpoint = (url: string) =>
    plane.call('PUT', `/api/v1/listings/${listing.id}/endpoint`, {
      key: owner.apiKey,
      body: { private_endpoint_url: url },
    });

  it('returns scheme, host and key metadata: no path, no query, no secret', async () => {
    const res = await getEndpoint();
    expect(res.status, res.text).toBe(200);
    expect(res.body.data).toEqual({
      scheme: 'https',
      host: '93.184.216.34',
      updated_at: expect.any(String),
      keys: [
        {
          key_id: keyId,
          status: 'current',
          created_at: expect.any(String),
          age_seconds: expect.any(Number),
          expires_at: null,
        },
      ],
      last_test: null,
    });
    expect(res.body.data.keys[0].age_seconds).toBeGreaterThanOrEqual(0);
    expect(res.body.data.keys[0].age_seconds).toBeLessThan(120);
    for (const secret of [
      privatePath,
      'hidden-path',
      privateQuery,
      'very-secret-token',
      'frag',
      signingSecret,
      'crs_',
    ]) {
      expect(res.text).not.toContain(secret);
    }
  });

  it('shows a non-default port with the host', async () => {
    const res = await putEndpoint('https://93.184.216.34:8443/api');
    expect(res.status, res.text).toBe(200);
    expect(res.body.data).toMatchObject({ scheme: 'https', host: '93.184.216.34:8443' });
    const explicitDefault = await putEndpoint('https://93.184.216.34:443/api');
    expect(explicitDefault.body.data.host).toBe('93.184.216.34');
  });

  it('updates the URL: the metadata changes and shows the new host only', async () => {
    const before = (await getEndpoint()).body.data;
    await new Promise((resolve) => setTimeout(resolve, 20));
    const res = await putEndpoint('https://seller.example:9443/new/secret-path?k=v');
    expect(res.status, res.text).toBe(200);
    expect(res.body.data.scheme).toBe('https');
    expect(res.body.data.host).toBe('seller.example:9443');
    expect(new Date(res.body.data.updated_at).getTime()).toBeGreaterThan(new Date(before.updated_at).getTime());
    expect(res.body.data.keys).toEqual(before.keys.map((k: any) => ({ ...k, age_seconds: expect.any(Number) })));
    expect(res.text).not.toContain('secret-path');
    expect(res.text).not.toContain('k=v');

    const after = await getEndpoint();
    expect(after.body.data).toMatchObject({
      scheme: 'https',
      host: 'seller.example:9443',
      updated_at: res.body.data.updated_at,
    });

    // The stored (encrypted) URL is the new one.
    const { rows } = await plane.deps.pool.query('SELECT endpoint_url_enc FROM listings WHERE id = $1', [listing.id]);
    expect(plane.deps.box.open(rows[0].endpoint_url_enc, `listing:${listing.id}:endpoint_url`)).toBe(
      'https://seller.example:9443/new/secret-path?k=v',
    );
  });

  it('allows plain http only under the development flag (on in this plane)', async () => {
    const res = await putEndpoint('http://127.0.0.1:9/echo');
    expect(res.status, res.text).toBe(200);
    expect(res.body.data).toMatchObject({ scheme: 'http', host: '127.0.0.1:9' });
  });

  it('does not change the listing view or the signing key', async () => {
    const got = await plane.call('GET', `/api/v1/listings/${listing.id}`);
    expect(got.body.data.gateway_url).toBe(listing.gateway_url);
    const { rows } = await plane.deps.pool.query('SELECT id FROM listing_signing_keys WHERE listing_id = $1', [
      listing.id,
    ]);
    expect(rows.map((r: any) => r.id)).toEqual([keyId]);
  });

  it('refuses invalid URLs and bodies, and keeps the saved URL', async () => {
    const before = (await getEndpoint()).body.data;
    for (const url of [
      'not a url',
      '/relative/path',
      'ftp://93.184.216.34/',
      'https://user:pass@93.184.216.34/',
      'https://',
    ]) {
      expectError(await putEndpoint(url), 400, 'ENDPOINT_URL_INVALID');
    }
    expectError(await putEndpoint(`https://93.184.216.34/${'a'.repeat(2100)}`), 400, 'VALIDATION_FAILED');
    expectError(await putEndpoint(''), 400, 'VALIDATION_FAILED');
    expectError(
      await plane.call('PUT', `/api/v1/listings/${listing.id}/endpoint`, { key: owner.apiKey, body: {} }),
      400,
      'VALIDATION_FAILED',
    );
    expectError(
      await plane.call('PUT', `/api/v1/listings/${listing.id}/endpoint`, {
        key: owner.apiKey,
        body: { private_endpoint_url: 'https://93.184.216.34/', extra: 1 },
      }),
      400,
      'VALIDATION_FAILED',
    );
    expect((await getEndpoint()).body.data).toEqual({ ...before, keys: expect.any(Array) });
  });

  it('never echoes the refused URL in an error', async () => {
    const res = await putEndpoint('https://user:hunter2@93.184.216.34/p');
    expectError(res, 400, 'ENDPOINT_URL_INVALID');
    expect(res.text).not.toContain('hunter2');
  });

  it('can PUT on a paused listing', async () => {
    await plane.call('PATCH', `/api/v1/listings/${listing.id}`, { key: owner.apiKey, body: { status: 'paused' } });
    const res = await putEndpoint('https://93.184.216.34/while-paused');
    expect(res.status, res.text).toBe(200);
    await plane.call('PATCH', `/api/v1/listings/${listing.id}`, { key: owner.apiKey, body: { status: 'active' } });
  });
});
