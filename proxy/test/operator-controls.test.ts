import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimAgent, type OperatorClient, signUpOperator } from '../../control-plane/test/operator-support.js';
import type { ProxyServer } from '../src/app.js';
import {
  eventually,
  expectApiError,
  gatewayCall,
  startSeller,
  startTestStack,
  type TestSeller,
  type TestStack,
} from './stack.js';

/**
 * §3.7 end to end: an operator, signed in through a proxy (which passes /api/v1 to the control plane), pauses an
 * agent or a listing or revokes a key; both proxies enforce it within the propagation bound (CROCHET_CONFIG_POLL_MS
 * is 200 ms in the test stack, notices usually arrive sooner), and resuming lets calls through again.
 */
let stack: TestStack;
let proxies: ProxyServer[];
let seller: TestSeller;
let operator: OperatorClient;
let buyer: { apiKey: string; agentId: string };
let sellerAgent: { apiKey: string; agentId: string };
let listingId: string;

const PROPAGATION_MS = 2_000;

beforeAll(async () => {
  stack = await startTestStack({ proxies: 2 });
  proxies = stack.proxies.slice();
  seller = await startSeller();
  const base = proxies[0]!.url;
  operator = await signUpOperator(base);
  buyer = await stack.plane.register('buyer');
  sellerAgent = await stack.plane.register('seller');
  await claimAgent(base, operator, buyer.apiKey);
  await claimAgent(base, operator, sellerAgent.apiKey);
  listingId = (await stack.plane.createListing(sellerAgent.apiKey, { private_endpoint_url: `${seller.url}/echo` }))
    .listing.id;
  await eventually(() => onBoth((proxy) => expectOk(proxy, buyer.apiKey)));
});
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

const onBoth = async (check: (proxy: ProxyServer) => Promise<void>) => {
  for (const proxy of proxies) await check(proxy);
};
const expectOk = async (proxy: ProxyServer, apiKey: string) => {
  const res = await gatewayCall(proxy, listingId, apiKey);
  expect(res.status, res.text).toBe(200);
};
const expectRefused = (status: number, code: string, apiKey = buyer.apiKey) =>
  eventually(
    () =>
      onBoth(async (proxy) => {
        expectApiError(await gatewayCall(proxy, listingId, apiKey), status, code);
      }),
    PROPAGATION_MS,
  );
const expectServed = (apiKey = buyer.apiKey) =>
  eventually(() => onBoth((proxy) => expectOk(proxy, apiKey)), PROPAGATION_MS);

describe('operator controls on every proxy', () => {
  it('pauses an agent: both proxies answer 403 AGENT_PAUSED; resuming serves it again', async () => {
    const paused = await operator.call('POST', `/api/v1/operator/agents/${buyer.agentId}/pause`);
    expect(paused.status, paused.text).toBe(200);
    const forwarded = seller.requests.length;
    await expectRefused(403, 'AGENT_PAUSED');
    // Other agents are not affected.
    await onBoth((proxy) => expectOk(proxy, sellerAgent.apiKey));
    const resumed = await operator.call('POST', `/api/v1/operator/agents/${buyer.agentId}/resume`);
    expect(resumed.status, resumed.text).toBe(200);
    await expectServed();
    expect(seller.requests.length).toBeGreaterThan(forwarded);
  });

  it('pauses a listing: both proxies answer 409 LISTING_PAUSED; resuming serves it again', async () => {
    const paused = await operator.call('POST', `/api/v1/operator/listings/${listingId}/pause`);
    expect(paused.status, paused.text).toBe(200);
    await expectRefused(409, 'LISTING_PAUSED');
    const resumed = await operator.call('POST', `/api/v1/operator/listings/${listingId}/resume`);
    expect(resumed.status, resumed.text).toBe(200);
    await expectServed();
  });

  it('revokes a key: both proxies answer 401 API_KEY_REVOKED, and the agent’s other key still works', async () => {
    const second = await stack.plane.call('POST', '/api/v1/keys', { key: buyer.apiKey, body: { name: 'spare' } });
    const spareKey: string = second.body.data.api_key;
    await expectServed(spareKey);
    const me = await stack.plane.call('GET', '/api/v1/me', { key: buyer.apiKey });
    const keyId: string = me.body.data.current_key_id;
    const revoked = await operator.call('POST', `/api/v1/operator/agents/${buyer.agentId}/keys/${keyId}/revoke`);
    expect(revoked.status, revoked.text).toBe(200);
    expect(revoked.body.data.status).toBe('revoked');
    await expectRefused(401, 'API_KEY_REVOKED');
    await onBoth((proxy) => expectOk(proxy, spareKey));
  });
});
