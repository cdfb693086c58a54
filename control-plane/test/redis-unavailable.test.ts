import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../../proxy/test/stack.js';
import { type RedisProcess, startRedisProcess } from './fault-services.js';
import { startTestControlPlane, type TestPlane } from './helpers.js';

/**
 * The control plane keeps operator sessions, sign-in limits and claim-code limits in Redis. With Redis gone, the
 * routes that need it answer 503 STATE_UNAVAILABLE with Retry-After (a state to wait out, not a 500), readiness says
 * so, the routes that need only PostgreSQL keep answering, and everything works again once Redis is back (empty).
 */
describe('the control plane while Redis is unreachable', () => {
  let redis: RedisProcess;
  let plane: TestPlane;
  beforeAll(async () => {
    redis = await startRedisProcess();
    plane = await startTestControlPlane({}, {}, { redisUrl: redis.url });
  });
  afterAll(async () => {
    await redis?.start().catch(() => {}); // running again, for the plane's cleanup
    await plane?.stop();
    await redis?.stop();
  });

  it('answers 503 STATE_UNAVAILABLE where Redis is needed, serves the rest, and recovers', async () => {
    const agent = await plane.register('agent');
    const claim = () => plane.call('POST', '/api/v1/me/claim', { key: agent.apiKey });
    const login = () =>
      plane.call('POST', '/api/v1/operator/login', { body: { email: 'nobody@example.com', password: 'x'.repeat(12) } });
    expect((await claim()).status).toBe(201);

    await redis.kill();
    for (const res of [await claim(), await login()]) {
      expect(res.status, res.text).toBe(503);
      expect(res.body.error).toMatchObject({ code: 'STATE_UNAVAILABLE', docs: '/docs/errors#STATE_UNAVAILABLE' });
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    }
    const ready = await plane.call('GET', '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.data.checks).toEqual({ postgres: 'ok', redis: 'unavailable' });
    expect((await plane.call('GET', '/api/v1/me', { key: agent.apiKey })).status).toBe(200);

    await redis.start();
    await eventually(async () => expect((await plane.call('GET', '/readyz')).status).toBe(200), 15_000);
    expect((await claim()).status).toBe(201);
  });
});
