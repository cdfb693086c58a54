import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { solveChallenge, solvesChallenge } from '../src/pow.js';
import { startTestControlPlane, type TestPlane } from './helpers.js';
import { expectError, listingBody } from './listing-support.js';

/**
 * §3.2: creating a listing spends a proof-of-work challenge issued for that purpose to that agent. A challenge is
 * single-use, expires, and a challenge of another purpose or another agent does not exist for this request.
 */
describe('POST /api/v1/listings proof-of-work', () => {
  let plane: TestPlane;
  let seller: { apiKey: string; agentId: string };
  let other: { apiKey: string; agentId: string };

  beforeAll(async () => {
    plane = await startTestControlPlane();
    seller = await plane.register('seller');
    other = await plane.register('other');
  });
  afterAll(async () => {
    await plane?.stop();
  });

  const create = (body: Record<string, unknown>, apiKey = seller.apiKey) =>
    plane.call('POST', '/api/v1/listings', { key: apiKey, body });

  it('issues a sha256 challenge with the configured difficulty', async () => {
    const res = await plane.call('POST', '/api/v1/listings/challenge', { key: seller.apiKey });
    expect(res.status, res.text).toBe(201);
    expect(res.body.data).toMatchObject({
      challenge_id: expect.stringMatching(/^chl_/),
      algorithm: 'sha256',
      salt: expect.stringMatching(/^[0-9a-f]+$/),
      difficulty: 4,
    });
    const expiresAt = new Date(res.body.data.expires_at).getTime();
    expect(expiresAt).toBeGreaterThan(Date.now());
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + (plane.config.powTtlSeconds + 5) * 1000);
  });

  it('refuses a challenge used twice with CHALLENGE_ALREADY_USED', async () => {
    const body = await listingBody(plane, seller.apiKey);
    const first = await create(body);
    expect(first.status, first.text).toBe(201);
    expectError(await create({ ...body, name: 'Another' }), 409, 'CHALLENGE_ALREADY_USED');
  });

  it('refuses a registration challenge with CHALLENGE_NOT_FOUND', async () => {
    const challenge = await plane.call('POST', '/api/v1/auth/challenge');
    expect(challenge.status, challenge.text).toBe(201);
    const body = {
      ...(await listingBody(plane, seller.apiKey)),
      challenge_id: challenge.body.data.challenge_id,
      nonce: solveChallenge(challenge.body.data.salt, challenge.body.data.difficulty),
    };
    expectError(await create(body), 400, 'CHALLENGE_NOT_FOUND');
  });

  it("refuses another agent's listing challenge with CHALLENGE_NOT_FOUND", async () => {
    const othersBody = await listingBody(plane, other.apiKey);
    expectError(await create(othersBody, seller.apiKey), 400, 'CHALLENGE_NOT_FOUND');
    // It was not spent by the refused attempt: its owner can still use it.
    const own = await create(othersBody, other.apiKey);
    expect(own.status, own.text).toBe(201);
    expect(own.body.data.listing.seller_id).toBe(other.agentId);
  });

  it('refuses an unknown challenge id with CHALLENGE_NOT_FOUND', async () => {
    const body = await listingBody(plane, seller.apiKey);
    expectError(await create({ ...body, challenge_id: 'chl_00000000000000000000000000' }), 400, 'CHALLENGE_NOT_FOUND');
  });

  it('refuses a wrong nonce with POW_INVALID, and the challenge can still be solved', async () => {
    const body = await listingBody(plane, seller.apiKey);
    const { rows } = await plane.deps.pool.query('SELECT salt, difficulty FROM pow_challenges WHERE id = $1', [
      body['challenge_id'],
    ]);
    let wrong = 0;
    while (solvesChallenge(rows[0].salt, String(wrong), rows[0].difficulty)) wrong++;
    expectError(await create({ ...body, nonce: String(wrong) }), 400, 'POW_INVALID');
    const right = await create(body);
    expect(right.status, right.text).toBe(201);
  });

  it('refuses an expired challenge with CHALLENGE_EXPIRED', async () => {
    const body = await listingBody(plane, seller.apiKey);
    await plane.deps.pool.query("UPDATE pow_challenges SET expires_at = now() - interval '1 second' WHERE id = $1", [
      body['challenge_id'],
    ]);
    expectError(await create(body), 400, 'CHALLENGE_EXPIRED');
  });

  it('refuses a malformed challenge id or nonce with VALIDATION_FAILED', async () => {
    const body = await listingBody(plane, seller.apiKey);
    expectError(await create({ ...body, nonce: '12a' }), 400, 'VALIDATION_FAILED');
    expectError(await create({ ...body, nonce: 12 }), 400, 'VALIDATION_FAILED');
    expectError(await create({ ...body, challenge_id: 'not-a-challenge' }), 400, 'VALIDATION_FAILED');
  });
});
