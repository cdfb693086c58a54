import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { solveChallenge } from '../src/pow.js';
import { startTestControlPlane, type TestPlane } from './helpers.js';

let plane: TestPlane;
beforeAll(async () => {
  plane = await startTestControlPlane();
});
afterAll(() => plane.stop());

const challenge = async () => (await plane.call('POST', '/api/v1/auth/challenge')).body.data;
const expectError = (res: { status: number; body: any }, status: number, code: string) => {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.body.error.code).toBe(code);
  expect(res.body.error.message).toBeTruthy();
  expect(res.body.error.hint).toBeTruthy();
  expect(res.body.error.request_id).toMatch(/^req_/);
  expect(res.body.error.docs).toBe(`/docs/errors#${code}`);
};

describe('registration with proof of work', () => {
  it('issues challenges with the configured difficulty and an expiry', async () => {
    const res = await plane.call('POST', '/api/v1/auth/challenge');
    expect(res.status).toBe(201);
    expect(res.body.data).toMatchObject({ algorithm: 'sha256', difficulty: 4 });
    expect(res.body.data.challenge_id).toMatch(/^chl_/);
    expect(new Date(res.body.data.expires_at).getTime()).toBeGreaterThan(Date.now() + 200_000);
  });

  it('registers an agent and returns a working key once, with the header to use', async () => {
    const c = await challenge();
    const res = await plane.call('POST', '/api/v1/register', {
      body: { challenge_id: c.challenge_id, nonce: solveChallenge(c.salt, c.difficulty), name: 'buyer-1' },
    });
    expect(res.status).toBe(201);
    const { agent, api_key, authorization_header, key } = res.body.data;
    expect(agent.id).toMatch(/^agt_/);
    expect(api_key).toMatch(/^am_k_/);
    expect(authorization_header).toBe(`Bearer ${api_key}`);
    expect(api_key.startsWith(key.prefix)).toBe(true);
    const me = await plane.call('GET', '/api/v1/me', { headers: { authorization: authorization_header } });
    expect(me.status).toBe(200);
    expect(me.body.data.agent.id).toBe(agent.id);
    expect(me.body.data.keys).toHaveLength(1);
    expect(JSON.stringify(me.body)).not.toContain(api_key);
    const stored = await plane.deps.pool.query('SELECT key_hash FROM api_keys WHERE agent_id = $1', [agent.id]);
    expect(stored.rows[0].key_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(stored.rows[0].key_hash).not.toContain(api_key.slice(5, 20));
  });

  it('refuses a reused, expired, unknown or wrongly solved challenge', async () => {
    const c = await challenge();
    const nonce = solveChallenge(c.salt, c.difficulty);
    expect(
      (await plane.call('POST', '/api/v1/register', { body: { challenge_id: c.challenge_id, nonce, name: 'a' } }))
        .status,
    ).toBe(201);
    expectError(
      await plane.call('POST', '/api/v1/register', { body: { challenge_id: c.challenge_id, nonce, name: 'b' } }),
      409,
      'CHALLENGE_ALREADY_USED',
    );

    const expired = await challenge();
    await plane.deps.pool.query("UPDATE pow_challenges SET expires_at = now() - interval '1 second' WHERE id = $1", [
      expired.challenge_id,
    ]);
    expectError(
      await plane.call('POST', '/api/v1/register', {
        body: {
          challenge_id: expired.challenge_id,
          nonce: solveChallenge(expired.salt, expired.difficulty),
          name: 'c',
        },
      }),
      400,
      'CHALLENGE_EXPIRED',
    );

    expectError(
      await plane.call('POST', '/api/v1/register', {
        body: { challenge_id: 'chl_01M8H4C1P9JHV629DV3713W3NR', nonce: '1', name: 'd' },
      }),
      400,
      'CHALLENGE_NOT_FOUND',
    );

    const wrong = await challenge();
    let bad = 0;
    while (solveChallenge(wrong.salt, wrong.difficulty) === String(bad)) bad++;
    // A nonce below the first solution cannot solve it (solveChallenge returns the smallest one).
    const first = Number(solveChallenge(wrong.salt, wrong.difficulty));
    if (first > 0) {
      expectError(
        await plane.call('POST', '/api/v1/register', {
          body: { challenge_id: wrong.challenge_id, nonce: String(first - 1), name: 'e' },
        }),
        400,
        'POW_INVALID',
      );
      // A failed attempt does not burn the challenge.
      expect(
        (
          await plane.call('POST', '/api/v1/register', {
            body: { challenge_id: wrong.challenge_id, nonce: String(first), name: 'e' },
          })
        ).status,
      ).toBe(201);
    }
  });

  it('lets exactly one of many concurrent registrations spend a challenge', async () => {
    const c = await challenge();
    const nonce = solveChallenge(c.salt, c.difficulty);
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        plane.call('POST', '/api/v1/register', { body: { challenge_id: c.challenge_id, nonce, name: `r${i}` } }),
      ),
    );
    expect(results.filter((r) => r.status === 201)).toHaveLength(1);
    expect(results.filter((r) => r.status === 409 && r.body.error.code === 'CHALLENGE_ALREADY_USED')).toHaveLength(9);
  });

  it('registers wallets once, normalized, and refuses bad addresses', async () => {
    const address = '0x52908400098527886e0f7030069857d2e4169ee7';
    const { agentId } = await plane.register('wallet-owner', { chain: 'evm', address });
    const me = await plane.deps.pool.query('SELECT address, verified_at FROM wallets WHERE agent_id = $1', [agentId]);
    expect(me.rows[0]).toEqual({ address: '0x52908400098527886E0F7030069857D2E4169EE7', verified_at: null });

    const c = await challenge();
    const nonce = solveChallenge(c.salt, c.difficulty);
    expectError(
      await plane.call('POST', '/api/v1/register', {
        body: { challenge_id: c.challenge_id, nonce, name: 'squatter', wallet: { chain: 'evm', address } },
      }),
      409,
      'WALLET_ALREADY_REGISTERED',
    );
    // The failed registration gave its challenge back (same transaction).
    expect(
      (await plane.call('POST', '/api/v1/register', { body: { challenge_id: c.challenge_id, nonce, name: 'ok' } }))
        .status,
    ).toBe(201);

    const c2 = await challenge();
    expectError(
      await plane.call('POST', '/api/v1/register', {
        body: {
          challenge_id: c2.challenge_id,
          nonce: solveChallenge(c2.salt, c2.difficulty),
          name: 'x',
          wallet: { chain: 'solana', address: '0xnot-solana' },
        },
      }),
      400,
      'WALLET_ADDRESS_INVALID',
    );
  });
});
