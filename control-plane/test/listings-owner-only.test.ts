import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';
import { expectError, withoutRequestId } from './listing-support.js';

/**
 * §3.2: only the owner may change a listing or see its endpoint. To anyone else, those routes answer exactly as for
 * an id that does not exist: 404 LISTING_NOT_FOUND with the same body, never a hint that the listing exists.
 */
describe("another agent's listing is not found on owner-only routes", () => {
  let plane: TestPlane;
  let owner: { apiKey: string; agentId: string };
  let intruder: { apiKey: string; agentId: string };
  let listing: any;
  const unknownId = 'lst_00000000000000000000000000';

  beforeAll(async () => {
    plane = await startTestControlPlane();
    owner = await plane.register('owner');
    intruder = await plane.register('intruder');
    ({ listing } = await plane.createListing(owner.apiKey, {
      name: 'Private business',
      pricing_model: 'per_call',
      price: { amount: '0.2' },
    }));
  });
  afterAll(async () => {
    await plane?.stop();
  });

  const routes: [string, string, unknown][] = [
    ['PATCH', '', { name: 'Hijacked' }],
    ['PATCH', '', { status: 'paused' }],
    ['DELETE', '', undefined],
    ['GET', '/endpoint', undefined],
    ['PUT', '/endpoint', { private_endpoint_url: 'https://93.184.216.34/steal' }],
    ['POST', '/endpoint/rotate-secret', undefined],
  ];

  it.each(routes)('%s /api/v1/listings/:id%s answers as for an unknown id', async (method, suffix, body) => {
    const options = { key: intruder.apiKey, ...(body === undefined ? {} : { body }) };
    const theirs = await plane.call(method, `/api/v1/listings/${listing.id}${suffix}`, options);
    const unknown = await plane.call(method, `/api/v1/listings/${unknownId}${suffix}`, options);
    expectError(theirs, 404, 'LISTING_NOT_FOUND');
    expectError(unknown, 404, 'LISTING_NOT_FOUND');
    expect(withoutRequestId(theirs.body)).toEqual(withoutRequestId(unknown.body));
    expect(theirs.headers.get('content-type')).toBe(unknown.headers.get('content-type'));
    expect(theirs.text).not.toContain(owner.agentId);
    expect(theirs.text).not.toContain('Private business');
  });

  it('leaves the listing, its endpoint and its keys untouched', async () => {
    const got = await plane.call('GET', `/api/v1/listings/${listing.id}`);
    expect(got.status, got.text).toBe(200);
    expect(got.body.data).toMatchObject({ name: 'Private business', status: 'active', seller_id: owner.agentId });
    expect(got.body.data.updated_at).toBe(listing.updated_at);

    const endpoint = await plane.call('GET', `/api/v1/listings/${listing.id}/endpoint`, { key: owner.apiKey });
    expect(endpoint.status, endpoint.text).toBe(200);
    expect(endpoint.body.data.host).toBe('127.0.0.1:9');
    expect(endpoint.body.data.keys).toHaveLength(1);
    expect(endpoint.body.data.keys[0].status).toBe('current');
  });

  it('still lets anyone read the active listing itself', async () => {
    const got = await plane.call('GET', `/api/v1/listings/${listing.id}`, { key: intruder.apiKey });
    expect(got.status, got.text).toBe(200);
    expect(got.body.data.id).toBe(listing.id);
  });

  it('answers a malformed id like an unknown one on owner routes', async () => {
    for (const id of ['nope', 'lst_', 'agt_00000000000000000000000000']) {
      const res = await plane.call('GET', `/api/v1/listings/${id}/endpoint`, { key: intruder.apiKey });
      expectError(res, 404, 'LISTING_NOT_FOUND');
    }
  });

  it('needs an API key for the endpoint routes', async () => {
    expectError(await plane.call('GET', `/api/v1/listings/${listing.id}/endpoint`), 401, 'AUTH_REQUIRED');
    expectError(
      await plane.call('PUT', `/api/v1/listings/${listing.id}/endpoint`, {
        body: { private_endpoint_url: 'https://93.184.216.34/' },
      }),
      401,
      'AUTH_REQUIRED',
    );
    expectError(
      await plane.call('POST', `/api/v1/listings/${listing.id}/endpoint/rotate-secret`),
      401,
      'AUTH_REQUIRED',
    );
  });
});
