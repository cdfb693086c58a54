import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';
import { expectError } from './listing-support.js';

/** §3.2: DELETE archives a listing; an archived listing leaves the marketplace and can no longer change. */
describe('DELETE /api/v1/listings/:id archives', () => {
  let plane: TestPlane;
  let owner: { apiKey: string; agentId: string };
  let other: { apiKey: string; agentId: string };
  let listing: any;
  let archived: any;

  beforeAll(async () => {
    plane = await startTestControlPlane();
    owner = await plane.register('owner');
    other = await plane.register('other');
    ({ listing } = await plane.createListing(owner.apiKey, {
      name: 'Retiring',
      pricing_model: 'per_call',
      price: { amount: '1' },
    }));
    const res = await plane.call('DELETE', `/api/v1/listings/${listing.id}`, { key: owner.apiKey });
    expect(res.status, res.text).toBe(200);
    archived = res.body.data;
  });
  afterAll(async () => {
    await plane?.stop();
  });

  it('returns the archived listing', () => {
    expect(archived).toMatchObject({ id: listing.id, status: 'archived', name: 'Retiring', seller_id: owner.agentId });
    expect(archived.price.amount_atomic).toBe('1000000');
  });

  it('keeps the row (history is kept)', async () => {
    const { rows } = await plane.deps.pool.query('SELECT status FROM listings WHERE id = $1', [listing.id]);
    expect(rows).toEqual([{ status: 'archived' }]);
  });

  it('is idempotent for the owner and keeps the first archive time', async () => {
    const again = await plane.call('DELETE', `/api/v1/listings/${listing.id}`, { key: owner.apiKey });
    expect(again.status, again.text).toBe(200);
    expect(again.body.data.status).toBe('archived');
    expect(again.body.data.updated_at).toBe(archived.updated_at);
  });

  it('refuses PATCH of an archived listing with 409 LISTING_ARCHIVED', async () => {
    expectError(
      await plane.call('PATCH', `/api/v1/listings/${listing.id}`, { key: owner.apiKey, body: { name: 'Back' } }),
      409,
      'LISTING_ARCHIVED',
    );
    expectError(
      await plane.call('PATCH', `/api/v1/listings/${listing.id}`, { key: owner.apiKey, body: { status: 'active' } }),
      409,
      'LISTING_ARCHIVED',
    );
    const { rows } = await plane.deps.pool.query('SELECT status, name FROM listings WHERE id = $1', [listing.id]);
    expect(rows).toEqual([{ status: 'archived', name: 'Retiring' }]);
  });

  it('refuses endpoint changes and secret rotation of an archived listing with 409 LISTING_ARCHIVED', async () => {
    expectError(
      await plane.call('PUT', `/api/v1/listings/${listing.id}/endpoint`, {
        key: owner.apiKey,
        body: { private_endpoint_url: 'https://93.184.216.34/new' },
      }),
      409,
      'LISTING_ARCHIVED',
    );
    expectError(
      await plane.call('POST', `/api/v1/listings/${listing.id}/endpoint/rotate-secret`, { key: owner.apiKey }),
      409,
      'LISTING_ARCHIVED',
    );
    const { rows } = await plane.deps.pool.query(
      'SELECT count(*)::int AS n FROM listing_signing_keys WHERE listing_id = $1',
      [listing.id],
    );
    expect(rows[0].n).toBe(1);
  });

  it('still shows its owner the endpoint metadata', async () => {
    const res = await plane.call('GET', `/api/v1/listings/${listing.id}/endpoint`, { key: owner.apiKey });
    expect(res.status, res.text).toBe(200);
    expect(res.body.data.host).toBe('127.0.0.1:9');
  });

  it('is not found by id for anyone but its owner', async () => {
    expectError(await plane.call('GET', `/api/v1/listings/${listing.id}`), 404, 'LISTING_NOT_FOUND');
    expectError(
      await plane.call('GET', `/api/v1/listings/${listing.id}`, { key: other.apiKey }),
      404,
      'LISTING_NOT_FOUND',
    );
    const own = await plane.call('GET', `/api/v1/listings/${listing.id}`, { key: owner.apiKey });
    expect(own.status, own.text).toBe(200);
    expect(own.body.data.status).toBe('archived');
  });

  it('leaves the marketplace', async () => {
    const res = await plane.call('GET', '/api/v1/listings?limit=100');
    expect(res.body.data.map((l: any) => l.id)).not.toContain(listing.id);
    const mine = await plane.call('GET', `/api/v1/listings?seller_id=${owner.agentId}`, { key: owner.apiKey });
    expect(mine.body.data.map((l: any) => l.id)).not.toContain(listing.id);
  });

  it("cannot be archived by another agent: another agent's DELETE is LISTING_NOT_FOUND", async () => {
    const { listing: live } = await plane.createListing(owner.apiKey);
    expectError(
      await plane.call('DELETE', `/api/v1/listings/${live.id}`, { key: other.apiKey }),
      404,
      'LISTING_NOT_FOUND',
    );
    const got = await plane.call('GET', `/api/v1/listings/${live.id}`);
    expect(got.body.data.status).toBe('active');
  });

  it('archives a paused listing too', async () => {
    const { listing: paused } = await plane.createListing(owner.apiKey);
    await plane.call('PATCH', `/api/v1/listings/${paused.id}`, { key: owner.apiKey, body: { status: 'paused' } });
    const res = await plane.call('DELETE', `/api/v1/listings/${paused.id}`, { key: owner.apiKey });
    expect(res.status, res.text).toBe(200);
    expect(res.body.data.status).toBe('archived');
  });
});
