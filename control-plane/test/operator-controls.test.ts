import { hashApiKey, redisKeys } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, TEST_REDIS_URL, type TestPlane } from './helpers.js';
import { claimAgent, type OperatorClient, signUpOperator } from './operator-support.js';

/**
 * §3.7 controls: spend cap, pause/resume of an agent or a listing, key revocation. Each changes PostgreSQL and is
 * published to the proxies' config in Redis (read back here as a proxy reads it); anything not the operator's is 404.
 */
let plane: TestPlane;
let redis: Redis;
let operator: OperatorClient;
let other: OperatorClient;
let agent: { apiKey: string; agentId: string };
let foreign: { apiKey: string; agentId: string };
let listingId: string;
let foreignListingId: string;

beforeAll(async () => {
  plane = await startTestControlPlane();
  redis = new Redis(TEST_REDIS_URL);
  operator = await signUpOperator(plane.url);
  other = await signUpOperator(plane.url);
  agent = await plane.register('controlled');
  foreign = await plane.register('foreign');
  await claimAgent(plane.url, operator, agent.apiKey);
  await claimAgent(plane.url, other, foreign.apiKey);
  listingId = (await plane.createListing(agent.apiKey)).listing.id;
  foreignListingId = (await plane.createListing(foreign.apiKey)).listing.id;
});
afterAll(async () => {
  redis?.disconnect();
  await plane?.stop();
});

const keys = () => redisKeys(plane.config.redisPrefix);
const published = async (hash: string, field: string) => JSON.parse((await redis.hget(hash, field)) ?? 'null');
const agentEntry = () => published(keys().configAgents, agent.agentId);
const version = async () => Number(await redis.get(keys().configVersion));

describe('operator controls', () => {
  it('sets, changes and removes a daily spend cap, published in the agent’s config entry', async () => {
    expect((await agentEntry()).daily_spend_cap_atomic).toBeNull();
    const before = await version();
    const set = await operator.call('PUT', `/api/v1/operator/agents/${agent.agentId}/spend-cap`, {
      body: { daily_spend_cap: '2.00' },
    });
    expect(set.status, set.text).toBe(200);
    expect(set.body.data).toMatchObject({ id: agent.agentId, daily_spend_cap: '2', status: 'active' });
    expect(set.body.data.keys).toHaveLength(1);
    expect(await agentEntry()).toMatchObject({
      id: agent.agentId,
      status: 'active',
      daily_spend_cap_atomic: '2000000',
    });
    expect(await version()).toBeGreaterThan(before);
    const { rows } = await plane.deps.pool.query('SELECT daily_spend_cap_atomic::text FROM agents WHERE id = $1', [
      agent.agentId,
    ]);
    expect(rows[0].daily_spend_cap_atomic).toBe('2000000');

    for (const [text, atomic] of [
      ['0.000001', '1'],
      ['1000000', '1000000000000'],
      ['0', '0'],
    ] as const) {
      const res = await operator.call('PUT', `/api/v1/operator/agents/${agent.agentId}/spend-cap`, {
        body: { daily_spend_cap: text },
      });
      expect(res.status, res.text).toBe(200);
      expect((await agentEntry()).daily_spend_cap_atomic).toBe(atomic);
    }
    const removed = await operator.call('PUT', `/api/v1/operator/agents/${agent.agentId}/spend-cap`, {
      body: { daily_spend_cap: null },
    });
    expect(removed.body.data.daily_spend_cap).toBeNull();
    expect((await agentEntry()).daily_spend_cap_atomic).toBeNull();
  });

  it('refuses caps that are not decimal USDC amounts up to 1,000,000', async () => {
    for (const value of ['-1', '1e3', '0.0000001', '1000000.000001', '99999999', 'two', '', ' ', 2, true]) {
      const res = await operator.call('PUT', `/api/v1/operator/agents/${agent.agentId}/spend-cap`, {
        body: { daily_spend_cap: value },
      });
      expect([res.status, res.body.error.code, res.body.error.field], String(value)).toEqual([
        400,
        'VALIDATION_FAILED',
        'body.daily_spend_cap',
      ]);
    }
    const missing = await operator.call('PUT', `/api/v1/operator/agents/${agent.agentId}/spend-cap`, { body: {} });
    expect(missing.status).toBe(400);
    expect((await agentEntry()).daily_spend_cap_atomic).toBeNull();
  });

  it('pauses and resumes an agent', async () => {
    const paused = await operator.call('POST', `/api/v1/operator/agents/${agent.agentId}/pause`);
    expect(paused.status, paused.text).toBe(200);
    expect(paused.body.data.status).toBe('paused');
    expect((await agentEntry()).status).toBe('paused');
    // Pausing twice is harmless.
    expect((await operator.call('POST', `/api/v1/operator/agents/${agent.agentId}/pause`)).status).toBe(200);
    const resumed = await operator.call('POST', `/api/v1/operator/agents/${agent.agentId}/resume`);
    expect(resumed.body.data.status).toBe('active');
    expect((await agentEntry()).status).toBe('active');
  });

  it('pauses and resumes a listing, and leaves an archived one archived', async () => {
    const paused = await operator.call('POST', `/api/v1/operator/listings/${listingId}/pause`);
    expect(paused.status, paused.text).toBe(200);
    expect(paused.body.data).toEqual({
      id: listingId,
      name: 'Echo',
      status: 'paused',
      pricing_model: 'free',
      price: '0',
      currency: 'USDC',
      crochet_score: null,
      verified: false,
      review_count: 0,
      paused_by: 'operator',
    });
    expect((await published(keys().configListings, listingId)).status).toBe('paused');
    const resumed = await operator.call('POST', `/api/v1/operator/listings/${listingId}/resume`);
    expect(resumed.body.data).toMatchObject({ status: 'active', paused_by: null });
    expect((await published(keys().configListings, listingId)).status).toBe('active');

    const archived = (await plane.createListing(agent.apiKey, { name: 'Old' })).listing.id;
    expect((await plane.call('DELETE', `/api/v1/listings/${archived}`, { key: agent.apiKey })).status).toBe(200);
    const refused = await operator.call('POST', `/api/v1/operator/listings/${archived}/resume`);
    expect([refused.status, refused.body.error.code]).toEqual([409, 'LISTING_ARCHIVED']);
    expect((await published(keys().configListings, archived)).status).toBe('archived');
  });

  it('revokes a key, even the last one: the agent is locked out and the proxies are told', async () => {
    const second = await plane.call('POST', '/api/v1/keys', { key: agent.apiKey, body: { name: 'second' } });
    const secondKey = second.body.data.api_key as string;
    const secondId = second.body.data.key.id as string;
    const revoked = await operator.call('POST', `/api/v1/operator/agents/${agent.agentId}/keys/${secondId}/revoke`);
    expect(revoked.status, revoked.text).toBe(200);
    expect(revoked.body.data).toEqual({
      id: secondId,
      prefix: secondKey.slice(0, 13),
      name: 'second',
      status: 'revoked',
      created_at: expect.any(String),
      last_used_at: null,
    });
    expect(await published(keys().configKeys, hashApiKey(secondKey))).toMatchObject({
      key_id: secondId,
      status: 'revoked',
    });
    expect((await plane.call('GET', '/api/v1/me', { key: secondKey })).body.error.code).toBe('API_KEY_REVOKED');
    // Again: the same answer, nothing changes.
    const again = await operator.call('POST', `/api/v1/operator/agents/${agent.agentId}/keys/${secondId}/revoke`);
    expect(again.body.data).toEqual(revoked.body.data);

    const firstId = (await plane.call('GET', '/api/v1/me', { key: agent.apiKey })).body.data.current_key_id;
    const last = await operator.call('POST', `/api/v1/operator/agents/${agent.agentId}/keys/${firstId}/revoke`);
    expect(last.status).toBe(200);
    expect((await published(keys().configKeys, hashApiKey(agent.apiKey))).status).toBe('revoked');
    expect((await plane.call('GET', '/api/v1/me', { key: agent.apiKey })).status).toBe(401);
  });

  it('answers 404 for agents, listings and keys that are not the operator’s, and changes nothing', async () => {
    const foreignKeyId = (await plane.call('GET', '/api/v1/me', { key: foreign.apiKey })).body.data.current_key_id;
    const before = await version();
    const cases: [string, string, unknown, string][] = [
      ['PUT', `/api/v1/operator/agents/${foreign.agentId}/spend-cap`, { daily_spend_cap: '1' }, 'AGENT_NOT_FOUND'],
      ['PUT', '/api/v1/operator/agents/agt_nope/spend-cap', { daily_spend_cap: '1' }, 'AGENT_NOT_FOUND'],
      ['POST', `/api/v1/operator/agents/${foreign.agentId}/pause`, undefined, 'AGENT_NOT_FOUND'],
      ['POST', `/api/v1/operator/agents/${foreign.agentId}/resume`, undefined, 'AGENT_NOT_FOUND'],
      ['POST', '/api/v1/operator/agents/agt_01M8HE1JBTSW1FVMX6ZY8MZBMQ/pause', undefined, 'AGENT_NOT_FOUND'],
      ['POST', `/api/v1/operator/listings/${foreignListingId}/pause`, undefined, 'LISTING_NOT_FOUND'],
      ['POST', `/api/v1/operator/listings/${foreignListingId}/resume`, undefined, 'LISTING_NOT_FOUND'],
      ['POST', '/api/v1/operator/listings/lst_nope/pause', undefined, 'LISTING_NOT_FOUND'],
      ['POST', `/api/v1/operator/agents/${foreign.agentId}/keys/${foreignKeyId}/revoke`, undefined, 'AGENT_NOT_FOUND'],
      // Someone else's key under one's own agent.
      ['POST', `/api/v1/operator/agents/${agent.agentId}/keys/${foreignKeyId}/revoke`, undefined, 'KEY_NOT_FOUND'],
      ['POST', `/api/v1/operator/agents/${agent.agentId}/keys/key_nope/revoke`, undefined, 'KEY_NOT_FOUND'],
    ];
    for (const [method, path, body, code] of cases) {
      const res = await operator.call(method, path, body === undefined ? {} : { body });
      expect([res.status, res.body.error.code], `${method} ${path}`).toEqual([404, code]);
    }
    expect(await version()).toBe(before);
    expect(await published(keys().configAgents, foreign.agentId)).toMatchObject({
      status: 'active',
      daily_spend_cap_atomic: null,
    });
    expect((await published(keys().configListings, foreignListingId)).status).toBe('active');
    expect((await plane.call('GET', '/api/v1/me', { key: foreign.apiKey })).status).toBe(200);
  });
});
