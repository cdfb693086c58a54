import { createHash } from 'node:crypto';
import { createGuardedAgent, isSsrfBlockedError } from '@crochet/plugins';
import { canonicalString, newId, SIGNATURE_HEADERS, signatureHeader } from '@crochet/protocol';
import { request } from 'undici';
import type { Deps } from './app.js';
import { endpointUrlContext, signingKeyContext } from './listings.js';

/** What a seller's endpoint did with a signed test request. */
export interface EndpointTestResult {
  ok: boolean;
  status: number | null;
  latency_ms: number;
  error: 'timeout' | 'unreachable' | 'forbidden_address' | null;
  tested_at: string;
  /** The start of what the seller answered (null when nothing came back), so a seller sees what its code did. */
  response: EndpointTestResponse | null;
}

/** How much of the seller's answer an endpoint test shows. */
export const ENDPOINT_TEST_EXCERPT_BYTES = 512;

export interface EndpointTestResponse {
  content_type: string | null;
  /** The first ENDPOINT_TEST_EXCERPT_BYTES bytes of the body, decoded as UTF-8 (invalid bytes become U+FFFD). */
  body_excerpt: string;
  /** The body was longer than the excerpt. */
  truncated: boolean;
}

/** Reads at most `limit` bytes of a body and stops (the rest is not read). */
const excerptOf = async (
  body: AsyncIterable<Buffer>,
  limit: number,
): Promise<{ bytes: Buffer; truncated: boolean }> => {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.length;
    if (size > limit) break;
  }
  const all = Buffer.concat(chunks);
  return { bytes: all.subarray(0, limit), truncated: all.length > limit };
};

/** Test requests go through the same SSRF guard as gateway calls; one agent per setting is enough. */
const agents = new Map<boolean, ReturnType<typeof createGuardedAgent>>();
const agentFor = (allowPrivate: boolean) => {
  let agent = agents.get(allowPrivate);
  if (!agent) {
    agent = createGuardedAgent({ allowPrivate, connectTimeoutMs: 5_000, connections: 8 });
    agents.set(allowPrivate, agent);
  }
  return agent;
};

/**
 * Sends `{"test": true}` to the listing's private endpoint, signed exactly as the gateway signs (DESIGN §3.3, with
 * every secret valid now) and marked `X-Crochet-Test: 1`. The first 512 bytes of the answer are kept in the result.
 */
export const testEndpoint = async (
  deps: Pick<Deps, 'pool' | 'box' | 'config'>,
  listingId: string,
  timeoutMs: number,
) => {
  const { pool, box, config } = deps;
  const { rows } = await pool.query<{ endpoint_url_enc: string; keys: { id: string; secret_enc: string }[] }>(
    `SELECT l.endpoint_url_enc,
            coalesce(json_agg(json_build_object('id', k.id, 'secret_enc', k.secret_enc) ORDER BY k.created_at DESC)
                     FILTER (WHERE k.id IS NOT NULL), '[]') AS keys
       FROM listings l
       LEFT JOIN listing_signing_keys k ON k.listing_id = l.id AND (k.expires_at IS NULL OR k.expires_at > now())
      WHERE l.id = $1 GROUP BY l.id`,
    [listingId],
  );
  const row = rows[0]!;
  const url = box.open(row.endpoint_url_enc, endpointUrlContext(listingId));
  const secrets = row.keys.map((k) => box.open(k.secret_enc, signingKeyContext(listingId, k.id)));
  const body = JSON.stringify({ test: true, listing_id: listingId });
  const requestId = newId('gatewayRequest');
  const timestamp = Math.floor(Date.now() / 1000);
  const bodySha256 = createHash('sha256').update(body).digest('hex');
  const started = performance.now();
  const result = (
    status: number | null,
    error: EndpointTestResult['error'],
    response: EndpointTestResponse | null = null,
  ): EndpointTestResult => ({
    ok: status !== null && status >= 200 && status < 300,
    status,
    latency_ms: Math.round(performance.now() - started),
    error,
    tested_at: new Date().toISOString(),
    response,
  });
  try {
    const response = await request(url, {
      method: 'POST',
      dispatcher: agentFor(config.allowPrivateEndpoints),
      headers: {
        'content-type': 'application/json',
        [SIGNATURE_HEADERS.requestId]: requestId,
        [SIGNATURE_HEADERS.listingId]: listingId,
        [SIGNATURE_HEADERS.timestamp]: String(timestamp),
        [SIGNATURE_HEADERS.bodySha256]: bodySha256,
        [SIGNATURE_HEADERS.signature]: signatureHeader(
          secrets,
          canonicalString(timestamp, requestId, listingId, bodySha256),
        ),
        [SIGNATURE_HEADERS.test]: '1',
      },
      body,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const { bytes, truncated } = await excerptOf(response.body, ENDPOINT_TEST_EXCERPT_BYTES);
    const contentType = response.headers['content-type'];
    return result(response.statusCode, null, {
      content_type: typeof contentType === 'string' ? contentType : null,
      body_excerpt: bytes.toString('utf8'),
      truncated,
    });
  } catch (error) {
    if (isSsrfBlockedError(error)) return result(null, 'forbidden_address');
    const code = (error as { code?: string }).code ?? '';
    return result(null, code.includes('TIMEOUT') ? 'timeout' : 'unreachable');
  }
};
