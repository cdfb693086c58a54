import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { operatorRequest, signUpOperator } from '../../control-plane/test/operator-support.js';
import { startTestStack, type TestStack } from './stack.js';

/**
 * Per-client limits in the control plane (operator sign-in) see the real client through the proxy: the proxy
 * replaces X-Forwarded-For with the client's address (resolved through PROXY_TRUSTED_PROXIES when a load balancer is
 * in front of it), and the control plane trusts that header from the proxies (CONTROL_PLANE_TRUSTED_PROXIES).
 */
let behindBalancer: TestStack;
let exposed: TestStack;

beforeAll(async () => {
  const planeEnv = { CONTROL_PLANE_TRUSTED_PROXIES: '127.0.0.1,::1' };
  behindBalancer = await startTestStack({ planeEnv, proxyEnv: { PROXY_TRUSTED_PROXIES: '127.0.0.1,::1' } });
  exposed = await startTestStack({ planeEnv });
});
afterAll(async () => {
  await behindBalancer?.stop();
  await exposed?.stop();
});

const login = (stack: TestStack, email: string, password: string, forwardedFor: string) =>
  operatorRequest(stack.proxies[0]!.url, 'POST', '/api/v1/operator/login', {
    headers: { 'x-forwarded-for': forwardedFor },
    body: { email, password },
  });

const failFiveTimes = async (stack: TestStack, email: string, forwardedFor: string) => {
  for (let i = 0; i < 5; i++) {
    const res = await login(stack, email, 'wrong password', forwardedFor);
    expect(res.status, res.text).toBe(401);
  }
};

describe('the client address the control plane sees through a proxy', () => {
  it('behind a trusted balancer: each client is counted on its own', async () => {
    const operator = await signUpOperator(behindBalancer.proxies[0]!.url);
    await failFiveTimes(behindBalancer, operator.email, '198.51.100.1');
    expect((await login(behindBalancer, operator.email, operator.password, '198.51.100.1')).status).toBe(429);
    expect((await login(behindBalancer, operator.email, operator.password, '198.51.100.2')).status).toBe(200);
  });

  it('exposed directly: a forged X-Forwarded-For is replaced, so it cannot dodge the limit', async () => {
    const operator = await signUpOperator(exposed.proxies[0]!.url);
    await failFiveTimes(exposed, operator.email, '198.51.100.1');
    const forged = await login(exposed, operator.email, operator.password, '198.51.100.99');
    expect([forged.status, forged.body.error.code]).toEqual([429, 'RATE_LIMITED']);
  });
});
