import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientBucket } from '../src/routes/operator.js';
import { startTestControlPlane, type TestPlane } from './helpers.js';
import { type OperatorResponse, operatorRequest, signUpOperator, testEmail } from './operator-support.js';

/**
 * Sign-in guessing is limited in Redis: 5 failures per email from one client and 30 per client address in 15 minutes
 * (IPv6 counted by /64), and 100 per email from all clients in an hour, then 429 RATE_LIMITED with Retry-After. The control plane trusts X-Forwarded-For from loopback
 * here (CONTROL_PLANE_TRUSTED_PROXIES), so each test is a client of its own.
 */
let plane: TestPlane;
beforeAll(async () => {
  plane = await startTestControlPlane({ CONTROL_PLANE_TRUSTED_PROXIES: '127.0.0.1,::1' });
});
afterAll(() => plane?.stop());

let clients = 0;
const newClientAddress = () => `203.0.113.${++clients}`;

const login = (email: string, password: string, address: string): Promise<OperatorResponse> =>
  operatorRequest(plane.url, 'POST', '/api/v1/operator/login', {
    headers: { 'x-forwarded-for': address },
    body: { email, password },
  });

const expectLimited = (res: OperatorResponse) => {
  expect([res.status, res.body.error.code], res.text).toEqual([429, 'RATE_LIMITED']);
  const retryAfter = Number(res.headers.get('retry-after'));
  expect(retryAfter).toBeGreaterThan(0);
  expect(retryAfter).toBeLessThanOrEqual(15 * 60);
  expect(res.body.error.retry_after_seconds).toBe(retryAfter);
};

describe('the client a limit counts', () => {
  it('is the IPv4 address, or the /64 of an IPv6 address', () => {
    expect(clientBucket('203.0.113.7')).toBe('203.0.113.7');
    expect(clientBucket('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(clientBucket('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(clientBucket('2001:db8:1:2:bbbb:cccc:dddd:eeee')).toBe('2001:db8:1:2::/64');
    expect(clientBucket('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(clientBucket('::1')).toBe('0:0:0:0::/64');
  });

  it('puts two addresses of one IPv6 /64 in one bucket for sign-in failures', async () => {
    const operator = await signUpOperator(plane.url);
    for (let i = 0; i < 5; i++) {
      const res = await login(operator.email, 'wrong password', `2001:db8:77:1::${i + 1}`);
      expect(res.status, res.text).toBe(401);
    }
    expectLimited(await login(operator.email, operator.password, '2001:db8:77:1:ffff::9'));
    expect((await login(operator.email, operator.password, '2001:db8:77:2::1')).status).toBe(200);
  });
});

describe('operator sign-in rate limit', () => {
  it('refuses an email from a client after 5 failures, even with the right password; the owner elsewhere signs in', async () => {
    const operator = await signUpOperator(plane.url);
    const address = newClientAddress();
    for (let i = 0; i < 5; i++) {
      const res = await login(operator.email, `wrong password ${i}`, address);
      expect(res.status, res.text).toBe(401);
    }
    expectLimited(await login(operator.email, operator.password, address));
    expectLimited(await login(operator.email.toUpperCase(), operator.password, address));
    // Guessing from one client cannot lock the operator out: from another address the right password works.
    expect((await login(operator.email, operator.password, newClientAddress())).status).toBe(200);
    // Another email from the same address is not affected.
    const other = await signUpOperator(plane.url);
    expect((await login(other.email, other.password, address)).status).toBe(200);
  });

  it('forgets an email’s failures after a successful sign-in', async () => {
    const operator = await signUpOperator(plane.url);
    const address = newClientAddress();
    for (let i = 0; i < 4; i++) expect((await login(operator.email, 'wrong password', address)).status).toBe(401);
    expect((await login(operator.email, operator.password, address)).status).toBe(200);
    for (let i = 0; i < 5; i++) expect((await login(operator.email, 'wrong password', address)).status).toBe(401);
    expectLimited(await login(operator.email, 'wrong password', address));
  });

  it('counts concurrent guesses: a burst gets no more than the allowance', async () => {
    const operator = await signUpOperator(plane.url);
    const address = newClientAddress();
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => login(operator.email, `burst guess ${i}`, address)),
    );
    expect(results.filter((r) => r.status === 401)).toHaveLength(5);
    for (const res of results.filter((r) => r.status !== 401)) expectLimited(res);
  });

  it('refuses an address after 30 failures over many emails, and not another address', async () => {
    const address = newClientAddress();
    for (let i = 0; i < 30; i++) {
      const res = await login(testEmail(), 'wrong password', address);
      expect(res.status, `attempt ${i}: ${res.text}`).toBe(401);
    }
    const operator = await signUpOperator(plane.url);
    expectLimited(await login(operator.email, operator.password, address));
    expect((await login(operator.email, operator.password, newClientAddress())).status).toBe(200);
  });

  it('does not count successful sign-ins against the address', async () => {
    const operator = await signUpOperator(plane.url);
    const address = newClientAddress();
    for (let i = 0; i < 35; i++) expect((await login(operator.email, operator.password, address)).status).toBe(200);
    // 35 scrypt verifications one after another: seconds of CPU, more while other test files run beside it.
  }, 120_000);
});
