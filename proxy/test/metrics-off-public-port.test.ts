import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadProxyConfig } from '../src/config.js';
import { expectApiError, rawRequest, startTestStack, type TestStack } from './stack.js';

/**
 * Metrics (listing ids, traffic) are served on a listener of their own — CROCHET_METRICS_PORT for a proxy,
 * CONTROL_PLANE_METRICS_PORT for the control plane, on 127.0.0.1 unless told otherwise — and never on the public
 * port: neither the proxy's own nor the control plane's through the passthrough (404 ROUTE_NOT_FOUND there).
 */

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(() => stack.stop());

describe('metrics off the public port', () => {
  it('the public port answers 404 ROUTE_NOT_FOUND for /metrics, however asked', async () => {
    const proxy = stack.proxies[0]!;
    for (const path of ['/metrics', '/metrics/', '/metrics?x=1', '/METRICS', '/./metrics']) {
      for (const method of ['GET', 'HEAD', 'POST']) {
        const res = await rawRequest(proxy.url, path, { method });
        expect(res.status, `${method} ${path}: ${res.text}`).toBe(404);
        if (method !== 'HEAD') expectApiError(res, 404, 'ROUTE_NOT_FOUND');
        expect(res.text, `${method} ${path}`).not.toContain('crochet_');
      }
    }
    // Paths the passthrough refuses to forward (they could escape its prefix) are a 400, not a 500.
    for (const path of ['//metrics', '/api/../metrics']) {
      expectApiError(await rawRequest(proxy.url, path, { method: 'GET' }), 400, 'HTTP_REQUEST_MALFORMED');
    }
    // The control plane's API port has no /metrics either (the proxies pass every other path to it).
    expectApiError(await rawRequest(stack.plane.url, '/metrics', { method: 'GET' }), 404, 'ROUTE_NOT_FOUND');
  });

  it('each plane serves /metrics on its own listener, on loopback', async () => {
    for (const [url, metric] of [
      [stack.proxies[0]!.metricsUrl, 'crochet_config_version'],
      [stack.plane.metricsUrl, 'crochet_cp_http_requests_total'],
    ] as const) {
      expect(new URL(url).hostname).toBe('127.0.0.1');
      const res = await fetch(`${url}/metrics`);
      expect(res.status).toBe(200);
      expect(await res.text()).toContain(metric);
      // Nothing else is served there.
      expectApiError(await rawRequest(url, '/api/v1/listings', { method: 'GET' }), 404, 'ROUTE_NOT_FOUND');
    }
    expect(stack.proxies[0]!.metricsUrl).not.toBe(stack.proxies[0]!.url);
  });

  it('defaults: 127.0.0.1:9464 for a proxy, 127.0.0.1:9465 for the control plane; never the public port', () => {
    const env = { CROCHET_DATA_PLANE_KEY: Buffer.alloc(32, 1).toString('base64') };
    expect(loadProxyConfig(env)).toMatchObject({ metricsHost: '127.0.0.1', metricsPort: 9464 });
    expect(stack.plane.config).toMatchObject({ metricsHost: '127.0.0.1' });
    expect(() => loadProxyConfig({ ...env, PORT: '9100', CROCHET_METRICS_PORT: '9100' })).toThrow(
      /CROCHET_METRICS_PORT: must differ from PORT/,
    );
  });
});
