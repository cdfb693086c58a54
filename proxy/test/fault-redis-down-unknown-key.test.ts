import { generateApiKey } from '@crochet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisProcess, startRedisProcess } from '../../control-plane/test/fault-services.js';
import { expectApiError, gatewayCall, startSeller, startTestStack, type TestSeller, type TestStack } from './stack.js';

/**
 * A key the proxy has not seen yet is looked up in Redis; with Redis down the answer is 503 STATE_UNAVAILABLE (our
 * store is out; the key may well exist), never 401 — while keys the proxy knows keep working.
 */

let redisServer: RedisProcess;
let stack: TestStack;
let seller: TestSeller;
let listing: string;
let known: string;

beforeAll(async () => {
  redisServer = await startRedisProcess();
  stack = await startTestStack({ services: { redisUrl: redisServer.url } });
  seller = await startSeller();
  const sellerKey = (await stack.plane.register('seller')).apiKey;
  known = (await stack.plane.register('buyer')).apiKey;
  listing = (await stack.plane.createListing(sellerKey, { private_endpoint_url: seller.url })).listing.id;
  expect((await gatewayCall(stack.proxies[0]!, listing, known)).status).toBe(200);
}, 60_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
  await redisServer?.stop();
});

describe('with Redis down', () => {
  it('an unknown key is 503 (Redis cannot say), a known one is served', async () => {
    await redisServer.kill();
    const unknown = await gatewayCall(stack.proxies[0]!, listing, generateApiKey());
    expectApiError(unknown, 503, 'STATE_UNAVAILABLE');
    expect(Number(unknown.headers['retry-after'])).toBeGreaterThan(0);
    expect((await gatewayCall(stack.proxies[0]!, listing, known)).status).toBe(200);
    await redisServer.start();
  });
});
