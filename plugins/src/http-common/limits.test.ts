import { ConfigError, EnvReader } from '@crochet/protocol';
import { describe, expect, it } from 'vitest';
import { originForm } from './index.js';
import { readServerLimits, SERVER_LIMITS_DEFAULT } from './limits.js';

const read = (env: Record<string, string>) => {
  const r = new EnvReader(env);
  const limits = readServerLimits(r);
  r.done();
  return limits;
};

describe('server limits', () => {
  it('defaults', () => {
    expect(read({})).toEqual({
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 60_000,
      keepAliveTimeoutMs: 72_000,
      maxConnections: 10_000,
      maxConnectionsPerClient: 256,
    });
    expect(read({})).toEqual(SERVER_LIMITS_DEFAULT);
  });

  it('reads given values', () => {
    expect(
      read({
        CROCHET_HEADERS_TIMEOUT_MS: '2000',
        CROCHET_REQUEST_TIMEOUT_MS: '5000',
        CROCHET_KEEP_ALIVE_TIMEOUT_MS: '3000',
        CROCHET_MAX_CONNECTIONS: '50',
        CROCHET_MAX_CONNECTIONS_PER_CLIENT: '5',
      }),
    ).toEqual({
      headersTimeoutMs: 2000,
      requestTimeoutMs: 5000,
      keepAliveTimeoutMs: 3000,
      maxConnections: 50,
      maxConnectionsPerClient: 5,
    });
  });

  it('reports each bad variable, and headers timing out after the whole request', () => {
    try {
      read({
        CROCHET_HEADERS_TIMEOUT_MS: '9000',
        CROCHET_REQUEST_TIMEOUT_MS: '8000',
        CROCHET_KEEP_ALIVE_TIMEOUT_MS: 'soon',
        CROCHET_MAX_CONNECTIONS: '0',
        CROCHET_MAX_CONNECTIONS_PER_CLIENT: '-1',
      });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).problems.map((p) => p.split(':')[0]).sort()).toEqual([
        'CROCHET_HEADERS_TIMEOUT_MS',
        'CROCHET_KEEP_ALIVE_TIMEOUT_MS',
        'CROCHET_MAX_CONNECTIONS',
        'CROCHET_MAX_CONNECTIONS_PER_CLIENT',
      ]);
    }
  });
});

describe('absolute-form request targets', () => {
  it('become their origin-form', () => {
    expect(originForm('/a?b=1')).toBe('/a?b=1');
    expect(originForm('http://h/a?b=1')).toBe('/a?b=1');
    expect(originForm('HTTPS://user@h:8443/a/b')).toBe('/a/b');
    expect(originForm('http://h')).toBe('/');
    expect(originForm('http://h?x=1')).toBe('/?x=1');
    expect(originForm('*')).toBe('*');
  });
});
