import { ConfigError, EnvReader } from '@crochet/protocol';
import { describe, expect, it } from 'vitest';
import { loadPaymentsConfig, SOLANA_MAINNET } from './config.js';

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

const SOLANA = {
  CROCHET_SOLANA_RPC_URL: 'http://127.0.0.1:8899',
  CROCHET_SOLANA_USDC_MINT: 'EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v',
  CROCHET_SOLANA_PAY_TO: '9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin',
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

  it('waits for finalized Solana payments on mainnet and confirmed ones elsewhere, unless told otherwise', () => {
    expect(load({ ...SOLANA, CROCHET_SOLANA_NETWORK: SOLANA_MAINNET }).solana?.commitment).toBe('finalized');
    const devnet = 'solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1';
    expect(load({ ...SOLANA, CROCHET_SOLANA_NETWORK: devnet }).solana?.commitment).toBe('confirmed');
    expect(
      load({ ...SOLANA, CROCHET_SOLANA_NETWORK: SOLANA_MAINNET, CROCHET_SOLANA_COMMITMENT: 'confirmed' }).solana
        ?.commitment,
    ).toBe('confirmed');
    expect(
      load({ ...SOLANA, CROCHET_SOLANA_NETWORK: devnet, CROCHET_SOLANA_COMMITMENT: 'finalized' }).solana?.commitment,
    ).toBe('finalized');
    // `processed` can be rolled back: never enough for money.
    expect(problems({ ...SOLANA, CROCHET_SOLANA_NETWORK: devnet, CROCHET_SOLANA_COMMITMENT: 'processed' })).toEqual([
      'CROCHET_SOLANA_COMMITMENT: must be confirmed or finalized, got "processed"',
    ]);
  });
});
