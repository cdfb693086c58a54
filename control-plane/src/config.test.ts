import { ConfigError } from '@crochet/protocol';
import { describe, expect, it } from 'vitest';
import { loadControlPlaneConfig } from './config.js';

const KEY = Buffer.alloc(32, 7).toString('base64');

describe('control-plane configuration', () => {
  it('reads defaults and given values', () => {
    const config = loadControlPlaneConfig({
      DATABASE_URL: 'postgres://x@h/db',
      CROCHET_ENCRYPTION_KEY: KEY,
      CROCHET_DATA_PLANE_KEY: KEY,
    });
    expect(config).toMatchObject({ port: 8081, powDifficulty: 20, allowPrivateEndpoints: false });
    expect(config.publicBaseUrl).toBe('http://localhost:8080');
    expect(config.trustedProxies).toEqual([]);
    expect(config).toMatchObject({ metricsHost: '127.0.0.1', metricsPort: 9465, bodyLimitBytes: 256 * 1024 });
    expect(config.limits).toMatchObject({ headersTimeoutMs: 10_000, maxConnectionsPerClient: 256 });
  });

  it('keeps all history unless a retention at least as long as its readers need is set', () => {
    const env = { DATABASE_URL: 'postgres://x@h/db', CROCHET_ENCRYPTION_KEY: KEY, CROCHET_DATA_PLANE_KEY: KEY };
    expect(loadControlPlaneConfig(env)).toMatchObject({ historyRetentionDays: 0, historyIntervalSeconds: 3600 });
    expect(loadControlPlaneConfig({ ...env, CROCHET_HISTORY_RETENTION_DAYS: '0' }).historyRetentionDays).toBe(0);
    expect(loadControlPlaneConfig({ ...env, CROCHET_HISTORY_RETENTION_DAYS: '90' }).historyRetentionDays).toBe(90);
    // The Crochet Score reads 90 days of calls.
    expect(() => loadControlPlaneConfig({ ...env, CROCHET_HISTORY_RETENTION_DAYS: '30' })).toThrow(
      /CROCHET_HISTORY_RETENTION_DAYS: must be 0 \(keep all history\) or at least 90 days, got 30: the Crochet Score/,
    );
    for (const bad of ['-1', 'ninety', '1.5', '40000']) {
      expect(() => loadControlPlaneConfig({ ...env, CROCHET_HISTORY_RETENTION_DAYS: bad })).toThrow(
        /CROCHET_HISTORY_RETENTION_DAYS: must be/,
      );
    }
  });

  it('keeps metrics off the API port', () => {
    const env = { DATABASE_URL: 'postgres://x@h/db', CROCHET_ENCRYPTION_KEY: KEY, CROCHET_DATA_PLANE_KEY: KEY };
    expect(() => loadControlPlaneConfig({ ...env, CONTROL_PLANE_METRICS_PORT: '8081' })).toThrow(
      /CONTROL_PLANE_METRICS_PORT: must differ from CONTROL_PLANE_PORT/,
    );
    expect(loadControlPlaneConfig({ ...env, CONTROL_PLANE_METRICS_PORT: '0' }).metricsPort).toBe(0);
  });

  it('reads trusted proxies as addresses and CIDRs of both families', () => {
    const config = loadControlPlaneConfig({
      DATABASE_URL: 'postgres://x@h/db',
      CROCHET_ENCRYPTION_KEY: KEY,
      CROCHET_DATA_PLANE_KEY: KEY,
      CONTROL_PLANE_TRUSTED_PROXIES: ' 127.0.0.1, ::1 ,10.0.0.0/8,fd00::/8',
    });
    expect(config.trustedProxies).toEqual(['127.0.0.1', '::1', '10.0.0.0/8', 'fd00::/8']);
    for (const bad of ['localhost', '10.0.0.0/33', '::1/129', '1.2.3.4/8/1', '10.0.0.0/x']) {
      expect(() =>
        loadControlPlaneConfig({
          DATABASE_URL: 'postgres://x@h/db',
          CROCHET_ENCRYPTION_KEY: KEY,
          CROCHET_DATA_PLANE_KEY: KEY,
          CONTROL_PLANE_TRUSTED_PROXIES: bad,
        }),
      ).toThrow(/CONTROL_PLANE_TRUSTED_PROXIES/);
    }
  });

  it('reports one line per bad variable', () => {
    try {
      loadControlPlaneConfig({
        CROCHET_POW_DIFFICULTY: 'hard',
        CROCHET_ALLOW_PRIVATE_ENDPOINTS: 'yes',
        CROCHET_ENCRYPTION_KEY: 'c2hvcnQ=',
        PUBLIC_BASE_URL: 'ftp://x',
        CONTROL_PLANE_TRUSTED_PROXIES: '10.0.0.0/8, 10.0.0.0/33',
      });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      const problems = (error as ConfigError).problems;
      expect(problems.map((p) => p.split(':')[0]).sort()).toEqual([
        'CONTROL_PLANE_TRUSTED_PROXIES',
        'CROCHET_ALLOW_PRIVATE_ENDPOINTS',
        'CROCHET_DATA_PLANE_KEY',
        'CROCHET_ENCRYPTION_KEY',
        'CROCHET_POW_DIFFICULTY',
        'DATABASE_URL',
        'PUBLIC_BASE_URL',
      ]);
    }
  });
});
