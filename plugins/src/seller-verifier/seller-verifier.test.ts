import { createHash } from 'node:crypto';
import {
  canonicalString,
  SIGNATURE_HEADERS,
  SIGNATURE_TEST_VECTORS,
  signatureEntry,
  signatureHeader,
} from '@crochet/protocol';
import Fastify, { type FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryReplayCache, crochetVerifier, type VerifyOptions, verifyCrochetRequest } from './index.js';

const OLD_SECRET = 'crs_old-secret-0000000000000000000000000000000';
const NEW_SECRET = 'crs_new-secret-1111111111111111111111111111111';
const LISTING_ID = 'lst_01JD0000000000000000000000';

let requestCounter = 0;
const nextRequestId = () => `gr_01JD${String(++requestCounter).padStart(22, '0')}`;
const nowSeconds = () => Math.floor(Date.now() / 1000);
const sha256Hex = (body: Uint8Array | string) => createHash('sha256').update(body).digest('hex');

type SignOptions = {
  secrets?: readonly string[];
  timestamp?: number;
  requestId?: string;
  listingId?: string;
  test?: boolean;
};

/** Headers exactly as the gateway builds them, with the protocol's own primitives. */
function signedHeaders(body: Uint8Array | string, options: SignOptions = {}): Record<string, string> {
  const timestamp = options.timestamp ?? nowSeconds();
  const requestId = options.requestId ?? nextRequestId();
  const listingId = options.listingId ?? LISTING_ID;
  const bodySha256 = sha256Hex(body);
  const headers: Record<string, string> = {
    [SIGNATURE_HEADERS.requestId]: requestId,
    [SIGNATURE_HEADERS.listingId]: listingId,
    [SIGNATURE_HEADERS.timestamp]: String(timestamp),
    [SIGNATURE_HEADERS.bodySha256]: bodySha256,
    [SIGNATURE_HEADERS.signature]: signatureHeader(
      options.secrets ?? [NEW_SECRET],
      canonicalString(timestamp, requestId, listingId, bodySha256),
    ),
  };
  if (options.test) headers[SIGNATURE_HEADERS.test] = '1';
  return headers;
}

const verify = (
  headers: Record<string, string | string[] | undefined>,
  body: Uint8Array | string,
  options: Partial<VerifyOptions> = {},
) => verifyCrochetRequest(headers, body, { secrets: [NEW_SECRET], ...options });

const reasonOf = (result: ReturnType<typeof verifyCrochetRequest>) => (result.ok ? 'ok' : result.reason);

describe('verifyCrochetRequest', () => {
  it('accepts a JSON body, a binary body and an empty body', () => {
    const json = JSON.stringify({ prompt: 'héllo', n: 1 });
    const jsonHeaders = signedHeaders(json, { requestId: 'gr_json' });
    expect(verify(jsonHeaders, json)).toEqual({
      ok: true,
      requestId: 'gr_json',
      listingId: LISTING_ID,
      timestamp: Number(jsonHeaders[SIGNATURE_HEADERS.timestamp]),
      test: false,
    });
    // The same JSON as bytes verifies the same: a string is taken as its UTF-8 bytes.
    expect(verify(jsonHeaders, new TextEncoder().encode(json)).ok).toBe(true);

    const binary = new Uint8Array([0, 255, 254, 1, 0xc3, 0x28]); // not valid UTF-8
    expect(verify(signedHeaders(binary), binary).ok).toBe(true);

    expect(verify(signedHeaders(''), '').ok).toBe(true);
    expect(verify(signedHeaders(new Uint8Array(0)), new Uint8Array(0)).ok).toBe(true);
  });

  it('reports the X-Crochet-Test flag', () => {
    const result = verify(signedHeaders('{}', { test: true }), '{}');
    expect(result.ok && result.test).toBe(true);
  });

  it('rejects a tampered body as body_hash_mismatch', () => {
    const headers = signedHeaders('{"amount":1}');
    expect(reasonOf(verify(headers, '{"amount":9}'))).toBe('body_hash_mismatch');
    expect(reasonOf(verify(headers, '{"amount":1} '))).toBe('body_hash_mismatch');
  });

  it('rejects a correct body hash with a signature over other values as bad_signature', () => {
    const body = '{"a":1}';
    const headers = signedHeaders(body, { requestId: 'gr_original' });
    // The attacker rewrites an id; the body hash header still matches the body.
    expect(reasonOf(verify({ ...headers, [SIGNATURE_HEADERS.requestId]: 'gr_other' }, body))).toBe('bad_signature');
    expect(reasonOf(verify({ ...headers, [SIGNATURE_HEADERS.listingId]: 'lst_other' }, body))).toBe('bad_signature');
    const timestamp = Number(headers[SIGNATURE_HEADERS.timestamp]);
    expect(reasonOf(verify({ ...headers, [SIGNATURE_HEADERS.timestamp]: String(timestamp - 1) }, body))).toBe(
      'bad_signature',
    );
    // Signed over a different body hash, but presenting the real one.
    const forged = signatureEntry(NEW_SECRET, canonicalString(timestamp, 'gr_original', LISTING_ID, sha256Hex('x')));
    expect(reasonOf(verify({ ...headers, [SIGNATURE_HEADERS.signature]: forged }, body))).toBe('bad_signature');
  });

  it('rejects a signature made with another secret as bad_signature', () => {
    const headers = signedHeaders('{}', { secrets: ['crs_someone-else'] });
    expect(reasonOf(verify(headers, '{}'))).toBe('bad_signature');
  });

  it('enforces the 300 s tolerance both ways', () => {
    const now = nowSeconds();
    const nowMs = now * 1000;
    expect(reasonOf(verify(signedHeaders('', { timestamp: now - 301 }), '', { nowMs }))).toBe(
      'timestamp_out_of_tolerance',
    );
    expect(reasonOf(verify(signedHeaders('', { timestamp: now + 301 }), '', { nowMs }))).toBe(
      'timestamp_out_of_tolerance',
    );
    expect(reasonOf(verify(signedHeaders('', { timestamp: now - 300 }), '', { nowMs }))).toBe('ok');
    expect(reasonOf(verify(signedHeaders('', { timestamp: now + 300 }), '', { nowMs }))).toBe('ok');
    expect(reasonOf(verify(signedHeaders('', { timestamp: now - 20 }), '', { nowMs, toleranceSeconds: 10 }))).toBe(
      'timestamp_out_of_tolerance',
    );
  });

  it('rejects a non-numeric timestamp as bad_timestamp', () => {
    for (const bad of ['yesterday', '1.7e9', '-5', ' 1700000000', '0x10', '17000000000000000']) {
      const headers = { ...signedHeaders(''), [SIGNATURE_HEADERS.timestamp]: bad };
      expect(reasonOf(verify(headers, '')), bad).toBe('bad_timestamp');
    }
  });

  it('rejects each missing header as missing_headers', () => {
    const required = [
      SIGNATURE_HEADERS.requestId,
      SIGNATURE_HEADERS.listingId,
      SIGNATURE_HEADERS.timestamp,
      SIGNATURE_HEADERS.bodySha256,
      SIGNATURE_HEADERS.signature,
    ];
    for (const name of required) {
      const headers: Record<string, string | undefined> = { ...signedHeaders('') };
      delete headers[name];
      const result = verify(headers, '');
      expect(reasonOf(result), name).toBe('missing_headers');
      expect(!result.ok && result.message).toContain(name);
      expect(reasonOf(verify({ ...headers, [name]: '' }, '')), name).toBe('missing_headers');
    }
    expect(reasonOf(verify({}, ''))).toBe('missing_headers');
  });

  it('treats a repeated single-valued header as missing, and joins a repeated signature header', () => {
    const headers = signedHeaders('', { secrets: [OLD_SECRET, NEW_SECRET] });
    const requestId = headers[SIGNATURE_HEADERS.requestId]!;
    expect(reasonOf(verify({ ...headers, [SIGNATURE_HEADERS.requestId]: [requestId, 'gr_x'] }, ''))).toBe(
      'missing_headers',
    );
    expect(reasonOf(verify({ ...headers, [SIGNATURE_HEADERS.requestId]: [requestId] }, ''))).toBe('ok');
    const [first, second] = headers[SIGNATURE_HEADERS.signature]!.split(',');
    expect(reasonOf(verify({ ...headers, [SIGNATURE_HEADERS.signature]: [first!, second!] }, ''))).toBe('ok');
  });

  it('during a rotation, a two-entry header verifies with only the old or only the new secret', () => {
    const body = '{"rotate":true}';
    const headers = signedHeaders(body, { secrets: [OLD_SECRET, NEW_SECRET] });
    expect(headers[SIGNATURE_HEADERS.signature]).toMatch(/^v1=[0-9a-f]{64},v1=[0-9a-f]{64}$/);
    expect(reasonOf(verify(headers, body, { secrets: [OLD_SECRET] }))).toBe('ok');
    expect(reasonOf(verify(headers, body, { secrets: [NEW_SECRET] }))).toBe('ok');
    expect(reasonOf(verify(headers, body, { secrets: [NEW_SECRET, OLD_SECRET] }))).toBe('ok');
    expect(reasonOf(verify(headers, body, { secrets: ['crs_unrelated'] }))).toBe('bad_signature');
    // And the seller holding both secrets accepts a header signed with either one alone.
    expect(
      reasonOf(verify(signedHeaders(body, { secrets: [OLD_SECRET] }), body, { secrets: [NEW_SECRET, OLD_SECRET] })),
    ).toBe('ok');
  });

  it('ignores unknown versions and malformed entries without throwing', () => {
    const body = '{}';
    const headers = signedHeaders(body);
    const valid = headers[SIGNATURE_HEADERS.signature]!;
    const malformed = [
      'v1=abcd',
      'v1=',
      `v1=${'z'.repeat(64)}`,
      `v1=${'ab'.repeat(33)}`,
      `v1=${valid.slice(3, 66)}`, // 63 characters
      'garbage',
      `v2=${valid.slice(3)}`,
      ',,,',
    ];
    for (const entry of malformed) {
      const result = verify({ ...headers, [SIGNATURE_HEADERS.signature]: entry }, body);
      expect(reasonOf(result), entry).toBe('bad_signature');
    }
    const mixed = `v0=old, v1=abcd, ${valid}, v2=future`;
    expect(reasonOf(verify({ ...headers, [SIGNATURE_HEADERS.signature]: mixed }, body))).toBe('ok');
  });

  it('rejects a second use of a request id as replayed', () => {
    const replayCache = createMemoryReplayCache();
    const body = '{"once":true}';
    const headers = signedHeaders(body);
    expect(reasonOf(verify(headers, body, { replayCache }))).toBe('ok');
    const again = verify(headers, body, { replayCache });
    expect(reasonOf(again)).toBe('replayed');
    expect(!again.ok && again.message).toContain(headers[SIGNATURE_HEADERS.requestId]);
  });

  it('a failed verification does not poison the replay cache', () => {
    const replayCache = createMemoryReplayCache();
    const body = '{"real":true}';
    const headers = signedHeaders(body);
    const forgeries = [
      { ...headers, [SIGNATURE_HEADERS.signature]: signatureEntry('crs_attacker', 'anything') },
      headers, // with a tampered body below
    ];
    expect(reasonOf(verify(forgeries[0]!, body, { replayCache }))).toBe('bad_signature');
    expect(reasonOf(verify(forgeries[1]!, '{"real":false}', { replayCache }))).toBe('body_hash_mismatch');
    expect(reasonOf(verify(headers, body, { replayCache }))).toBe('ok');
  });

  it('throws on a configuration without secrets', () => {
    expect(() => verify(signedHeaders(''), '', { secrets: [] })).toThrow(TypeError);
    expect(() => verify(signedHeaders(''), '', { secrets: [''] })).toThrow(TypeError);
  });
});

describe('the published test vectors (/signature-test-vectors.json)', () => {
  const headersOf = (v: (typeof SIGNATURE_TEST_VECTORS)[number], timestamp = String(v.timestamp)) => ({
    [SIGNATURE_HEADERS.requestId]: v.request_id,
    [SIGNATURE_HEADERS.listingId]: v.listing_id,
    [SIGNATURE_HEADERS.timestamp]: timestamp,
    [SIGNATURE_HEADERS.bodySha256]: v.body_sha256,
    [SIGNATURE_HEADERS.signature]: v.expected_header,
  });

  for (const v of SIGNATURE_TEST_VECTORS) {
    it(`verifies "${v.name}" with each of its secrets`, () => {
      for (const secret of v.secrets) {
        const result = verifyCrochetRequest(headersOf(v), Buffer.from(v.body, 'utf8'), {
          secrets: [secret],
          replayCache: createMemoryReplayCache(),
          nowMs: v.timestamp * 1000,
        });
        expect(result, `${v.name} / ${secret}`).toMatchObject({ ok: true, requestId: v.request_id });
      }
    });
  }

  it('refuses them with a secret used otherwise than as its UTF-8 string, or a timestamp in milliseconds', () => {
    const v = SIGNATURE_TEST_VECTORS[0]!;
    const decoded = Buffer.from(v.secrets[0]!.slice(4), 'base64url').toString('latin1');
    const options = { replayCache: createMemoryReplayCache(), nowMs: v.timestamp * 1000 };
    expect(verifyCrochetRequest(headersOf(v), v.body, { ...options, secrets: [decoded] })).toMatchObject({
      ok: false,
      reason: 'bad_signature',
    });
    expect(
      verifyCrochetRequest(headersOf(v, String(v.timestamp * 1000)), v.body, { ...options, secrets: v.secrets }),
    ).toMatchObject({ ok: false, reason: 'bad_timestamp' });
  });
});

describe('createMemoryReplayCache', () => {
  it('forgets an id once it expires', () => {
    const cache = createMemoryReplayCache();
    expect(cache.remember('gr_a', Date.now() - 1)).toBe(true);
    expect(cache.remember('gr_a', Date.now() + 60_000)).toBe(true);
    expect(cache.remember('gr_a', Date.now() + 60_000)).toBe(false);
  });

  it('stays within maxEntries by evicting the oldest', () => {
    const cache = createMemoryReplayCache({ maxEntries: 3 });
    const later = Date.now() + 60_000;
    for (const id of ['gr_1', 'gr_2', 'gr_3', 'gr_4']) expect(cache.remember(id, later)).toBe(true);
    expect(cache.remember('gr_4', later)).toBe(false);
    expect(cache.remember('gr_3', later)).toBe(false);
    // gr_1 was evicted to make room for gr_4.
    expect(cache.remember('gr_1', later)).toBe(true);
  });

  it('rejects a nonsensical bound', () => {
    expect(() => createMemoryReplayCache({ maxEntries: 0 })).toThrow(TypeError);
  });
});

describe('crochetVerifier (Fastify plugin, real server)', () => {
  let app: FastifyInstance;
  let baseUrl: string;
  let secrets: readonly string[] = [NEW_SECRET];

  beforeAll(async () => {
    app = Fastify();
    // Verified routes live in their own scope; /health shows the plugin does not leak outside it.
    await app.register(async (scope) => {
      await scope.register(crochetVerifier, { secrets: () => secrets });
      scope.all('/echo', async (req) => ({
        crochet: req.crochet,
        body: Buffer.isBuffer(req.body) ? { buffer: req.body.toString('base64') } : (req.body ?? null),
        rawLength: req.crochetRaw?.length ?? null,
      }));
      scope.post(
        '/strict',
        { schema: { body: { type: 'object', required: ['n'], properties: { n: { type: 'integer' } } } } },
        async (req) => ({ n: (req.body as { n: number }).n }),
      );
    });
    app.get('/health', async () => ({ ok: true }));
    baseUrl = await app.listen({ host: '127.0.0.1', port: 0 });
  });

  afterAll(async () => {
    await app.close();
  });

  const send = async (
    path: string,
    init: { method?: 'GET' | 'POST' | 'PUT'; body?: string | Buffer; headers?: Record<string, string> },
  ) => {
    const res = await request(`${baseUrl}${path}`, {
      method: init.method ?? 'POST',
      headers: init.headers ?? {},
      body: init.body ?? null,
    });
    return { status: res.statusCode, json: (await res.body.json()) as any };
  };

  it('passes a signed JSON request; the handler sees request.crochet and the parsed body', async () => {
    const body = JSON.stringify({ prompt: 'héllo', nested: { n: 2 } });
    const headers = signedHeaders(body, { requestId: 'gr_plugin_json', test: true });
    const res = await send('/echo', { body, headers: { ...headers, 'content-type': 'application/json' } });
    expect(res.status).toBe(200);
    expect(res.json).toEqual({
      crochet: {
        requestId: 'gr_plugin_json',
        listingId: LISTING_ID,
        timestamp: Number(headers[SIGNATURE_HEADERS.timestamp]),
        test: true,
      },
      body: { prompt: 'héllo', nested: { n: 2 } },
      rawLength: Buffer.byteLength(body),
    });
  });

  it('parses +json media types and content types with parameters', async () => {
    const body = '{"kind":"vnd"}';
    const res = await send('/echo', {
      body,
      headers: { ...signedHeaders(body), 'content-type': 'application/vnd.api+json; charset=utf-8' },
    });
    expect(res.status).toBe(200);
    expect(res.json.body).toEqual({ kind: 'vnd' });
  });

  it('passes a signed non-JSON body, leaving the exact bytes as a Buffer', async () => {
    const body = Buffer.from([0, 255, 254, 1, 0xc3, 0x28]);
    const res = await send('/echo', {
      body,
      headers: { ...signedHeaders(body), 'content-type': 'application/octet-stream' },
    });
    expect(res.status).toBe(200);
    expect(res.json.body).toEqual({ buffer: body.toString('base64') });

    const text = 'plain text, not decoded by fastify';
    const textRes = await send('/echo', {
      body: text,
      headers: { ...signedHeaders(text), 'content-type': 'text/plain' },
    });
    expect(textRes.status).toBe(200);
    expect(textRes.json.body).toEqual({ buffer: Buffer.from(text).toString('base64') });
  });

  it('passes signed requests with an empty body', async () => {
    const get = await send('/echo', { method: 'GET', headers: signedHeaders('') });
    expect(get.status).toBe(200);
    expect(get.json.crochet.listingId).toBe(LISTING_ID);
    expect(get.json.body).toBeNull();

    const post = await send('/echo', { headers: { ...signedHeaders(''), 'content-type': 'application/json' } });
    expect(post.status).toBe(200);
    expect(post.json.body).toBeNull();
  });

  it('answers 401 CROCHET_SIGNATURE_INVALID for a tampered, forged or unsigned request', async () => {
    const body = '{"amount":1}';
    const tampered = await send('/echo', {
      body: '{"amount":2}',
      headers: { ...signedHeaders(body), 'content-type': 'application/json' },
    });
    expect(tampered.status).toBe(401);
    expect(tampered.json).toEqual({
      error: { code: 'CROCHET_SIGNATURE_INVALID', reason: 'body_hash_mismatch', message: expect.any(String) },
    });

    const forged = await send('/echo', {
      body,
      headers: { ...signedHeaders(body, { secrets: ['crs_attacker'] }), 'content-type': 'application/json' },
    });
    expect(forged.status).toBe(401);
    expect(forged.json.error.reason).toBe('bad_signature');

    const unsigned = await send('/echo', { body, headers: { 'content-type': 'application/json' } });
    expect(unsigned.status).toBe(401);
    expect(unsigned.json.error.reason).toBe('missing_headers');

    expect((await send('/health', { method: 'GET' })).status).toBe(200);
  });

  it('answers 401 before body parsing or schema errors reach an unsigned caller', async () => {
    const badJson = await send('/echo', { body: '{not json', headers: { 'content-type': 'application/json' } });
    expect(badJson.status).toBe(401);
    const invalid = await send('/strict', { body: '{}', headers: { 'content-type': 'application/json' } });
    expect(invalid.status).toBe(401);

    // Once signed, the usual 400s come through.
    const signedBadJson = await send('/echo', {
      body: '{not json',
      headers: { ...signedHeaders('{not json'), 'content-type': 'application/json' },
    });
    expect(signedBadJson.status).toBe(400);
    const signedInvalid = await send('/strict', {
      body: '{}',
      headers: { ...signedHeaders('{}'), 'content-type': 'application/json' },
    });
    expect(signedInvalid.status).toBe(400);
    const signedValid = await send('/strict', {
      body: '{"n":3}',
      headers: { ...signedHeaders('{"n":3}'), 'content-type': 'application/json' },
    });
    expect(signedValid).toEqual({ status: 200, json: { n: 3 } });
  });

  it('rejects a replayed request with 401 replayed', async () => {
    const body = '{"pay":"once"}';
    const headers = { ...signedHeaders(body), 'content-type': 'application/json' };
    expect((await send('/echo', { body, headers })).status).toBe(200);
    const replay = await send('/echo', { body, headers });
    expect(replay.status).toBe(401);
    expect(replay.json.error.reason).toBe('replayed');
  });

  it('reads secrets per request, so a rotation takes effect without a restart', async () => {
    const body = '{}';
    const signedOld = () => ({ ...signedHeaders(body, { secrets: [OLD_SECRET] }), 'content-type': 'application/json' });
    expect((await send('/echo', { body, headers: signedOld() })).status).toBe(401);
    secrets = [NEW_SECRET, OLD_SECRET];
    try {
      expect((await send('/echo', { body, headers: signedOld() })).status).toBe(200);
    } finally {
      secrets = [NEW_SECRET];
    }
  });

  it('refuses to register without a secret', async () => {
    const empty = Fastify();
    empty.register(crochetVerifier, { secrets: [] });
    await expect(empty.ready()).rejects.toThrow(/secret/);
    await empty.close();
  });
});
