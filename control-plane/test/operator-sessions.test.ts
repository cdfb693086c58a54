import { randomBytes, scryptSync } from 'node:crypto';
import { Redis } from 'ioredis';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { operatorRedisKeys } from '../src/operators/keys.js';
import { verifyPassword } from '../src/operators/passwords.js';
import { SessionManager, sessionKey, signSession } from '../src/operators/session.js';
import { startTestControlPlane, TEST_REDIS_URL, type TestPlane } from './helpers.js';
import {
  claimAgent,
  logInOperator,
  type OperatorClient,
  operatorRequest,
  signUpOperator,
  testEmail,
} from './operator-support.js';

/** §3.7 operator accounts: sign-up, sign-in, sessions in an HttpOnly cookie, logout that ends them, and CSRF. */
let plane: TestPlane;
let redis: Redis;
beforeAll(async () => {
  plane = await startTestControlPlane();
  redis = new Redis(TEST_REDIS_URL);
});
afterAll(async () => {
  redis?.disconnect();
  await plane?.stop();
});

const session = (cookie: string) =>
  operatorRequest(plane.url, 'GET', '/api/v1/operator/session', { headers: { cookie } });

describe('operator accounts', () => {
  it('signs up with a normalised email, a scrypt hash and a strict session cookie', async () => {
    const email = testEmail();
    const res = await operatorRequest(plane.url, 'POST', '/api/v1/operator/signup', {
      body: { email: `  ${email.toUpperCase()} `, password: 'correct horse battery' },
    });
    expect(res.status, res.text).toBe(201);
    expect(res.body.data.operator).toEqual({
      id: expect.stringMatching(/^op_[0-9A-HJKMNP-TV-Z]{26}$/),
      email,
      created_at: expect.any(String),
    });
    expect(res.body.data.csrf_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const [cookie] = res.headers.getSetCookie();
    const attributes = cookie!.split('; ');
    expect(attributes[0]).toMatch(/^crochet_session=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(attributes).toEqual(expect.arrayContaining(['HttpOnly', 'SameSite=Strict', 'Path=/', 'Max-Age=604800']));
    // PUBLIC_BASE_URL is http here; over https the cookie is Secure (below).
    expect(attributes).not.toContain('Secure');
    expect(res.headers.get('cache-control')).toBe('no-store');

    const { rows } = await plane.deps.pool.query('SELECT email, password_hash FROM operators WHERE id = $1', [
      res.body.data.operator.id,
    ]);
    expect(rows[0].email).toBe(email);
    expect(rows[0].password_hash).toMatch(/^scrypt\$32768\$8\$3\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=$/);
    // Hashes made with earlier parameters keep verifying: the parameters are read from the stored value.
    const salt = Buffer.alloc(16, 1);
    const key = scryptSync('an older password', salt, 32, { N: 2 ** 14, r: 8, p: 1 });
    const older = ['scrypt', 2 ** 14, 8, 1, salt.toString('base64'), key.toString('base64')].join('$');
    expect(await verifyPassword('an older password', older)).toBe(true);
    expect(await verifyPassword('another password', older)).toBe(false);

    const again = await operatorRequest(plane.url, 'POST', '/api/v1/operator/signup', {
      body: { email: email.replace('op-', 'OP-'), password: 'another long password' },
    });
    expect([again.status, again.body.error.code]).toEqual([409, 'OPERATOR_EMAIL_TAKEN']);
  });

  it('refuses malformed sign-ups', async () => {
    const cases: [unknown, string][] = [
      [{ email: testEmail(), password: 'short' }, 'body.password'],
      [{ email: testEmail(), password: 'x'.repeat(201) }, 'body.password'],
      [{ email: 'not-an-email', password: 'long enough password' }, 'body.email'],
      [{ email: 'a b@example.test', password: 'long enough password' }, 'body.email'],
      [{ email: testEmail(), password: 'long enough password', admin: true }, 'body.admin'],
      [{ email: testEmail(), password: 12345678901 }, 'body.password'],
    ];
    for (const [body, field] of cases) {
      const res = await operatorRequest(plane.url, 'POST', '/api/v1/operator/signup', { body });
      expect([res.status, res.body.error.code, res.body.error.field], res.text).toEqual([
        400,
        'VALIDATION_FAILED',
        field,
      ]);
    }
  });

  it('signs in with the right password only, with the same answer for an unknown email', async () => {
    const operator = await signUpOperator(plane.url);
    const wrong = await operatorRequest(plane.url, 'POST', '/api/v1/operator/login', {
      body: { email: operator.email, password: 'wrong password!' },
    });
    const unknown = await operatorRequest(plane.url, 'POST', '/api/v1/operator/login', {
      body: { email: testEmail(), password: 'wrong password!' },
    });
    for (const res of [wrong, unknown]) {
      expect([res.status, res.body.error.code]).toEqual([401, 'OPERATOR_CREDENTIALS_INVALID']);
      expect(res.headers.getSetCookie()).toEqual([]);
    }
    expect(unknown.body.error.message).toBe(wrong.body.error.message);

    const again = await logInOperator(plane.url, `  ${operator.email.toUpperCase()}`, operator.password);
    expect(again.id).toBe(operator.id);
    expect(again.cookie).not.toBe(operator.cookie);
    expect(again.csrf).not.toBe(operator.csrf);
    // The page recovers its CSRF token after a reload from the session.
    const recovered = await session(again.cookie);
    expect(recovered.status).toBe(200);
    expect(recovered.body.data).toEqual({
      operator: { id: operator.id, email: operator.email, created_at: expect.any(String) },
      csrf_token: again.csrf,
    });
  });

  it('ends a session at logout, so a copy of its cookie stops working, and leaves other sessions alone', async () => {
    const operator = await signUpOperator(plane.url);
    const other = await logInOperator(plane.url, operator.email, operator.password);
    const stolen = operator.cookie;
    const out = await operator.call('POST', '/api/v1/operator/logout');
    expect(out.status, out.text).toBe(204);
    const cleared = out.headers.getSetCookie()[0]!.split('; ');
    expect(cleared).toEqual(expect.arrayContaining(['crochet_session=', 'Max-Age=0', 'HttpOnly', 'SameSite=Strict']));

    const replay = await session(stolen);
    expect([replay.status, replay.body.error.code]).toEqual([401, 'OPERATOR_SESSION_REQUIRED']);
    const overview = await operatorRequest(plane.url, 'GET', '/api/v1/operator/overview', {
      headers: { cookie: stolen },
    });
    expect(overview.status).toBe(401);
    expect((await session(other.cookie)).status).toBe(200);
  });

  it('refuses no cookie, a tampered cookie, a foreign key, an expired session and alg none with 401', async () => {
    const operator = await signUpOperator(plane.url);
    const token = operator.cookie.slice('crochet_session='.length);
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    const key = sessionKey(plane.config.encryptionKey);
    const reencode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const flipped = `${signature.slice(0, -2)}${signature.endsWith('AA') ? 'BB' : 'AA'}`;
    const other = await signUpOperator(plane.url);
    const live = { operatorId: operator.id, sessionId: claims.jti, csrf: claims.csrf };
    const forged = [
      '',
      'crochet_session=',
      'crochet_session=garbage',
      `crochet_session=${header}.${payload}.${flipped}`,
      // Someone else's id under this session's signature.
      `crochet_session=${header}.${reencode({ ...claims, sub: other.id })}.${signature}`,
      // Signed with a key of another deployment.
      `crochet_session=${await signSession(live, sessionKey(randomBytes(32)))}`,
      // The right key and a live session id, but past its expiry.
      `crochet_session=${await signSession(live, key, Math.floor(Date.now() / 1000) - 10)}`,
      `crochet_session=${reencode({ alg: 'none', typ: 'JWT' })}.${payload}.`,
      // Right key, but a session id that was never issued.
      `crochet_session=${await signSession({ ...live, sessionId: 'never-issued' }, key)}`,
      // Right key, right session, another operator as subject.
      `crochet_session=${await signSession({ ...live, operatorId: other.id }, key)}`,
      // HS256 with the right key but no audience: not a session token.
      `crochet_session=${await new SignJWT({ csrf: claims.csrf })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject(operator.id)
        .setJti(claims.jti)
        .setExpirationTime('1h')
        .sign(key)}`,
    ];
    for (const cookie of forged) {
      const res = await session(cookie);
      expect([res.status, res.body.error.code], cookie).toEqual([401, 'OPERATOR_SESSION_REQUIRED']);
    }
    // The genuine cookie still works, also after a planted one (a sibling domain can add cookies, not remove them).
    expect((await session(operator.cookie)).status).toBe(200);
    expect((await session(`crochet_session=planted; ${operator.cookie}`)).body.data.operator.id).toBe(operator.id);
    // Re-signed with the same key and claims, a session is accepted: the checks above are what refused them.
    expect((await session(`crochet_session=${await signSession(live, key)}`)).status).toBe(200);
  });

  it('marks the cookie Secure over https and verifies sessions signed before a key rotation', async () => {
    const keys = operatorRedisKeys(plane.config.redisPrefix);
    const oldKey = randomBytes(32);
    const before = new SessionManager({ redis, keys, encryptionKeys: [oldKey], secure: true });
    const created = await before.create('op_01J00000000000000000000000');
    expect(created.cookie.split('; ')).toContain('Secure');
    const after = new SessionManager({ redis, keys, encryptionKeys: [randomBytes(32), oldKey], secure: true });
    const token = created.cookie.split(';')[0]!;
    expect(await after.read(token)).toEqual(created.session);
    expect(await new SessionManager({ redis, keys, encryptionKeys: [randomBytes(32)], secure: true }).read(token)).toBe(
      null,
    );
  });
});

describe('CSRF on state-changing operator routes', () => {
  let operator: OperatorClient;
  let agentId: string;
  let listingId: string;
  let keyId: string;
  let routes: [string, string, unknown][];

  beforeAll(async () => {
    operator = await signUpOperator(plane.url);
    const agent = await plane.register('guarded');
    agentId = agent.agentId;
    listingId = (await plane.createListing(agent.apiKey)).listing.id;
    keyId = (await plane.call('GET', '/api/v1/me', { key: agent.apiKey })).body.data.current_key_id;
    await claimAgent(plane.url, operator, agent.apiKey);
    const code = (await plane.call('POST', '/api/v1/me/claim', { key: (await plane.register('x')).apiKey })).body.data;
    routes = [
      ['POST', '/api/v1/operator/claims', { claim_code: code.claim_code }],
      ['PUT', `/api/v1/operator/agents/${agentId}/spend-cap`, { daily_spend_cap: '1' }],
      ['POST', `/api/v1/operator/agents/${agentId}/pause`, undefined],
      ['POST', `/api/v1/operator/agents/${agentId}/resume`, undefined],
      ['POST', `/api/v1/operator/listings/${listingId}/pause`, undefined],
      ['POST', `/api/v1/operator/listings/${listingId}/resume`, undefined],
      ['POST', `/api/v1/operator/agents/${agentId}/keys/${keyId}/revoke`, undefined],
      ['POST', '/api/v1/operator/logout', undefined],
    ];
  });

  it('answers 403 CSRF_TOKEN_INVALID without the token, with a wrong one or with another session’s', async () => {
    const another = await signUpOperator(plane.url);
    for (const [method, path, body] of routes) {
      for (const csrf of [false, 'wrong', another.csrf, `${operator.csrf}x`, ''] as const) {
        const res = await operator.call(method, path, { csrf, ...(body === undefined ? {} : { body }) });
        expect([res.status, res.body?.error?.code], `${method} ${path} csrf=${csrf}`).toEqual([
          403,
          'CSRF_TOKEN_INVALID',
        ]);
      }
      // Without a session it is 401 first, whatever the token.
      const anonymous = await operator.call(method, path, { cookie: false, ...(body === undefined ? {} : { body }) });
      expect([anonymous.status, anonymous.body.error.code]).toEqual([401, 'OPERATOR_SESSION_REQUIRED']);
    }
    // Nothing happened: the agent is active, uncapped, its key live, its listing active, the code unused.
    const overview = await operator.call('GET', '/api/v1/operator/overview');
    const agent = overview.body.data.agents.find((a: { id: string }) => a.id === agentId);
    expect(agent).toMatchObject({ status: 'active', daily_spend_cap: null });
    expect(agent.keys[0].status).toBe('active');
    expect(agent.listings[0].status).toBe('active');
    expect(overview.body.data.agents).toHaveLength(1);
    expect((await session(operator.cookie)).status).toBe(200);
  });

  it('refuses a cross-site Origin even with the right token, and accepts the site’s own', async () => {
    const [method, path, body] = routes[1]!;
    const crossSite: Record<string, string>[] = [
      { origin: 'https://evil.example' },
      { 'sec-fetch-site': 'cross-site' },
    ];
    for (const headers of crossSite) {
      const res = await operator.call(method, path, { headers, body });
      expect([res.status, res.body.error.code]).toEqual([403, 'CSRF_TOKEN_INVALID']);
      const login = await operatorRequest(plane.url, 'POST', '/api/v1/operator/login', {
        headers,
        body: { email: operator.email, password: operator.password },
      });
      expect(login.status).toBe(403);
    }
    const same = await operator.call(method, path, {
      headers: { origin: 'http://crochet.test:8080', 'sec-fetch-site': 'same-origin' },
      body,
    });
    expect(same.status, same.text).toBe(200);
  });

  it('refuses bad bodies with a registry code once signed in', async () => {
    const bodyRoutes = routes.filter(([, , body]) => body !== undefined);
    const bad: [string, Record<string, string>, number, string][] = [
      ['{"claim_code": ', { 'content-type': 'application/json' }, 400, 'INVALID_JSON'],
      ['[1,2]', { 'content-type': 'application/json' }, 400, 'VALIDATION_FAILED'],
      ['{"surprise":1}', { 'content-type': 'application/json' }, 400, 'VALIDATION_FAILED'],
      ['claim_code=x', { 'content-type': 'text/plain' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
      [
        JSON.stringify({ claim_code: 'x'.repeat(300_000) }),
        { 'content-type': 'application/json' },
        413,
        'PAYLOAD_TOO_LARGE',
      ],
    ];
    for (const [method, path] of bodyRoutes) {
      for (const [body, headers, status, code] of bad) {
        const res = await fetch(`${plane.url}${path}`, {
          method,
          headers: { ...headers, cookie: operator.cookie, 'x-csrf-token': operator.csrf },
          body,
        });
        const json = (await res.json()) as { error: { code: string } };
        expect([res.status, json.error.code], `${method} ${path} ${body.slice(0, 20)}`).toEqual([status, code]);
      }
    }
  });

  it('keeps the dashboard routes out of the agents’ API documents, and the claim route in them', async () => {
    const openapi = (await plane.call('GET', '/api/openapi.json')).body;
    const paths = Object.keys(openapi.paths);
    expect(paths).toContain('/api/v1/me/claim');
    expect(paths.filter((p) => p.startsWith('/api/v1/operator'))).toEqual([]);
  });

  it('lets every route through with the right token', async () => {
    for (const [method, path, body] of routes) {
      const res = await operator.call(method, path, body === undefined ? {} : { body });
      expect(res.status, `${method} ${path}: ${res.text}`).toBe(path.endsWith('/logout') ? 204 : 200);
    }
  });
});
