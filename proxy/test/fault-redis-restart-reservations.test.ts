import { createFundedWallet, type FundedWallet, transferUsdcWithMemo } from '@crochet/dev-chains';
import { redisKeys, utcDay } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisProcess, startRedisProcess } from '../../control-plane/test/fault-services.js';
import { createPaidListing, type PaymentStack, paymentTx, startPaymentStack } from './payment-stack.js';
import { eventually, expectApiError, gatewayCall, type RawResponse, rawRequest, startSeller } from './stack.js';

/**
 * Spend reservations when Redis is killed and restarted empty: the spend counters come back from PostgreSQL (a call
 * refunded after its seller failed excepted), the reservations of open payment requests do not. What was chosen: a
 * lost reservation may let a payment be refused (and its transfer refunded), never let an agent be charged past its
 * cap — admission checks the restored spend against the cap whatever was reserved.
 */

const PRICE = 10_000n;
const CAP = PRICE * 3n;

let redisServer: RedisProcess;
let stack: PaymentStack;
let seller: Awaited<ReturnType<typeof startSeller>>;
let ok: string;
let failing: string;
let buyer: { apiKey: string; agentId: string };
let wallet: FundedWallet;
let redis: Redis;

const call = (proxy: number, listing: string, headers: Record<string, string> = {}) =>
  gatewayCall(stack.proxies[proxy]!, listing, buyer.apiKey, { headers, body: { q: 1 } });
const keys = () => redisKeys(stack.plane.config.redisPrefix);
const spentToday = async () => BigInt((await redis.get(keys().spend(buyer.agentId, utcDay()))) ?? '0');
const pay = async (unpaid: RawResponse) => {
  expectApiError(unpaid, 402, 'PAYMENT_REQUIRED');
  const id = unpaid.json.payment.payment_request_id as string;
  const signature = await transferUsdcWithMemo(stack.solana, wallet.signer, stack.solanaPayTo, PRICE, id);
  return paymentTx(stack.solana.caip2, signature);
};

beforeAll(async () => {
  redisServer = await startRedisProcess();
  stack = await startPaymentStack({ proxies: 2, services: { redisUrl: redisServer.url } });
  seller = await startSeller((req, res) => {
    res.writeHead(req.url?.startsWith('/fail') ? 502 : 200, { 'content-type': 'application/json' });
    res.end('{}');
  });
  const sellerKey = (await stack.plane.register('seller')).apiKey;
  buyer = await stack.plane.register('buyer');
  ok = await createPaidListing(stack, sellerKey, `${seller.url}/paid`, '0.01');
  failing = await createPaidListing(stack, sellerKey, `${seller.url}/fail`, '0.01');
  wallet = await createFundedWallet(stack.solana, { sol: 1, usdcAtomic: 10_000_000n });
  redis = new Redis(redisServer.url);
  await stack.plane.deps.pool.query('UPDATE agents SET daily_spend_cap_atomic = $2 WHERE id = $1', [
    buyer.agentId,
    CAP.toString(),
  ]);
  await stack.plane.deps.publisher.changed({ agentId: buyer.agentId });
  await eventually(() => {
    for (const p of stack.proxies) expect(p.store.agent(buyer.agentId)?.daily_spend_cap_atomic).toBe(CAP.toString());
  });
}, 120_000);
afterAll(async () => {
  redis?.disconnect();
  await seller?.close();
  await stack?.stop();
  await redisServer?.stop();
});

describe('spend reservations across a Redis restarted empty', () => {
  it('restores the spend without refunded calls; a payment whose reservation was lost may be refused, none passes the cap', async () => {
    expect((await call(0, ok, await pay(await call(0, ok)))).status).toBe(200);
    const refunded = await call(1, failing, await pay(await call(1, failing)));
    expect(refunded.status).toBeGreaterThanOrEqual(500);
    await eventually(async () => expect(await spentToday()).toBe(PRICE));
    // Two requests reserved: the cap is full.
    const before = [await call(0, ok), await call(1, ok)];
    expectApiError(await call(0, ok), 402, 'SPEND_CAP_EXCEEDED');
    await stack.plane.eventsConsumer.drain();

    const old = stack.proxies[0]!.state.current;
    await redisServer.kill();
    await redisServer.start();
    await eventually(async () => {
      for (const p of stack.proxies) {
        const ready = await rawRequest(p.url, '/readyz', { method: 'GET' });
        expect(ready.status, ready.text).toBe(200);
        expect(ready.json.data.redis_epoch).not.toBe(old);
      }
    }, 20_000);
    redis.disconnect();
    redis = new Redis(redisServer.url);

    // The refunded call does not count again; the two reservations are gone, so two more requests are issued.
    expect(await spentToday()).toBe(PRICE);
    const after = [await call(0, ok), await call(1, ok)];
    for (const unpaid of after) expectApiError(unpaid, 402, 'PAYMENT_REQUIRED');
    expectApiError(await call(1, ok), 402, 'SPEND_CAP_EXCEEDED');

    // All four are paid: the room of the two reservations now live goes to the first two payments presented (the
    // older ones, whose own reservations were lost, take any of their listing's), and the last two find none left
    // and are refunded. Never past the cap.
    const answers = [];
    for (const unpaid of [...before, ...after]) answers.push(await call(1, ok, await pay(unpaid)));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 402, 402]);
    for (const refused of answers.slice(2)) {
      expectApiError(refused, 402, 'SPEND_CAP_EXCEEDED');
      expect(refused.json.error.refund_gateway_request_id).toBeDefined();
    }
    expect(await spentToday()).toBe(CAP);
  }, 120_000);
});
