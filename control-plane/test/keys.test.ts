import { generateApiKey } from '@crochet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';

let plane: TestPlane;
beforeAll(async () => {
  plane = await startTestControlPlane({ CROCHET_MAX_ACTIVE_KEYS: '3' });
});
afterAll(() => plane.stop());

describe('API keys', () => {
  it('creates keys shown once, revokes them at once, and keeps the last one', async () => {
    const { apiKey } = await plane.register('keys');
    const created = await plane.call('POST', '/api/v1/keys', { key: apiKey, body: { name: 'ci' } });
    expect(created.status).toBe(201);
    const second = created.body.data.api_key;
    expect(second).toMatch(/^am_k_/);
    expect(created.body.data.key.name).toBe('ci');
    const list = await plane.call('GET', '/api/v1/keys', { key: second });
    expect(list.body.data).toHaveLength(2);
    expect(JSON.stringify(list.body)).not.toContain(second);

    const revoked = await plane.call('DELETE', `/api/v1/keys/${created.body.data.key.id}`, { key: apiKey });
    expect(revoked.status).toBe(200);
    expect(revoked.body.data.revoked_at).toBeTruthy();
    const denied = await plane.call('GET', '/api/v1/me', { key: second });
    expect(denied.status).toBe(401);
    expect(denied.body.error.code).toBe('API_KEY_REVOKED');

    const me = await plane.call('GET', '/api/v1/me', { key: apiKey });
    const last = await plane.call('DELETE', `/api/v1/keys/${me.body.data.current_key_id}`, { key: apiKey });
    expect(last.status).toBe(409);
    expect(last.body.error.code).toBe('LAST_ACTIVE_KEY');
  });

  it('enforces the active key limit and hides other agents keys', async () => {
    const { apiKey } = await plane.register('many');
    const other = await plane.register('other');
    for (let i = 0; i < 2; i++) expect((await plane.call('POST', '/api/v1/keys', { key: apiKey })).status).toBe(201);
    const over = await plane.call('POST', '/api/v1/keys', { key: apiKey });
    expect(over.status).toBe(409);
    expect(over.body.error.code).toBe('KEY_LIMIT_REACHED');

    const theirs = await plane.call('GET', '/api/v1/me', { key: other.apiKey });
    const steal = await plane.call('DELETE', `/api/v1/keys/${theirs.body.data.current_key_id}`, { key: apiKey });
    expect(steal.status).toBe(404);
    expect(steal.body.error.code).toBe('KEY_NOT_FOUND');
  });

  it('tells missing, malformed and unknown keys apart', async () => {
    const missing = await plane.call('GET', '/api/v1/me');
    expect([missing.status, missing.body.error.code]).toEqual([401, 'AUTH_REQUIRED']);
    const malformed = await plane.call('GET', '/api/v1/me', { key: 'am_k_short' });
    expect([malformed.status, malformed.body.error.code]).toEqual([401, 'API_KEY_MALFORMED']);
    const typo = generateApiKey();
    const flipped = typo.slice(0, 10) + (typo[10] === 'a' ? 'b' : 'a') + typo.slice(11);
    const bad = await plane.call('GET', '/api/v1/me', { key: flipped });
    expect([bad.status, bad.body.error.code]).toEqual([401, 'API_KEY_MALFORMED']);
    const unknown = await plane.call('GET', '/api/v1/me', { key: generateApiKey() });
    expect([unknown.status, unknown.body.error.code]).toEqual([401, 'API_KEY_INVALID']);
    const basic = await plane.call('GET', '/api/v1/me', { headers: { authorization: 'Basic Zm9vOmJhcg==' } });
    expect([basic.status, basic.body.error.code]).toEqual([401, 'AUTH_REQUIRED']);
  });
});
