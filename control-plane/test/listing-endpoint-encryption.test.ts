import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';

/**
 * §3.2: the private endpoint URL and the signing secrets are stored encrypted. Reading the database shows neither
 * the URL (nor its path or query) nor a secret in plain text, and a value sealed for one row does not open in another.
 */
describe('endpoint URL and signing secrets are encrypted at rest', () => {
  let plane: TestPlane;
  let owner: { apiKey: string; agentId: string };
  let listing: any;
  let keyId: string;
  let secret: string;
  let rotated: any;
  const createdUrl = 'https://93.184.216.34/private/route-one?api_token=plaintext-token-1';
  const updatedUrl = 'https://93.184.216.34:8443/private/route-two?api_token=plaintext-token-2';

  beforeAll(async () => {
    plane = await startTestControlPlane();
    owner = await plane.register('owner');
    ({
      listing,
      keyId,
      signingSecret: secret,
    } = await plane.createListing(owner.apiKey, { private_endpoint_url: createdUrl }));
  });
  afterAll(async () => {
    await plane?.stop();
  });

  /** Every text value of every column of a table, as PostgreSQL renders the rows. */
  const dump = async (table: 'listings' | 'listing_signing_keys'): Promise<string> => {
    const { rows } = await plane.deps.pool.query(`SELECT t::text AS row FROM ${table} t`);
    return rows.map((r: any) => r.row).join('\n');
  };
  const storedUrl = async (): Promise<string> => {
    const { rows } = await plane.deps.pool.query('SELECT endpoint_url_enc FROM listings WHERE id = $1', [listing.id]);
    return rows[0].endpoint_url_enc;
  };

  it('stores the URL sealed, not in plain text', async () => {
    const sealed = await storedUrl();
    expect(sealed).toMatch(/^v1\.[^.]+\.[^.]+\.[^.]+\.[^.]+$/);
    for (const fragment of [createdUrl, '/private/route-one', 'route-one', 'plaintext-token-1', 'api_token']) {
      expect(sealed).not.toContain(fragment);
    }
    const all = await dump('listings');
    for (const fragment of ['route-one', 'plaintext-token-1', 'api_token']) expect(all).not.toContain(fragment);
    expect(plane.deps.box.open(sealed, `listing:${listing.id}:endpoint_url`)).toBe(createdUrl);
  });

  it('stores the signing secret sealed, not in plain text', async () => {
    const { rows } = await plane.deps.pool.query(
      'SELECT id, secret_enc FROM listing_signing_keys WHERE listing_id = $1',
      [listing.id],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0].id).toBe(keyId);
    expect(rows[0].secret_enc).not.toContain(secret);
    expect(rows[0].secret_enc).not.toContain(secret.slice(4));
    expect(rows[0].secret_enc).not.toContain('crs_');
    expect(await dump('listing_signing_keys')).not.toContain(secret.slice(4, 20));
    expect(plane.deps.box.open(rows[0].secret_enc, `listing:${listing.id}:signing_key:${keyId}`)).toBe(secret);
  });

  it('keeps a URL saved with PUT sealed too, with a fresh ciphertext', async () => {
    const before = await storedUrl();
    const res = await plane.call('PUT', `/api/v1/listings/${listing.id}/endpoint`, {
      key: owner.apiKey,
      body: { private_endpoint_url: updatedUrl },
    });
    expect(res.status, res.text).toBe(200);
    const after = await storedUrl();
    expect(after).not.toBe(before);
    const all = await dump('listings');
    for (const fragment of ['route-two', 'plaintext-token-2', 'route-one', 'plaintext-token-1']) {
      expect(all).not.toContain(fragment);
    }
    expect(plane.deps.box.open(after, `listing:${listing.id}:endpoint_url`)).toBe(updatedUrl);
  });

  it('keeps rotated secrets sealed', async () => {
    const res = await plane.call('POST', `/api/v1/listings/${listing.id}/endpoint/rotate-secret`, {
      key: owner.apiKey,
    });
    expect(res.status, res.text).toBe(200);
    rotated = res.body.data;
    const all = await dump('listing_signing_keys');
    for (const value of [secret, rotated.signing_secret]) {
      expect(all).not.toContain(value);
      expect(all).not.toContain(value.slice(4, 20));
    }
  });

  it('seals the same URL differently each time, bound to its listing', async () => {
    const { listing: twin } = await plane.createListing(owner.apiKey, { private_endpoint_url: createdUrl });
    const { rows } = await plane.deps.pool.query('SELECT id, endpoint_url_enc FROM listings WHERE id = ANY($1)', [
      [listing.id, twin.id],
    ]);
    const twinSealed = rows.find((r: any) => r.id === twin.id).endpoint_url_enc;
    expect(twinSealed).not.toBe(rows.find((r: any) => r.id === listing.id).endpoint_url_enc);
    expect(plane.deps.box.open(twinSealed, `listing:${twin.id}:endpoint_url`)).toBe(createdUrl);
    // Copied into another listing's context, the ciphertext does not open.
    expect(() => plane.deps.box.open(twinSealed, `listing:${listing.id}:endpoint_url`)).toThrow();
  });

  it('never returns the URL or a secret through the listing routes', async () => {
    const responses = [
      await plane.call('GET', `/api/v1/listings/${listing.id}`, { key: owner.apiKey }),
      await plane.call('GET', `/api/v1/listings?seller_id=${owner.agentId}`, { key: owner.apiKey }),
      await plane.call('GET', `/api/v1/listings/${listing.id}/endpoint`, { key: owner.apiKey }),
      await plane.call('PATCH', `/api/v1/listings/${listing.id}`, { key: owner.apiKey, body: { name: 'Renamed' } }),
    ];
    for (const res of responses) {
      expect(res.status, res.text).toBe(200);
      for (const fragment of ['route-one', 'route-two', 'plaintext-token', 'crs_', rotated.signing_secret, secret]) {
        expect(res.text).not.toContain(fragment);
      }
    }
  });
});
