import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestPlane } from '../../control-plane/test/helpers.js';
import type { ProxyServer } from '../src/app.js';
import { startTestStack, type TestStack } from './stack.js';

let stack: TestStack;
let plane: TestPlane;
let proxy: ProxyServer;
beforeAll(async () => {
  stack = await startTestStack();
  plane = stack.plane;
  proxy = stack.proxies[0]!;
});
afterAll(() => stack.stop());

describe('the proxy as the public entry point', () => {
  it('serves the whole API from one base URL', async () => {
    const { apiKey } = await plane.register('via-plane');
    const me = await fetch(`${proxy.url}/api/v1/me`, { headers: { authorization: `Bearer ${apiKey}` } });
    expect(me.status).toBe(200);
    const requestId = me.headers.get('x-request-id');
    expect(requestId).toMatch(/^req_/);
    const challenge = await fetch(`${proxy.url}/api/v1/auth/challenge`, { method: 'POST' });
    expect(challenge.status).toBe(201);
    const llms = await fetch(`${proxy.url}/llms.txt`);
    expect(await llms.text()).toContain('# Crochet');
    const bad = await fetch(`${proxy.url}/api/v1/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"broken',
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).error.code).toBe('INVALID_JSON');
  });

  it('passes the request id through to the control plane', async () => {
    const id = 'req_01M8H4C1Q32GTDB099HCXZXM39';
    const res = await fetch(`${proxy.url}/api/v1/nope`, { headers: { 'x-request-id': id } });
    expect(res.status).toBe(404);
    expect(((await res.json()) as any).error.request_id).toBe(id);
  });

  it('answers its own health check', async () => {
    expect((await fetch(`${proxy.url}/healthz`)).status).toBe(200);
  });

  it('answers 503 CONTROL_PLANE_UNAVAILABLE with Retry-After when the control plane is down', async () => {
    const orphan = await stack.addProxy({ CONTROL_PLANE_URL: 'http://127.0.0.1:9' });
    try {
      const res = await fetch(`${orphan.url}/api/v1/listings`);
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
      expect(((await res.json()) as any).error.code).toBe('CONTROL_PLANE_UNAVAILABLE');
    } finally {
      await orphan.close();
    }
  });
});
