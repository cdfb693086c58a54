import type { AddressInfo } from 'node:net';
import { crochetVerifier, verifyCrochetRequest } from '@crochet/plugins';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProxyServer } from '../src/app.js';
import { eventually, gatewayCall, startTestStack, type TestStack } from './stack.js';

/**
 * A seller running the verifier plugin in two scopes: `/hook/old` trusts only the listing's first secret, `/hook/new`
 * only the secret issued by the rotation. A call that passes one of them verifies with that secret alone.
 */
let stack: TestStack;
let proxy: ProxyServer;
let seller: FastifyInstance;
let sellerUrl: string;
const received: { url: string; headers: Record<string, any>; body: Buffer | null }[] = [];
let oldSecret = '';
let newSecret = '';
let listingId: string;
let buyerKey: string;
let sellerKey: string;

const v1Entries = (headers: Record<string, any>): string[] =>
  String(headers['x-crochet-signature'])
    .split(',')
    .map((entry) => entry.trim());

const call = (scope: 'old' | 'new') =>
  gatewayCall(proxy, listingId, buyerKey, { subPath: `/${scope}`, body: { scope } });

beforeAll(async () => {
  stack = await startTestStack({ planeEnv: { CROCHET_SECRET_OVERLAP_SECONDS: '1' } });
  proxy = stack.proxies[0]!;
  seller = Fastify();
  for (const scope of ['old', 'new'] as const) {
    seller.register(async (app) => {
      await app.register(crochetVerifier, { secrets: () => [scope === 'old' ? oldSecret : newSecret] });
      app.addHook('preHandler', async (request) => {
        received.push({ url: request.url, headers: request.headers, body: request.crochetRaw });
      });
      app.post(`/hook/${scope}`, async (request) => ({ scope, verified: request.crochet }));
    });
  }
  await seller.listen({ host: '127.0.0.1', port: 0 });
  sellerUrl = `http://127.0.0.1:${(seller.server.address() as AddressInfo).port}`;

  sellerKey = (await stack.plane.register('seller')).apiKey;
  buyerKey = (await stack.plane.register('buyer')).apiKey;
  const created = await stack.plane.createListing(sellerKey, { private_endpoint_url: `${sellerUrl}/hook` });
  listingId = created.listing.id;
  oldSecret = created.signingSecret;
});
afterAll(async () => {
  await seller.close();
  await stack.stop();
});

describe('signing-secret rotation', () => {
  it('signs with the one secret before any rotation', async () => {
    const res = await call('old');
    expect(res.status, res.text).toBe(200);
    expect(res.json.verified).toMatchObject({ listingId, requestId: res.headers['x-crochet-request-id'] });
    expect(v1Entries(received.at(-1)!.headers)).toHaveLength(1);
  });

  it('signs with both secrets during the overlap, each verifying alone; only the new one afterwards', async () => {
    const rotated = await stack.plane.call('POST', `/api/v1/listings/${listingId}/endpoint/rotate-secret`, {
      key: sellerKey,
    });
    expect(rotated.status, rotated.text).toBe(200);
    newSecret = rotated.body.data.signing_secret;
    expect(newSecret).toMatch(/^crs_/);
    expect(newSecret).not.toBe(oldSecret);
    const previousExpiresAtMs = Date.parse(rotated.body.data.previous_expires_at);

    // --- overlap: the same call passes a seller that knows only the old secret and one that knows only the new
    const [viaOld, viaNew] = await eventually(async () => {
      const both = await Promise.all([call('old'), call('new')]);
      for (const res of both) expect(res.status, res.text).toBe(200);
      return both;
    });
    expect(Date.now(), 'the overlap ended before the checks ran').toBeLessThan(previousExpiresAtMs);
    for (const res of [viaOld, viaNew]) {
      const arrived = received.find((r) => r.headers['x-crochet-request-id'] === res.headers['x-crochet-request-id'])!;
      const entries = v1Entries(arrived.headers);
      expect(entries).toHaveLength(2);
      for (const entry of entries) expect(entry).toMatch(/^v1=[0-9a-f]{64}$/);
      for (const secret of [oldSecret, newSecret]) {
        expect(verifyCrochetRequest(arrived.headers, arrived.body ?? '', { secrets: [secret] })).toMatchObject({
          ok: true,
        });
      }
    }

    // --- after the overlap: the old secret no longer verifies
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, previousExpiresAtMs - Date.now()) + 500));
    const rejected = await call('old');
    expect(rejected.status, rejected.text).toBe(401);
    expect(rejected.json.error.code).toBe('CROCHET_SIGNATURE_INVALID');
    const accepted = await call('new');
    expect(accepted.status, accepted.text).toBe(200);
    const arrived = received.at(-1)!;
    expect(arrived.headers['x-crochet-request-id']).toBe(accepted.headers['x-crochet-request-id']);
    expect(v1Entries(arrived.headers)).toHaveLength(1);
    expect(verifyCrochetRequest(arrived.headers, arrived.body ?? '', { secrets: [oldSecret] })).toMatchObject({
      ok: false,
      reason: 'bad_signature',
    });
    expect(verifyCrochetRequest(arrived.headers, arrived.body ?? '', { secrets: [newSecret] })).toMatchObject({
      ok: true,
    });
  });
});
