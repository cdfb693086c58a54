import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisProcess, startRedisProcess } from '../../control-plane/test/fault-services.js';
import { createPaidListing, type PaymentStack, paySolana, startPaymentStack } from './payment-stack.js';
import { eventually, expectApiError, gatewayCall, rawRequest, startSeller, type TestSeller } from './stack.js';

/**
 * A Redis that restarts from its append-only file keeps its keys — and its epoch key — but may have lost its last
 * writes (appendfsync everysec). The epoch is bound to the server's run id, so a restart is a new epoch all the same:
 * the proxies put back what they had written, the control plane restores consumed proofs, and paid calls wait until
 * then.
 */

let redisServer: RedisProcess;
let stack: PaymentStack;
let seller: TestSeller;
let listing: string;
let buyer: { apiKey: string; agentId: string };

beforeAll(async () => {
  redisServer = await startRedisProcess({ appendonly: true });
  stack = await startPaymentStack({ proxies: 2, services: { redisUrl: redisServer.url } });
  seller = await startSeller();
  const sellerKey = (await stack.plane.register('seller')).apiKey;
  buyer = await stack.plane.register('buyer');
  listing = await createPaidListing(stack, sellerKey, seller.url, '0.01');
}, 90_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
  await redisServer?.stop();
});

describe('Redis restarted from its append-only file', () => {
  it('is a new epoch: restored before paid calls go on, and a proof still pays once', async () => {
    const proof = await paySolana(stack, listing, buyer.apiKey, 10_000n);
    const paid = await gatewayCall(stack.proxies[0]!, listing, buyer.apiKey, { headers: proof });
    expect(paid.status, paid.text).toBe(200);
    const before = stack.proxies.map((p) => p.state.current);
    const restores = stack.plane.epoch.stats.restores;

    await redisServer.kill();
    await redisServer.start();
    await eventually(async () => {
      for (const [i, p] of stack.proxies.entries()) {
        const ready = await rawRequest(p.url, '/readyz', { method: 'GET' });
        expect(ready.status, ready.text).toBe(200);
        expect(ready.json.data.redis_epoch).not.toBe(before[i]);
      }
    }, 20_000);
    expect(stack.plane.epoch.stats.restores).toBe(restores + 1);
    for (const p of stack.proxies) {
      const replay = await gatewayCall(p, listing, buyer.apiKey, { headers: proof });
      expectApiError(replay, 409, 'PAYMENT_ALREADY_USED');
      expect(replay.json.error.gateway_request_id).toBe(paid.headers['x-crochet-request-id']);
    }
  });
});
