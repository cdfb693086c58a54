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
  });

  it('reports one line per bad variable', () => {
    try {
      loadControlPlaneConfig({
        CROCHET_POW_DIFFICULTY: 'hard',
        CROCHET_ALLOW_PRIVATE_ENDPOINTS: 'yes',
        CROCHET_ENCRYPTION_KEY: 'c2hvcnQ=',
        PUBLIC_BASE_URL: 'ftp://x',
      });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      const problems = (error as ConfigError).problems;
      expect(problems.map((p) => p.split(':')[0]).sort()).toEqual([
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
