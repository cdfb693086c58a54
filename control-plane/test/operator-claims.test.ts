import { createHash, createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimCodeKey } from '../src/operators/claims.js';
import { startTestControlPlane, type TestPlane } from './helpers.js';
import { type OperatorClient, signUpOperator } from './operator-support.js';

/** §3.7 claims: an agent's one-time code, redeemed by an operator, links the agent to that operator for good. */
let plane: TestPlane;
let alice: OperatorClient;
let bob: OperatorClient;
beforeAll(async () => {
  plane = await startTestControlPlane();
  alice = await signUpOperator(plane.url);
  bob = await signUpOperator(plane.url);
});
afterAll(() => plane?.stop());

const CODE = /^CLM-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$/;

const newCode = async (apiKey: string): Promise<string> => {
  const res = await plane.call('POST', '/api/v1/me/claim', { key: apiKey });
  expect(res.status, res.text).toBe(201);
  return res.body.data.claim_code;
};
const redeem = (operator: OperatorClient, code: string) =>
  operator.call('POST', '/api/v1/operator/claims', { body: { claim_code: code } });

describe('claims', () => {
  it('gives the agent a 10-minute code kept only as a hash; the operator redeems it and /me shows the claim', async () => {
    const agent = await plane.register('claimed');
    expect((await plane.call('GET', '/api/v1/me', { key: agent.apiKey })).body.data.operator_claim).toBeNull();
    const res = await plane.call('POST', '/api/v1/me/claim', { key: agent.apiKey });
    expect(res.status).toBe(201);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const { claim_code: code, expires_at: expiresAt } = res.body.data;
    expect(code).toMatch(CODE);
    const ttl = new Date(expiresAt).getTime() - Date.now();
    expect(ttl).toBeGreaterThan(9 * 60_000);
    expect(ttl).toBeLessThanOrEqual(10 * 60_000 + 1000);
    const stored = await plane.deps.pool.query('SELECT * FROM agent_claim_codes WHERE agent_id = $1', [agent.agentId]);
    expect(JSON.stringify(stored.rows)).not.toContain(code.slice(4, 8));
    // An HMAC under a key derived from the encryption key: the bare SHA-256 of the code (what an offline search of
    // the 2^40 codes would try) is not what is stored.
    const chars = code.replaceAll('-', '').slice(3);
    expect(stored.rows[0].code_hash).toBe(
      createHmac('sha256', claimCodeKey(plane.config.encryptionKey)).update(chars).digest('hex'),
    );
    expect(stored.rows[0].code_hash).not.toBe(createHash('sha256').update(chars).digest('hex'));

    // Typed by a human: lower case, spaces instead of dashes.
    const claimed = await redeem(alice, code.toLowerCase().replaceAll('-', ' '));
    expect(claimed.status, claimed.text).toBe(200);
    expect(claimed.body.data.agent).toEqual({ id: agent.agentId, name: 'claimed', claimed_at: expect.any(String) });
    const me = (await plane.call('GET', '/api/v1/me', { key: agent.apiKey })).body.data;
    expect(me.operator_claim).toEqual({ operator_id: alice.id, claimed_at: claimed.body.data.agent.claimed_at });
    const overview = await alice.call('GET', '/api/v1/operator/overview');
    expect(overview.body.data.agents.map((a: { id: string }) => a.id)).toEqual([agent.agentId]);
  });

  it('uses a code once', async () => {
    const agent = await plane.register('once');
    const code = await newCode(agent.apiKey);
    expect((await redeem(alice, code)).status).toBe(200);
    for (const operator of [alice, bob]) {
      const again = await redeem(operator, code);
      expect([again.status, again.body.error.code]).toEqual([409, 'CLAIM_CODE_USED']);
    }
  });

  it('lets exactly one of two concurrent redemptions win', async () => {
    const agent = await plane.register('raced');
    const code = await newCode(agent.apiKey);
    const results = await Promise.all([redeem(alice, code), redeem(bob, code), redeem(alice, code)]);
    expect(results.map((r) => r.status).sort()).toEqual([200, 409, 409]);
    const { rows } = await plane.deps.pool.query('SELECT operator_id FROM operator_agents WHERE agent_id = $1', [
      agent.agentId,
    ]);
    expect(rows).toHaveLength(1);
  });

  it('refuses an expired code with 410, and an older code once a newer one is issued', async () => {
    const agent = await plane.register('late');
    const code = await newCode(agent.apiKey);
    await plane.deps.pool.query(
      "UPDATE agent_claim_codes SET expires_at = now() - interval '1 second' WHERE agent_id = $1",
      [agent.agentId],
    );
    const expired = await redeem(alice, code);
    expect([expired.status, expired.body.error.code]).toEqual([410, 'CLAIM_CODE_EXPIRED']);

    const first = await newCode(agent.apiKey);
    const second = await newCode(agent.apiKey);
    expect((await redeem(alice, first)).body.error.code).toBe('CLAIM_CODE_EXPIRED');
    expect((await redeem(alice, second)).status).toBe(200);
  });

  it('refuses unknown and malformed codes with 404', async () => {
    for (const code of ['CLM-0000-0000', 'CLM-ZZZZ-ZZZZ', 'garbage', 'CLM-UUUU-UUUU', '12345678']) {
      const res = await redeem(alice, code);
      expect([res.status, res.body.error.code], code).toEqual([404, 'CLAIM_CODE_INVALID']);
    }
    const empty = await redeem(alice, '');
    expect(empty.status).toBe(400);
  });

  it('keeps an agent with its operator: another operator gets AGENT_ALREADY_CLAIMED and the code stays unused', async () => {
    const agent = await plane.register('loyal');
    expect((await redeem(alice, await newCode(agent.apiKey))).status).toBe(200);
    const code = await newCode(agent.apiKey);
    const stolen = await redeem(bob, code);
    expect([stolen.status, stolen.body.error.code]).toEqual([409, 'AGENT_ALREADY_CLAIMED']);
    const bobs = (await bob.call('GET', '/api/v1/operator/overview')).body.data.agents;
    expect(bobs.map((a: { id: string }) => a.id)).not.toContain(agent.agentId);
    // Redeeming again by the operator who has it is harmless.
    const same = await redeem(alice, code);
    expect(same.status).toBe(200);
    const me = (await plane.call('GET', '/api/v1/me', { key: agent.apiKey })).body.data;
    expect(me.operator_claim.operator_id).toBe(alice.id);
  });

  it('needs an API key to make a code and a session to redeem one', async () => {
    const none = await plane.call('POST', '/api/v1/me/claim');
    expect([none.status, none.body.error.code]).toEqual([401, 'AUTH_REQUIRED']);
    const agent = await plane.register('anon');
    const res = await alice.call('POST', '/api/v1/operator/claims', {
      cookie: false,
      body: { claim_code: await newCode(agent.apiKey) },
    });
    expect([res.status, res.body.error.code]).toEqual([401, 'OPERATOR_SESSION_REQUIRED']);
  });

  it('limits codes that match nothing per operator, not valid ones', async () => {
    const guesser = await signUpOperator(plane.url);
    for (let i = 0; i < 10; i++) expect((await redeem(guesser, `CLM-0000-00${i}0`)).status).toBe(404);
    const limited = await redeem(guesser, 'CLM-0000-0000');
    expect([limited.status, limited.body.error.code]).toEqual([429, 'RATE_LIMITED']);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    // Others are not affected.
    const agent = await plane.register('unaffected');
    expect((await redeem(bob, await newCode(agent.apiKey))).status).toBe(200);
  });
});
