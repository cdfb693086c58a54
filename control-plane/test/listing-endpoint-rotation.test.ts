import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';

/**
 * §3.2: rotating the signing secret returns a new one; the previous stays valid for the overlap window (24 h by
 * default) and any older key still inside its window ends at once.
 */
describe('POST /api/v1/listings/:id/endpoint/rotate-secret', () => {
  let plane: TestPlane;
  let owner: { apiKey: string; agentId: string };
  let listing: any;
  let firstKeyId: string;
  let firstSecret: string;
  let second: any;
  let third: any;

  beforeAll(async () => {
    plane = await startTestControlPlane();
    owner = await plane.register('owner');
    ({ listing, keyId: firstKeyId, signingSecret: firstSecret } = await plane.createListing(owner.apiKey));
  });
  afterAll(async () => {
    await plane?.stop();
  });

  const rotate = () =>
    plane.call('POST', `/api/v1/listings/${listing.id}/endpoint/rotate-secret`, { key: owner.apiKey });
  const metadata = async () => {
    const res = await plane.call('GET', `/api/v1/listings/${listing.id}/endpoint`, { key: owner.apiKey });
    expect(res.status, res.text).toBe(200);
    return res.body.data;
  };
  const secretOf = async (keyId: string): Promise<string> => {
    const { rows } = await plane.deps.pool.query('SELECT secret_enc FROM listing_signing_keys WHERE id = $1', [keyId]);
    return plane.deps.box.open(rows[0].secret_enc, `listing:${listing.id}:signing_key:${keyId}`);
  };

  it('returns a new secret and the previous key with its expiry ≈ now + 24 h', async () => {
    const before = Date.now();
    const res = await rotate();
    expect(res.status, res.text).toBe(200);
    second = res.body.data;
    expect(second).toEqual({
      signing_secret: expect.stringMatching(/^crs_[A-Za-z0-9_-]{40,}$/),
      key_id: expect.stringMatching(/^sk_/),
      previous_key_id: firstKeyId,
      previous_expires_at: expect.any(String),
    });
    expect(second.signing_secret).not.toBe(firstSecret);
    expect(second.key_id).not.toBe(firstKeyId);
    const expiresAt = new Date(second.previous_expires_at).getTime();
    const day = 24 * 3600 * 1000;
    expect(expiresAt).toBeGreaterThanOrEqual(before + day - 5000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + day + 5000);
  });

  it('stores the new secret so it opens to exactly what was returned', async () => {
    expect(await secretOf(second.key_id)).toBe(second.signing_secret);
    expect(await secretOf(firstKeyId)).toBe(firstSecret);
  });

  it('shows the current and previous keys in the metadata, never a secret', async () => {
    const res = await plane.call('GET', `/api/v1/listings/${listing.id}/endpoint`, { key: owner.apiKey });
    expect(res.body.data.keys).toEqual([
      {
        key_id: second.key_id,
        status: 'current',
        created_at: expect.any(String),
        age_seconds: expect.any(Number),
        expires_at: null,
      },
      {
        key_id: firstKeyId,
        status: 'previous',
        created_at: expect.any(String),
        age_seconds: expect.any(Number),
        expires_at: expect.any(String),
      },
    ]);
    expect(new Date(res.body.data.keys[1].expires_at).getTime()).toBe(new Date(second.previous_expires_at).getTime());
    expect(res.text).not.toContain(second.signing_secret);
    expect(res.text).not.toContain(firstSecret);
    expect(res.text).not.toContain('crs_');
  });

  it('a second rotation expires the oldest key at once and keeps one previous key', async () => {
    const before = Date.now();
    const res = await rotate();
    expect(res.status, res.text).toBe(200);
    third = res.body.data;
    expect(third.previous_key_id).toBe(second.key_id);
    expect(new Date(third.previous_expires_at).getTime()).toBeGreaterThanOrEqual(before + 24 * 3600 * 1000 - 5000);
    expect(new Set([firstSecret, second.signing_secret, third.signing_secret]).size).toBe(3);

    const data = await metadata();
    expect(data.keys.map((k: any) => [k.key_id, k.status])).toEqual([
      [third.key_id, 'current'],
      [second.key_id, 'previous'],
      [firstKeyId, 'expired'],
    ]);
    const oldest = data.keys[2];
    expect(new Date(oldest.expires_at).getTime()).toBeLessThanOrEqual(Date.now());
    expect(new Date(oldest.expires_at).getTime()).toBeGreaterThanOrEqual(before - 5000);
  });

  it('keeps exactly one current key and at most one key inside its overlap window', async () => {
    const { rows } = await plane.deps.pool.query(
      `SELECT count(*) FILTER (WHERE expires_at IS NULL)::int AS current,
              count(*) FILTER (WHERE expires_at > now())::int AS overlapping
         FROM listing_signing_keys WHERE listing_id = $1`,
      [listing.id],
    );
    expect(rows[0]).toEqual({ current: 1, overlapping: 1 });
  });

  it('serialises concurrent rotations: still one current key and one previous', async () => {
    const results = await Promise.all([rotate(), rotate(), rotate()]);
    for (const res of results) expect(res.status, res.text).toBe(200);
    const data = await metadata();
    expect(data.keys.filter((k: any) => k.status === 'current')).toHaveLength(1);
    expect(data.keys.filter((k: any) => k.status === 'previous')).toHaveLength(1);
    const previousIds = new Set(results.map((r) => r.body.data.previous_key_id));
    expect(previousIds.size).toBe(3);
  });

  it('does not touch another listing of the same owner', async () => {
    const { listing: other, keyId } = await plane.createListing(owner.apiKey);
    const res = await plane.call('GET', `/api/v1/listings/${other.id}/endpoint`, { key: owner.apiKey });
    expect(res.body.data.keys.map((k: any) => [k.key_id, k.status])).toEqual([[keyId, 'current']]);
  });
});

describe('rotate-secret with a configured overlap window', () => {
  let plane: TestPlane;

  beforeAll(async () => {
    plane = await startTestControlPlane({ CROCHET_SECRET_OVERLAP_SECONDS: '0' });
  });
  afterAll(async () => {
    await plane?.stop();
  });

  it('with no overlap the previous key is expired at once', async () => {
    const owner = await plane.register('owner');
    const { listing, keyId } = await plane.createListing(owner.apiKey);
    const res = await plane.call('POST', `/api/v1/listings/${listing.id}/endpoint/rotate-secret`, {
      key: owner.apiKey,
    });
    expect(res.status, res.text).toBe(200);
    expect(res.body.data.previous_key_id).toBe(keyId);
    expect(new Date(res.body.data.previous_expires_at).getTime()).toBeLessThanOrEqual(Date.now() + 1000);
    const meta = await plane.call('GET', `/api/v1/listings/${listing.id}/endpoint`, { key: owner.apiKey });
    expect(meta.body.data.keys.map((k: any) => k.status)).toEqual(['current', 'expired']);
  });
});
