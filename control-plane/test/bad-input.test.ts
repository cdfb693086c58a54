import { ERROR_CODES } from '@crochet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';

let plane: TestPlane;
let key: string;
let listingId: string;
let routes: { method: string; path: string; hasBody: boolean; auth: boolean }[];

beforeAll(async () => {
  plane = await startTestControlPlane({ CONTROL_PLANE_BODY_LIMIT_BYTES: '4096' });
  key = (await plane.register('fuzzer')).apiKey;
  listingId = (await plane.createListing(key)).listing.id;
  const openapi = (await plane.call('GET', '/api/openapi.json')).body;
  // The gateway route is served by the proxies (proxy/test covers it); every other route is this app's.
  routes = Object.entries<any>(openapi.paths).flatMap(([path, methods]) =>
    Object.entries<any>(methods)
      .filter(([, op]) => op.operationId !== 'callGateway')
      .map(([method, op]) => ({
        method: method.toUpperCase(),
        path: path.replace('{id}', listingId),
        hasBody: op.requestBody !== undefined,
        auth: op.security.length === 1,
      })),
  );
});
afterAll(() => plane.stop());

const expectClientError = (res: { status: number; body: any; text: string }, label: string) => {
  expect(res.status, `${label}: ${res.text}`).toBeGreaterThanOrEqual(400);
  expect(res.status, `${label}: ${res.text}`).toBeLessThan(500);
  expect(ERROR_CODES, label).toContain(res.body?.error?.code);
  expect(res.body.error.message, label).toBeTruthy();
  expect(res.body.error.hint, label).toBeTruthy();
};

/** Inputs every body-taking route must refuse with a registry code and a 4xx, never a 500. */
const BAD_BODIES: [string, string, Record<string, string>][] = [
  ['invalid JSON', '{"name": ', { 'content-type': 'application/json' }],
  ['a JSON array', '[1,2,3]', { 'content-type': 'application/json' }],
  ['a JSON string', '"hello"', { 'content-type': 'application/json' }],
  [
    'wrong types',
    JSON.stringify({ name: 5, challenge_id: 7, nonce: true, pricing_model: 1, chain: 9 }),
    {
      'content-type': 'application/json',
    },
  ],
  [
    'an unknown pricing model',
    JSON.stringify({ pricing_model: 'subscription' }),
    { 'content-type': 'application/json' },
  ],
  ['an unknown field only', JSON.stringify({ surprise: 1 }), { 'content-type': 'application/json' }],
  ['plain text', 'name=x', { 'content-type': 'text/plain' }],
  ['an oversized body', JSON.stringify({ name: 'x'.repeat(8000) }), { 'content-type': 'application/json' }],
];

describe('bad input on every route', () => {
  it('gets a 4xx with a registry code for every bad body on every body-taking route', async () => {
    const bodyRoutes = routes.filter((r) => r.hasBody);
    expect(bodyRoutes.length).toBeGreaterThanOrEqual(6);
    for (const route of bodyRoutes) {
      for (const [label, body, headers] of BAD_BODIES) {
        const res = await plane.call(route.method, route.path, { key, body, headers });
        expectClientError(res, `${route.method} ${route.path} with ${label}`);
        if (label === 'an oversized body') expect(res.status).toBe(413);
        if (label === 'invalid JSON') expect(res.body.error.code).toBe('INVALID_JSON');
        if (label === 'plain text') expect(res.status).toBe(415);
      }
    }
  });

  it('gets 401 on every authenticated route without a key or with a malformed one', async () => {
    for (const route of routes.filter((r) => r.auth)) {
      const body = route.method === 'GET' || route.method === 'DELETE' ? {} : { body: {} };
      const none = await plane.call(route.method, route.path, body);
      expect([none.status, none.body.error.code], `${route.method} ${route.path}`).toEqual([401, 'AUTH_REQUIRED']);
      const malformed = await plane.call(route.method, route.path, { key: 'am_k_nope', ...body });
      expect(malformed.body.error.code).toBe('API_KEY_MALFORMED');
    }
  });

  it('refuses malformed ids, queries and unknown routes', async () => {
    const cases: [string, string, number, string][] = [
      ['GET', '/api/v1/listings/not-an-id', 404, 'LISTING_NOT_FOUND'],
      ['GET', `/api/v1/listings/${'x'.repeat(200)}`, 414, 'URI_TOO_LONG'],
      ['GET', '/api/v1/listings/%E0%A4%A', 400, 'VALIDATION_FAILED'],
      ['GET', '/api/v1/listings?limit=0', 400, 'VALIDATION_FAILED'],
      ['GET', '/api/v1/listings?limit=abc', 400, 'VALIDATION_FAILED'],
      ['GET', '/api/v1/listings?limit=1000', 400, 'VALIDATION_FAILED'],
      ['GET', '/api/v1/listings?sort=random', 400, 'VALIDATION_FAILED'],
      ['GET', '/api/v1/listings?pricing_model=subscription', 400, 'VALIDATION_FAILED'],
      ['GET', '/api/v1/listings?cursor=%%%', 400, 'VALIDATION_FAILED'],
      ['GET', '/api/v1/listings?unknown=1', 400, 'VALIDATION_FAILED'],
      ['GET', '/api/v1/nothing-here', 404, 'ROUTE_NOT_FOUND'],
      ['PUT', '/api/v1/me', 404, 'ROUTE_NOT_FOUND'],
      ['DELETE', '/api/v1/keys/key_nope', 404, 'KEY_NOT_FOUND'],
    ];
    for (const [method, path, status, code] of cases) {
      const res = await plane.call(method, path, { key });
      expect([res.status, res.body?.error?.code], `${method} ${path}: ${res.text}`).toEqual([status, code]);
    }
  });

  it('names the offending field', async () => {
    const res = await plane.call('POST', '/api/v1/register', {
      body: { challenge_id: 'chl_01M8H4C1P9JHV629DV3713W3NR', nonce: '1', name: 'x', extra: true },
    });
    expect(res.body.error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'body.extra' });
    const missing = await plane.call('POST', '/api/v1/register', { body: { nonce: '1', name: 'x' } });
    expect(missing.body.error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'body.challenge_id' });
  });
});
