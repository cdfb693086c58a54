import { SIGNATURE_HEADERS, SIGNATURE_TEST_VECTORS } from '@crochet/protocol';
import { describe, expect, it } from 'vitest';
import type { Call } from '../call.js';
import { sign } from './sign.js';

/** The gateway's signer against the published test vectors (/signature-test-vectors.json). */
describe('the gateway signs forwarded requests exactly as the published test vectors say', () => {
  for (const vector of SIGNATURE_TEST_VECTORS) {
    it(vector.name, async () => {
      const call = {
        id: vector.request_id,
        listing: { id: vector.listing_id, secrets: vector.secrets.map((secret) => ({ secret, expiresAtMs: null })) },
        body: Buffer.from(vector.body, 'utf8'),
        paid: null,
      } as unknown as Call;
      await sign(call, undefined, vector.timestamp * 1000 + 999);
      expect(call.signed).toEqual({
        [SIGNATURE_HEADERS.requestId]: vector.request_id,
        [SIGNATURE_HEADERS.listingId]: vector.listing_id,
        [SIGNATURE_HEADERS.timestamp]: String(vector.timestamp),
        [SIGNATURE_HEADERS.bodySha256]: vector.body_sha256,
        [SIGNATURE_HEADERS.signature]: vector.expected_header,
      });
    });
  }
});
