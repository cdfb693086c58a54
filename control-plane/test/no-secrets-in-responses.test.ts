import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';

let plane: TestPlane;
beforeAll(async () => {
  plane = await startTestControlPlane();
});
afterAll(() => plane.stop());

describe('private endpoint URLs and secrets', () => {
  it('never appear in any response after creation or rotation', async () => {
    const seller = await plane.register('seller');
    const buyer = await plane.register('buyer');
    const privateUrl = 'http://127.0.0.1:9/very-private-path-7f3a?token=sellers-own-query';
    const { listing, signingSecret } = await plane.createListing(seller.apiKey, { private_endpoint_url: privateUrl });
    const rotated = await plane.call('POST', `/api/v1/listings/${listing.id}/endpoint/rotate-secret`, {
      key: seller.apiKey,
    });
    expect(rotated.status).toBe(200);
    const secrets = [signingSecret, rotated.body.data.signing_secret, seller.apiKey, buyer.apiKey];
    const forbidden = [privateUrl, 'very-private-path-7f3a', 'sellers-own-query', ...secrets];

    const seen: string[] = [];
    for (const key of [seller.apiKey, buyer.apiKey, undefined]) {
      const auth = key ? { key } : {};
      for (const path of [
        '/api/v1/me',
        '/api/v1/keys',
        '/api/v1/listings',
        `/api/v1/listings?seller_id=${seller.agentId}`,
        `/api/v1/listings?q=Echo`,
        `/api/v1/listings/${listing.id}`,
        `/api/v1/listings/${listing.id}/endpoint`,
        '/api/openapi.json',
        '/llms.txt',
        '/agent-skill',
        '/.well-known/agent-protocol.json',
      ]) {
        const res = await plane.call('GET', path, auth);
        seen.push(`${res.status} ${path} ${JSON.stringify([...res.headers])} ${res.text}`);
      }
    }
    seen.push(
      (await plane.call('PATCH', `/api/v1/listings/${listing.id}`, { key: seller.apiKey, body: { name: 'Echo 2' } }))
        .text,
    );
    seen.push(
      (
        await plane.call('PUT', `/api/v1/listings/${listing.id}/endpoint`, {
          key: seller.apiKey,
          body: { private_endpoint_url: 'http://127.0.0.1:9/another-private-path-91b' },
        })
      ).text,
    );
    seen.push((await plane.call('DELETE', `/api/v1/listings/${listing.id}`, { key: seller.apiKey })).text);
    forbidden.push('another-private-path-91b');

    const everything = seen.join('\n');
    for (const value of forbidden) expect(everything).not.toContain(value);
    // The owner still gets the safe metadata.
    expect(everything).toContain('"host":"127.0.0.1:9"');
  });
});
