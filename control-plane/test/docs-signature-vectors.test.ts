import { createHash, createHmac } from 'node:crypto';
import { verifyCrochetRequest } from '@crochet/plugins';
import type { SignatureTestVector } from '@crochet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';

/**
 * Issue 14: the seller signature is published exactly, with test vectors (inputs → expected header), in
 * /seller-onboarding and as JSON; a verifier written from them alone agrees with the gateway's.
 */

let plane: TestPlane;
beforeAll(async () => {
  plane = await startTestControlPlane();
});
afterAll(() => plane.stop());

type Vector = SignatureTestVector;

describe('/signature-test-vectors.json', () => {
  it('publishes vectors a verifier written from the spec alone reproduces, and the seller verifier accepts', async () => {
    const res = await plane.call('GET', '/signature-test-vectors.json');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/json');
    const doc = res.body as { key: string; timestamp_unit: string; vectors: Vector[] };
    expect(doc.key).toContain('UTF-8 string');
    expect(doc.timestamp_unit).toBe('unix seconds');
    expect(doc.vectors.length).toBeGreaterThanOrEqual(4);
    expect(doc.vectors.some((v) => v.secrets.length > 1)).toBe(true);
    for (const v of doc.vectors) {
      // What the spec says, in a dozen lines of node:crypto.
      const bodySha256 = createHash('sha256').update(Buffer.from(v.body, 'utf8')).digest('hex');
      const canonical = `${v.timestamp}.${v.request_id}.${v.listing_id}.${bodySha256}`;
      const header = v.secrets
        .map((secret) => `v1=${createHmac('sha256', Buffer.from(secret, 'utf8')).update(canonical).digest('hex')}`)
        .join(',');
      expect([bodySha256, canonical, header], v.name).toEqual([v.body_sha256, v.canonical, v.expected_header]);
      const headers = {
        'x-crochet-request-id': v.request_id,
        'x-crochet-listing-id': v.listing_id,
        'x-crochet-timestamp': String(v.timestamp),
        'x-crochet-body-sha256': v.body_sha256,
        'x-crochet-signature': v.expected_header,
      };
      expect(verifyCrochetRequest(headers, v.body, { secrets: v.secrets, nowMs: v.timestamp * 1000 }).ok).toBe(true);
    }
  });

  it('are in /seller-onboarding with the exact spec, and named by agent-protocol.json and llms.txt', async () => {
    const text = (await plane.call('GET', '/seller-onboarding')).text;
    expect(text).toContain('unix time in SECONDS');
    expect(text).toContain('do NOT base64-decode');
    const doc = (await plane.call('GET', '/signature-test-vectors.json')).body as { vectors: Vector[] };
    for (const v of doc.vectors) {
      expect(text).toContain(`X-Crochet-Signature: ${v.expected_header}`);
      expect(text).toContain(`canonical: ${v.canonical}`);
    }
    const protocol = (await plane.call('GET', '/.well-known/agent-protocol.json')).body;
    expect(protocol.documents.signature_test_vectors).toBe('http://crochet.test:8080/signature-test-vectors.json');
    expect(protocol.seller_signature.vectors).toEqual(doc.vectors);
    expect((await plane.call('GET', '/llms.txt')).text).toContain('/signature-test-vectors.json');
  });
});
