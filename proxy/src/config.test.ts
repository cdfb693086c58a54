import { describe, expect, it } from 'vitest';
import { loadProxyConfig } from './config.js';

const KEY = Buffer.alloc(32, 7).toString('base64');

describe('proxy configuration', () => {
  it('passes bodies through under the control plane limit, the same variable the control plane reads', () => {
    expect(loadProxyConfig({ CROCHET_DATA_PLANE_KEY: KEY }).bodyLimitBytes).toBe(256 * 1024);
    expect(
      loadProxyConfig({ CROCHET_DATA_PLANE_KEY: KEY, CONTROL_PLANE_BODY_LIMIT_BYTES: '65536' }).bodyLimitBytes,
    ).toBe(65_536);
    // The old proxy-only limit could differ from the control plane's, which is what made 413s race with 503s.
    expect(() => loadProxyConfig({ CROCHET_DATA_PLANE_KEY: KEY, PROXY_BODY_LIMIT_BYTES: '1048576' })).toThrow(
      /PROXY_BODY_LIMIT_BYTES: is replaced by CONTROL_PLANE_BODY_LIMIT_BYTES/,
    );
  });

  it('reads the server limits and the metrics listener', () => {
    const config = loadProxyConfig({
      CROCHET_DATA_PLANE_KEY: KEY,
      CROCHET_REQUEST_TIMEOUT_MS: '30000',
      CROCHET_METRICS_HOST: '0.0.0.0',
      CROCHET_METRICS_PORT: '9100',
    });
    expect(config.limits.requestTimeoutMs).toBe(30_000);
    expect(config).toMatchObject({ metricsHost: '0.0.0.0', metricsPort: 9100 });
    expect(() => loadProxyConfig({ CROCHET_DATA_PLANE_KEY: KEY, CROCHET_METRICS_PORT: '8080' })).toThrow(
      /CROCHET_METRICS_PORT/,
    );
  });
});
