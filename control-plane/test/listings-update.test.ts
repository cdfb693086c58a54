import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';
import { expectError } from './listing-support.js';

/** §3.2: the owner changes name, description, price and status active|paused with PATCH. */
describe('PATCH /api/v1/listings/:id by the owner', () => {
  let plane: TestPlane;
  let owner: { apiKey: string; agentId: string };

  beforeAll(async () => {
    plane = await startTestControlPlane();
    owner = await plane.register('owner');
  });
  afterAll(async () => {
    await plane?.stop();
  });

  const patch = (id: string, body: unknown) =>
    plane.call('PATCH', `/api/v1/listings/${id}`, { key: owner.apiKey, body });

  it('changes the name and description and leaves the rest alone', async () => {
    const { listing } = await plane.createListing(owner.apiKey, {
      pricing_model: 'per_call',
      price: { amount: '0.25' },
      tags: ['keep'],
    });
    const res = await patch(listing.id, { name: '  Renamed  ', description: 'A new description' });
    expect(res.status, res.text).toBe(200);
    expect(res.body.data).toMatchObject({
      id: listing.id,
      name: 'Renamed',
      description: 'A new description',
      pricing_model: 'per_call',
      price: { amount: '0.25', currency: 'USDC', amount_atomic: '250000' },
      status: 'active',
      tags: ['keep'],
      gateway_url: listing.gateway_url,
      created_at: listing.created_at,
    });
    expect(new Date(res.body.data.updated_at).getTime()).toBeGreaterThanOrEqual(new Date(listing.updated_at).getTime());
    const got = await plane.call('GET', `/api/v1/listings/${listing.id}`);
    // Who paused a listing is shown to its owner only.
    const { paused_by, ...seen } = res.body.data;
    expect(paused_by).toBeNull();
    expect(got.body.data).toEqual(seen);
  });

  it('changes the price of a per_call listing', async () => {
    const { listing } = await plane.createListing(owner.apiKey, {
      pricing_model: 'per_call',
      price: { amount: '0.01' },
    });
    const res = await patch(listing.id, { price: { amount: '0.125', currency: 'USDC' } });
    expect(res.status, res.text).toBe(200);
    expect(res.body.data.price).toEqual({ amount: '0.125', currency: 'USDC', amount_atomic: '125000' });
    expect(res.body.data.pricing_model).toBe('per_call');
  });

  it('switches per_call to free and zeroes the price', async () => {
    const { listing } = await plane.createListing(owner.apiKey, { pricing_model: 'per_call', price: { amount: '3' } });
    const res = await patch(listing.id, { pricing_model: 'free' });
    expect(res.status, res.text).toBe(200);
    expect(res.body.data.pricing_model).toBe('free');
    expect(res.body.data.price).toEqual({ amount: '0', currency: 'USDC', amount_atomic: '0' });
    const { rows } = await plane.deps.pool.query('SELECT price_atomic::text AS atomic FROM listings WHERE id = $1', [
      listing.id,
    ]);
    expect(rows[0].atomic).toBe('0');
  });

  it('switches free to per_call only with a price', async () => {
    const { listing } = await plane.createListing(owner.apiKey, { pricing_model: 'free' });
    expectError(await patch(listing.id, { pricing_model: 'per_call' }), 400, 'PRICE_INVALID');
    expectError(await patch(listing.id, { price: { amount: '1' } }), 400, 'PRICE_INVALID');
    const res = await patch(listing.id, { pricing_model: 'per_call', price: { amount: '0.5' } });
    expect(res.status, res.text).toBe(200);
    expect(res.body.data.price.amount_atomic).toBe('500000');
  });

  it('keeps a per_call price when only other fields change, and refuses bad prices', async () => {
    const { listing } = await plane.createListing(owner.apiKey, {
      pricing_model: 'per_call',
      price: { amount: '0.07' },
    });
    const same = await patch(listing.id, { pricing_model: 'per_call' });
    expect(same.status, same.text).toBe(200);
    expect(same.body.data.price.amount_atomic).toBe('70000');
    for (const amount of ['0', '-1', '0.0000001', '1e3']) {
      expectError(await patch(listing.id, { price: { amount } }), 400, 'PRICE_INVALID');
    }
    expectError(await patch(listing.id, { price: { amount: '1', currency: 'EUR' } }), 400, 'CURRENCY_UNSUPPORTED');
    const got = await plane.call('GET', `/api/v1/listings/${listing.id}`);
    expect(got.body.data.price.amount_atomic).toBe('70000');
  });

  it('pauses and reactivates a listing', async () => {
    const { listing } = await plane.createListing(owner.apiKey, { name: 'Pausable' });
    const paused = await patch(listing.id, { status: 'paused' });
    expect(paused.status, paused.text).toBe(200);
    expect(paused.body.data.status).toBe('paused');
    const browse = await plane.call('GET', '/api/v1/listings?limit=100');
    expect(browse.body.data.map((l: any) => l.id)).not.toContain(listing.id);

    const active = await patch(listing.id, { status: 'active' });
    expect(active.status, active.text).toBe(200);
    expect(active.body.data.status).toBe('active');
    const again = await plane.call('GET', '/api/v1/listings?limit=100');
    expect(again.body.data.map((l: any) => l.id)).toContain(listing.id);
  });

  it('refuses status archived through PATCH (DELETE archives)', async () => {
    const { listing } = await plane.createListing(owner.apiKey);
    expectError(await patch(listing.id, { status: 'archived' }), 400, 'VALIDATION_FAILED');
  });

  it('refuses an unknown field with 400 VALIDATION_FAILED naming it, and changes nothing', async () => {
    const { listing } = await plane.createListing(owner.apiKey, { name: 'Unchanged' });
    const res = await patch(listing.id, { name: 'Changed', seller_id: 'agt_00000000000000000000000000' });
    expectError(res, 400, 'VALIDATION_FAILED');
    expect(res.body.error.message).toContain('seller_id');
    expectError(await patch(listing.id, { private_endpoint_url: 'https://93.184.216.34/' }), 400, 'VALIDATION_FAILED');
    expectError(await patch(listing.id, { gateway_url: 'https://evil.example/' }), 400, 'VALIDATION_FAILED');
    const got = await plane.call('GET', `/api/v1/listings/${listing.id}`);
    expect(got.body.data.name).toBe('Unchanged');
  });

  it('refuses an empty PATCH body {} with 400 VALIDATION_FAILED', async () => {
    const { listing } = await plane.createListing(owner.apiKey);
    expectError(await patch(listing.id, {}), 400, 'VALIDATION_FAILED');
  });

  it('refuses invalid values with 400 VALIDATION_FAILED', async () => {
    const { listing } = await plane.createListing(owner.apiKey);
    expectError(await patch(listing.id, { name: '' }), 400, 'VALIDATION_FAILED');
    // Names and descriptions are trimmed: blank ones would be stored empty.
    expectError(await patch(listing.id, { name: '   ' }), 400, 'VALIDATION_FAILED');
    expectError(await patch(listing.id, { description: ' \n\t ' }), 400, 'VALIDATION_FAILED');
    expectError(await patch(listing.id, { name: 42 }), 400, 'VALIDATION_FAILED');
    expectError(await patch(listing.id, { description: 'x'.repeat(4001) }), 400, 'VALIDATION_FAILED');
    expectError(await patch(listing.id, { price: { amount: '1', extra: true } }), 400, 'VALIDATION_FAILED');
    expectError(await patch(listing.id, []), 400, 'VALIDATION_FAILED');
  });

  it('needs an API key', async () => {
    const { listing } = await plane.createListing(owner.apiKey);
    expectError(
      await plane.call('PATCH', `/api/v1/listings/${listing.id}`, { body: { name: 'x' } }),
      401,
      'AUTH_REQUIRED',
    );
    expectError(await plane.call('DELETE', `/api/v1/listings/${listing.id}`), 401, 'AUTH_REQUIRED');
  });
});
