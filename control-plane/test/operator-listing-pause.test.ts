import { redisKeys } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, TEST_REDIS_URL, type TestPlane } from './helpers.js';
import { claimAgent, type OperatorClient, signUpOperator } from './operator-support.js';

/**
 * §3.7: an operator's pause of a listing holds until the operator resumes it. The seller agent cannot lift it with
 * PATCH status (LISTING_PAUSED_BY_OPERATOR), in PostgreSQL or in the config the proxies read; it can still edit other
 * fields, archive the listing, and pause and resume its own listings as before.
 */
let plane: TestPlane;
let redis: Redis;
let operator: OperatorClient;
let agent: { apiKey: string; agentId: string };
let stranger: { apiKey: string; agentId: string };

beforeAll(async () => {
  plane = await startTestControlPlane();
  redis = new Redis(TEST_REDIS_URL);
  operator = await signUpOperator(plane.url);
  agent = await plane.register('held');
  stranger = await plane.register('stranger');
  await claimAgent(plane.url, operator, agent.apiKey);
});
afterAll(async () => {
  redis?.disconnect();
  await plane?.stop();
});

const published = async (listingId: string) =>
  JSON.parse((await redis.hget(redisKeys(plane.config.redisPrefix).configListings, listingId)) ?? 'null');
const stored = async (listingId: string) =>
  (
    await plane.deps.pool.query<{ status: string; operator_paused_at: Date | null; description: string }>(
      'SELECT status, operator_paused_at, description FROM listings WHERE id = $1',
      [listingId],
    )
  ).rows[0]!;
const patch = (listingId: string, body: unknown) =>
  plane.call('PATCH', `/api/v1/listings/${listingId}`, { key: agent.apiKey, body });
const getOwn = (listingId: string) => plane.call('GET', `/api/v1/listings/${listingId}`, { key: agent.apiKey });

describe('an operator pause of a listing', () => {
  it('cannot be lifted by the seller agent, which can still edit other fields; the operator resumes it', async () => {
    const listingId = (await plane.createListing(agent.apiKey)).listing.id as string;
    const paused = await operator.call('POST', `/api/v1/operator/listings/${listingId}/pause`);
    expect(paused.status, paused.text).toBe(200);
    expect(paused.body.data).toMatchObject({ status: 'paused', paused_by: 'operator' });
    expect((await stored(listingId)).operator_paused_at).toBeInstanceOf(Date);
    expect((await getOwn(listingId)).body.data).toMatchObject({ status: 'paused', paused_by: 'operator' });

    for (const body of [{ status: 'active' }, { status: 'active', description: 'Sneaked in' }]) {
      const refused = await patch(listingId, body);
      expect([refused.status, refused.body.error?.code], JSON.stringify(body)).toEqual([
        409,
        'LISTING_PAUSED_BY_OPERATOR',
      ]);
      expect(refused.body.error.hint).toMatch(/operator to resume it on the dashboard/);
    }
    expect(await stored(listingId)).toMatchObject({ status: 'paused', operator_paused_at: expect.any(Date) });
    expect((await stored(listingId)).description).not.toBe('Sneaked in');
    expect((await published(listingId)).status).toBe('paused');

    // Other fields, and re-sending 'paused', stay allowed; the pause stays the operator's.
    const edited = await patch(listingId, { description: 'Still echoes', status: 'paused' });
    expect(edited.status, edited.text).toBe(200);
    expect(edited.body.data).toMatchObject({ description: 'Still echoes', status: 'paused', paused_by: 'operator' });
    expect((await published(listingId)).status).toBe('paused');
    expect((await patch(listingId, { status: 'active' })).status).toBe(409);

    const overview = await operator.call('GET', '/api/v1/operator/overview');
    const listed = overview.body.data.agents.flatMap((a: { listings: { id: string }[] }) => a.listings);
    expect(listed.find((l: { id: string }) => l.id === listingId)).toMatchObject({
      status: 'paused',
      paused_by: 'operator',
    });

    const resumed = await operator.call('POST', `/api/v1/operator/listings/${listingId}/resume`);
    expect(resumed.status, resumed.text).toBe(200);
    expect(resumed.body.data.status).toBe('active');
    expect(await stored(listingId)).toMatchObject({ status: 'active', operator_paused_at: null });
    expect((await published(listingId)).status).toBe('active');
    expect((await getOwn(listingId)).body.data.paused_by).toBeNull();

    // Back in the seller's hands.
    expect((await patch(listingId, { status: 'paused' })).body.data.paused_by).toBe('seller');
    expect((await patch(listingId, { status: 'active' })).body.data.status).toBe('active');
  });

  it('takes over a pause the seller made, and pausing twice keeps its first time', async () => {
    const listingId = (await plane.createListing(agent.apiKey, { name: 'Twice' })).listing.id as string;
    expect((await patch(listingId, { status: 'paused' })).status).toBe(200);
    await operator.call('POST', `/api/v1/operator/listings/${listingId}/pause`);
    const first = (await stored(listingId)).operator_paused_at;
    await operator.call('POST', `/api/v1/operator/listings/${listingId}/pause`);
    expect((await stored(listingId)).operator_paused_at).toEqual(first);
    expect((await patch(listingId, { status: 'active' })).body.error.code).toBe('LISTING_PAUSED_BY_OPERATOR');
    expect((await published(listingId)).status).toBe('paused');
  });

  it('lets the seller archive the listing, which then stays archived', async () => {
    const listingId = (await plane.createListing(agent.apiKey, { name: 'Gone' })).listing.id as string;
    await operator.call('POST', `/api/v1/operator/listings/${listingId}/pause`);
    const archived = await plane.call('DELETE', `/api/v1/listings/${listingId}`, { key: agent.apiKey });
    expect(archived.status, archived.text).toBe(200);
    expect(archived.body.data).toMatchObject({ status: 'archived', paused_by: null });
    expect((await published(listingId)).status).toBe('archived');
    const resume = await operator.call('POST', `/api/v1/operator/listings/${listingId}/resume`);
    expect([resume.status, resume.body.error.code]).toEqual([409, 'LISTING_ARCHIVED']);
    expect((await patch(listingId, { status: 'active' })).body.error.code).toBe('LISTING_ARCHIVED');
    expect((await stored(listingId)).status).toBe('archived');
  });

  it('is enforced by PostgreSQL too: an operator-paused listing cannot be active', async () => {
    const listingId = (await plane.createListing(agent.apiKey, { name: 'Checked' })).listing.id as string;
    await operator.call('POST', `/api/v1/operator/listings/${listingId}/pause`);
    await expect(
      plane.deps.pool.query(`UPDATE listings SET status = 'active' WHERE id = $1`, [listingId]),
    ).rejects.toMatchObject({ code: '23514' });
  });
});

describe('a seller-only pause', () => {
  it('is undone by the seller, and who paused shows only to the owner', async () => {
    const listingId = (await plane.createListing(agent.apiKey, { name: 'Own' })).listing.id as string;
    const paused = await patch(listingId, { status: 'paused' });
    expect(paused.body.data).toMatchObject({ status: 'paused', paused_by: 'seller' });
    expect((await published(listingId)).status).toBe('paused');
    const mine = await plane.call('GET', `/api/v1/listings?seller_id=${agent.agentId}&status=paused`, {
      key: agent.apiKey,
    });
    expect(mine.body.data.find((l: { id: string }) => l.id === listingId)?.paused_by).toBe('seller');
    const seen = await plane.call('GET', `/api/v1/listings/${listingId}`, { key: stranger.apiKey });
    expect(seen.status).toBe(200);
    expect(seen.body.data).not.toHaveProperty('paused_by');

    const resumed = await patch(listingId, { status: 'active' });
    expect(resumed.status, resumed.text).toBe(200);
    expect(resumed.body.data).toMatchObject({ status: 'active', paused_by: null });
    expect(await stored(listingId)).toMatchObject({ status: 'active', operator_paused_at: null });
    expect((await published(listingId)).status).toBe('active');
  });
});
