import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';
import { expectError, listingBody } from './listing-support.js';

/** §3.2: publishing a listing returns it with an absolute gateway_url and, once, its signing secret. */
describe('POST /api/v1/listings creates a listing', () => {
  let plane: TestPlane;
  let seller: { apiKey: string; agentId: string };

  beforeAll(async () => {
    plane = await startTestControlPlane();
    seller = await plane.register('seller');
  });
  afterAll(async () => {
    await plane?.stop();
  });

  it('creates a free listing priced at zero with a signing secret and an absolute gateway_url', async () => {
    const res = await plane.call('POST', '/api/v1/listings', {
      key: seller.apiKey,
      body: await listingBody(plane, seller.apiKey, {
        name: '  Echo  ',
        description: 'Echoes its input back',
        tags: ['echo', 'text-tools'],
        input_schema: { type: 'object', properties: { text: { type: 'string' } } },
        output_example: { text: 'hello' },
      }),
    });
    expect(res.status, res.text).toBe(201);
    const { listing, gateway_endpoint } = res.body.data;
    expect(listing).toMatchObject({
      id: expect.stringMatching(/^lst_[0-9A-HJKMNP-TV-Z]{26}$/),
      seller_id: seller.agentId,
      name: 'Echo',
      description: 'Echoes its input back',
      pricing_model: 'free',
      price: { amount: '0', currency: 'USDC', amount_atomic: '0' },
      status: 'active',
      tags: ['echo', 'text-tools'],
      input_schema: { type: 'object', properties: { text: { type: 'string' } } },
      output_example: { text: 'hello' },
      crochet_score: null,
      verified: false,
      review_count: 0,
    });
    expect(listing.gateway_url).toBe(`http://crochet.test:8080/api/v1/gateway/${listing.id}`);
    expect(new Date(listing.created_at).getTime()).toBeGreaterThan(Date.now() - 60_000);
    expect(gateway_endpoint.signing_secret).toMatch(/^crs_[A-Za-z0-9_-]{40,}$/);
    expect(gateway_endpoint.key_id).toMatch(/^sk_/);
    // The private URL is never part of the listing.
    expect(res.text).not.toContain('93.184.216.34');
    expect(listing).not.toHaveProperty('private_endpoint_url');
  });

  it('creates a per_call listing: price is a decimal string, stored in atomic units', async () => {
    const res = await plane.call('POST', '/api/v1/listings', {
      key: seller.apiKey,
      body: await listingBody(plane, seller.apiKey, {
        name: 'Summarise',
        pricing_model: 'per_call',
        price: { amount: '0.01', currency: 'USDC' },
      }),
    });
    expect(res.status, res.text).toBe(201);
    const listing = res.body.data.listing;
    expect(listing.pricing_model).toBe('per_call');
    expect(listing.price).toEqual({ amount: '0.01', currency: 'USDC', amount_atomic: '10000' });
    expect(listing.gateway_url).toBe(`${plane.config.publicBaseUrl}/api/v1/gateway/${listing.id}`);
    const { rows } = await plane.deps.pool.query('SELECT price_atomic::text AS atomic FROM listings WHERE id = $1', [
      listing.id,
    ]);
    expect(rows[0].atomic).toBe('10000');

    // GET returns the same view (who paused a listing is shown to its owner only).
    const got = await plane.call('GET', `/api/v1/listings/${listing.id}`);
    expect(got.status, got.text).toBe(200);
    const { paused_by, ...seen } = listing;
    expect(paused_by).toBeNull();
    expect(got.body.data).toEqual(seen);
  });

  it('defaults the currency to USDC and accepts the smallest unit and trailing zeros', async () => {
    for (const [amount, atomic, shown] of [
      ['0.000001', '1', '0.000001'],
      ['2.500000', '2500000', '2.5'],
      ['15', '15000000', '15'],
    ] as const) {
      const res = await plane.call('POST', '/api/v1/listings', {
        key: seller.apiKey,
        body: await listingBody(plane, seller.apiKey, { pricing_model: 'per_call', price: { amount } }),
      });
      expect(res.status, res.text).toBe(201);
      expect(res.body.data.listing.price).toEqual({ amount: shown, currency: 'USDC', amount_atomic: atomic });
    }
  });

  it('accepts a free listing with an explicit price of "0"', async () => {
    const res = await plane.call('POST', '/api/v1/listings', {
      key: seller.apiKey,
      body: await listingBody(plane, seller.apiKey, { pricing_model: 'free', price: { amount: '0' } }),
    });
    expect(res.status, res.text).toBe(201);
    expect(res.body.data.listing.price.amount_atomic).toBe('0');
  });

  it('gives every listing its own id and signing secret', async () => {
    const a = await plane.createListing(seller.apiKey);
    const b = await plane.createListing(seller.apiKey);
    expect(a.listing.id).not.toBe(b.listing.id);
    expect(a.signingSecret).not.toBe(b.signingSecret);
    expect(a.keyId).not.toBe(b.keyId);
  });

  it('needs an API key', async () => {
    const res = await plane.call('POST', '/api/v1/listings', {
      body: { challenge_id: 'chl_x', nonce: '1', name: 'x', description: 'x', pricing_model: 'free' },
    });
    expectError(res, 401, 'AUTH_REQUIRED');
    expectError(await plane.call('POST', '/api/v1/listings/challenge'), 401, 'AUTH_REQUIRED');
  });

  it('rejects unknown fields and missing required fields', async () => {
    const extra = await plane.call('POST', '/api/v1/listings', {
      key: seller.apiKey,
      body: await listingBody(plane, seller.apiKey, { owner: 'someone-else' }),
    });
    expectError(extra, 400, 'VALIDATION_FAILED');
    expect(extra.body.error.message).toContain('owner');

    const { private_endpoint_url: _omitted, ...withoutUrl } = await listingBody(plane, seller.apiKey);
    const missing = await plane.call('POST', '/api/v1/listings', { key: seller.apiKey, body: withoutUrl });
    expectError(missing, 400, 'VALIDATION_FAILED');
    expect(missing.body.error.message).toContain('private_endpoint_url');

    for (const blank of [{ name: '   ' }, { description: '\n \t' }]) {
      const res = await plane.call('POST', '/api/v1/listings', {
        key: seller.apiKey,
        body: await listingBody(plane, seller.apiKey, blank),
      });
      expectError(res, 400, 'VALIDATION_FAILED');
    }

    const badTag = await plane.call('POST', '/api/v1/listings', {
      key: seller.apiKey,
      body: await listingBody(plane, seller.apiKey, { tags: ['Not A Tag'] }),
    });
    expectError(badTag, 400, 'VALIDATION_FAILED');
  });
});
