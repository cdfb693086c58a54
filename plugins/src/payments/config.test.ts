import { ConfigError, EnvReader } from '@crochet/protocol';
import { describe, expect, it } from 'vitest';
import { loadPaymentsConfig } from './config.js';

const load = (env: Record<string, string>) => {
  const r = new EnvReader(env);
  const config = loadPaymentsConfig(r);
  r.done();
  return config;
};

const problems = (env: Record<string, string>): readonly string[] => {
  try {
    load(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
};

describe('payments configuration', () => {
  it('refuses a Relay rail without its API key, naming the variable (GET /requests/v3 requires x-api-key)', () => {
    expect(problems({ CROCHET_RELAY_API_URL: 'https://api.relay.link' })).toEqual([
      'CROCHET_RELAY_API_KEY: is required (the Relay API key; GET /requests/v3 requires x-api-key)',
    ]);
    expect(problems({ CROCHET_RELAY_API_URL: 'https://api.relay.link', CROCHET_RELAY_API_KEY: '  ' })).toHaveLength(1);
    expect(
      load({ CROCHET_RELAY_API_URL: 'https://api.relay.link/', CROCHET_RELAY_API_KEY: 'rk_live_1' }).relay,
    ).toEqual({ apiUrl: 'https://api.relay.link', apiKey: 'rk_live_1' });
    // No Relay URL, no Relay rail: the key is not asked for.
    expect(load({}).relay).toBeUndefined();
  });
});
