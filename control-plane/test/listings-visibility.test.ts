import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';
import { expectError } from './listing-support.js';

/**
 * §3.2: others browse active listings only. The owner sees their paused listings when browsing their own seller_id,
 * and their archived ones with status=archived.
 */
describe('GET /api/v1/listings visibility of paused and archived listings', () => {
  let plane: TestPlane;
  let owner: { apiKey: string; agentId: string };
  let other: { apiKey: string; agentId: string };
  let activeId: string;
  let pausedId: string;
  let archivedId: string;

  beforeAll(async () => {
    plane = await startTestControlPlane();
    owner = await plane.register('owner');
    other = await plane.register('other');
    activeId = (await plane.createListing(owner.apiKey, { name: 'Active one', tags: ['vis'] })).listing.id;
    pausedId = (await plane.createListing(owner.apiKey, { name: 'Paused one', tags: ['vis'] })).listing.id;
    archivedId = (await plane.createListing(owner.apiKey, { name: 'Archived one', tags: ['vis'] })).listing.id;
    const paused = await plane.call('PATCH', `/api/v1/listings/${pausedId}`, {
      key: owner.apiKey,
      body: { status: 'paused' },
    });
    expect(paused.status, paused.text).toBe(200);
    const archived = await plane.call('DELETE', `/api/v1/listings/${archivedId}`, { key: owner.apiKey });
    expect(archived.status, archived.text).toBe(200);
  });
  afterAll(async () => {
    await plane?.stop();
  });

  const ids = async (query: string, key?: string): Promise<string[]> => {
    const res = await plane.call('GET', `/api/v1/listings${query}`, key ? { key } : {});
    expect(res.status, res.text).toBe(200);
    return res.body.data.map((l: any) => l.id);
  };

  it('hides paused and archived listings from anonymous browsing, search and filters', async () => {
    expect(await ids('')).toEqual([activeId]);
    expect(await ids('?q=one')).toEqual([activeId]);
    expect(await ids('?tag=vis')).toEqual([activeId]);
    expect(await ids(`?seller_id=${owner.agentId}`)).toEqual([activeId]);
  });

  it('hides them from another agent, even when it asks for a status or the seller_id', async () => {
    expect(await ids('', other.apiKey)).toEqual([activeId]);
    expect(await ids(`?seller_id=${owner.agentId}`, other.apiKey)).toEqual([activeId]);
    expect(await ids(`?seller_id=${owner.agentId}&status=paused`, other.apiKey)).toEqual([activeId]);
    expect(await ids(`?seller_id=${owner.agentId}&status=archived`, other.apiKey)).toEqual([activeId]);
    expect(await ids(`?seller_id=${owner.agentId}&status=archived`)).toEqual([activeId]);
  });

  it('hides them from the owner in the public marketplace view', async () => {
    expect(await ids('', owner.apiKey)).toEqual([activeId]);
  });

  it('shows the owner its paused listing with seller_id=own id, but not the archived one', async () => {
    expect((await ids(`?seller_id=${owner.agentId}`, owner.apiKey)).sort()).toEqual([activeId, pausedId].sort());
    expect(await ids(`?seller_id=${owner.agentId}&status=paused`, owner.apiKey)).toEqual([pausedId]);
    expect(await ids(`?seller_id=${owner.agentId}&status=active`, owner.apiKey)).toEqual([activeId]);
  });

  it('shows the owner its archived listing with status=archived', async () => {
    const res = await plane.call('GET', `/api/v1/listings?seller_id=${owner.agentId}&status=archived`, {
      key: owner.apiKey,
    });
    expect(res.status, res.text).toBe(200);
    expect(res.body.data.map((l: any) => [l.id, l.status])).toEqual([[archivedId, 'archived']]);
  });

  it('paginates the owner view too', async () => {
    const first = await plane.call('GET', `/api/v1/listings?seller_id=${owner.agentId}&sort=newest&limit=1`, {
      key: owner.apiKey,
    });
    expect(first.body.data.map((l: any) => l.id)).toEqual([pausedId]);
    const second = await plane.call(
      'GET',
      `/api/v1/listings?seller_id=${owner.agentId}&sort=newest&limit=1&cursor=${first.body.next_cursor}`,
      { key: owner.apiKey },
    );
    expect(second.body.data.map((l: any) => l.id)).toEqual([activeId]);
    expect(second.body.next_cursor).toBeNull();
  });

  it('GET by id: a paused listing stays readable, an archived one is not found except by its owner', async () => {
    const paused = await plane.call('GET', `/api/v1/listings/${pausedId}`);
    expect(paused.status, paused.text).toBe(200);
    expect(paused.body.data.status).toBe('paused');

    const unknown = await plane.call('GET', '/api/v1/listings/lst_00000000000000000000000000');
    expectError(unknown, 404, 'LISTING_NOT_FOUND');
    expectError(await plane.call('GET', `/api/v1/listings/${archivedId}`), 404, 'LISTING_NOT_FOUND');
    const byOther = await plane.call('GET', `/api/v1/listings/${archivedId}`, { key: other.apiKey });
    expectError(byOther, 404, 'LISTING_NOT_FOUND');
    expect({ ...byOther.body.error, request_id: '' }).toEqual({ ...unknown.body.error, request_id: '' });

    const byOwner = await plane.call('GET', `/api/v1/listings/${archivedId}`, { key: owner.apiKey });
    expect(byOwner.status, byOwner.text).toBe(200);
    expect(byOwner.body.data.status).toBe('archived');
  });

  it('refuses an unusable seller_id or status with VALIDATION_FAILED', async () => {
    expectError(await plane.call('GET', '/api/v1/listings?seller_id=alice'), 400, 'VALIDATION_FAILED');
    expectError(await plane.call('GET', '/api/v1/listings?status=deleted'), 400, 'VALIDATION_FAILED');
  });
});
