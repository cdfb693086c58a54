import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { solveChallenge } from '../src/pow.js';
import { startTestControlPlane, type TestPlane } from './helpers.js';
import { type OperatorClient, signUpOperator } from './operator-support.js';

/**
 * U+0000 in any input is a 400 VALIDATION_FAILED naming the field, by one rule on every route: PostgreSQL cannot
 * store the character, and before the rule it reached the database and came back as a 500 (several of these routes
 * need no authentication).
 */

let plane: TestPlane;
let key: string;
let operator: OperatorClient;
let listingId: string;

beforeAll(async () => {
  plane = await startTestControlPlane();
  key = (await plane.register('nul-tester')).apiKey;
  listingId = (await plane.createListing(key)).listing.id;
  operator = await signUpOperator(plane.url);
});
afterAll(() => plane.stop());

/** Every route of the running app (printRoutes' tree, HEAD left out): the catalog, documented or not. */
const routesOf = (tree: string): { method: string; url: string }[] => {
  const stack: string[] = [];
  const routes: { method: string; url: string }[] = [];
  for (const line of tree.split('\n')) {
    const match = /^((?:│ {3}| {4})*)[├└]── (\S+)(?: \(([^)]*)\))?$/.exec(line);
    if (!match) continue;
    const depth = match[1]!.length / 4;
    stack.length = depth;
    stack.push(match[2]!);
    for (const method of (match[3] ?? '').split(', ').filter((m) => m && m !== 'HEAD')) {
      routes.push({ method, url: stack.join('') });
    }
  }
  return routes;
};

/** A request carrying every credential a route could ask for, so that no guard answers before the rule does. */
const send = (method: string, path: string, body?: unknown) =>
  plane.call(method, path, {
    key,
    headers: { cookie: operator.cookie, 'x-csrf-token': operator.csrf },
    ...(body === undefined ? {} : { body }),
  });

const expectNulRefused = (res: Awaited<ReturnType<typeof send>>, field: string, label: string) => {
  expect([res.status, res.body?.error?.code, res.body?.error?.field], `${label}: ${res.text}`).toEqual([
    400,
    'VALIDATION_FAILED',
    field,
  ]);
  expect(res.body.error.message, label).toContain('NUL');
  expect(res.body.error.hint, label).toBeTruthy();
  expect(res.body.error.docs).toBe('/docs/errors#VALIDATION_FAILED');
};

describe('a NUL character in any input', () => {
  it('is refused with 400 VALIDATION_FAILED in the path, query and body of every route', async () => {
    const routes = routesOf(plane.app.printRoutes({ commonPrefix: false }));
    // The catalog as parsed: documented routes, operator routes and the pages alike.
    expect(routes.length).toBeGreaterThanOrEqual(40);
    expect(routes).toContainEqual({ method: 'POST', url: '/api/v1/operator/signup' });
    expect(routes).toContainEqual({ method: 'PUT', url: '/api/v1/operator/agents/:id/spend-cap' });
    let checked = 0;
    for (const { method, url } of routes) {
      const label = `${method} ${url}`;
      const plain = url.replace(/:([A-Za-z]+)/g, (_, name: string) => (name === 'id' ? listingId : 'x'));
      for (const [, name] of url.matchAll(/:([A-Za-z]+)/g)) {
        const path = url.replace(`:${name}`, 'x%00y').replace(/:([A-Za-z]+)/g, 'x');
        expectNulRefused(await send(method, path), `params.${name}`, `${label} (param ${name})`);
        checked++;
      }
      expectNulRefused(await send(method, `${plain}?nul=a%00b`), 'querystring.nul', `${label} (query)`);
      checked++;
      if (method !== 'GET') {
        expectNulRefused(await send(method, plain, { nul: 'a\u0000b' }), 'body.nul', `${label} (body)`);
        expectNulRefused(await send(method, plain, { a: { b: ['ok', 'x\u0000'] } }), 'body.a.b.1', `${label} (deep)`);
        checked += 2;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(100);
  });

  it('is refused where it used to reach PostgreSQL, naming the real field', async () => {
    // Solved challenges, so that without the rule each of these would get as far as the INSERT.
    const solved = async (path: string) => {
      const { body } = await send('POST', path);
      return { challenge_id: body.data.challenge_id, nonce: solveChallenge(body.data.salt, body.data.difficulty) };
    };
    const listing = async (fields: Record<string, unknown>) => ({
      ...(await solved('/api/v1/listings/challenge')),
      name: 'n',
      description: 'd',
      pricing_model: 'free',
      private_endpoint_url: 'http://127.0.0.1:9/echo',
      ...fields,
    });
    const cases: [string, string, unknown, string][] = [
      ['POST', '/api/v1/register', { ...(await solved('/api/v1/auth/challenge')), name: 'evil\u0000' }, 'body.name'],
      [
        'POST',
        '/api/v1/register',
        { ...(await solved('/api/v1/auth/challenge')), name: 'ok', description: '\u0000' },
        'body.description',
      ],
      ['POST', '/api/v1/listings', await listing({ name: 'a\u0000' }), 'body.name'],
      ['POST', '/api/v1/listings', await listing({ tags: ['x\u0000'] }), 'body.tags.0'],
      ['POST', '/api/v1/listings', await listing({ input_schema: { 'a\u0000': 1 } }), 'body.input_schema.a\\u0000'],
      ['POST', '/api/v1/listings', await listing({ output_example: ['\u0000'] }), 'body.output_example.0'],
      ['PATCH', `/api/v1/listings/${listingId}`, { description: 'x\u0000y' }, 'body.description'],
      ['GET', '/api/v1/listings?q=a%00b', undefined, 'querystring.q'],
      ['GET', '/api/v1/listings?tag=a%00', undefined, 'querystring.tag'],
      ['GET', '/api/v1/gateway-requests?payment_proof=0x%00', undefined, 'querystring.payment_proof'],
      ['GET', '/api/v1/listings/lst_%00', undefined, 'params.id'],
      ['GET', '/api/v1/gateway-requests/gr_%00/receipt', undefined, 'params.id'],
      ['DELETE', '/api/v1/keys/key_%00', undefined, 'params.id'],
      ['POST', '/api/v1/keys', { name: 'laptop\u0000' }, 'body.name'],
    ];
    for (const [method, path, body, field] of cases) {
      expectNulRefused(await send(method, path, body), field, `${method} ${path}`);
    }
    // Without any credential: operator sign-up and log-in.
    for (const path of ['/api/v1/operator/signup', '/api/v1/operator/login']) {
      const res = await plane.call('POST', path, {
        body: { email: 'a\u0000@example.test', password: 'long enough pw' },
      });
      expectNulRefused(res, 'body.email', path);
    }
    // Nothing was stored on the way: the listing is as it was.
    const stored = await plane.call('GET', `/api/v1/listings/${listingId}`, { key });
    expect(stored.body.data.description).toBe('Echoes its input');
    expect((await plane.call('GET', '/api/v1/listings?limit=100')).body.data).toHaveLength(1);
  });
});
