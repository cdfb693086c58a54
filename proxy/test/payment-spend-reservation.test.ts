import { createFundedWallet, type FundedWallet, transferUsdcWithMemo } from '@crochet/dev-chains';
import { redisKeys, utcDay } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_REDIS_URL } from '../../control-plane/test/helpers.js';
import { createPaidListing, type PaymentStack, paymentTx, startPaymentStack } from './payment-stack.js';
import { eventually, expectApiError, gatewayCall, type RawResponse, startSeller, type TestSeller } from './stack.js';

/**
 * A daily spend cap is reserved when payment requirements are issued: 20 buyers' requests at once, on two proxies,
 * against a cap that allows 3 calls get exactly 3 sets of requirements; the rest are refused before anything is paid.
 * A reservation lasts as long as its payment request (5 s here, plus as long again to present a last-moment payment);
 * paying one turns it into spend, counted once; a call refunded after its seller failed gives its spend back.
 */

const PRICE = 10_000n; // 0.01 USDC
const TTL_SECONDS = 5;

let stack: PaymentStack;
let seller: TestSeller;
let listingId: string;
let failingListingId: string;
let buyer: { apiKey: string; agentId: string };
let wallet: FundedWallet;
let redis: Redis;
let keys: ReturnType<typeof redisKeys>;

const setCap = async (capAtomic: bigint) => {
  await stack.plane.deps.pool.query('UPDATE agents SET daily_spend_cap_atomic = $2 WHERE id = $1', [
    buyer.agentId,
    capAtomic.toString(),
  ]);
  await stack.plane.deps.publisher.changed({ agentId: buyer.agentId });
  await eventually(() => {
    for (const proxy of stack.proxies) {
      expect(proxy.store.agent(buyer.agentId)?.daily_spend_cap_atomic).toBe(capAtomic.toString());
    }
  });
};

const call = (proxy: number, listing = listingId, headers: Record<string, string> = {}) =>
  gatewayCall(stack.proxies[proxy]!, listing, buyer.apiKey, { headers, body: { q: 1 } });

const spentToday = async () => BigInt((await redis.get(keys.spend(buyer.agentId, utcDay()))) ?? '0');
const reservedTotal = async () => BigInt((await redis.get(keys.reservationsTotal(buyer.agentId))) ?? '0');

/** Pays a 402's requirements on the Solana dev chain (memo: its payment request id) and returns the proof header. */
const pay = async (unpaid: RawResponse) => {
  const signature = await transferUsdcWithMemo(
    stack.solana,
    wallet.signer,
    stack.solanaPayTo,
    PRICE,
    unpaid.json.payment.payment_request_id,
  );
  return paymentTx(stack.solana.caip2, signature);
};

/** Twenty 402 requests at once, alternating between the two proxies. */
const twentyAtOnce = async () => {
  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => call(i % 2)));
  const issued = answers.filter((a) => a.json?.error?.code === 'PAYMENT_REQUIRED');
  const refused = answers.filter((a) => a.json?.error?.code === 'SPEND_CAP_EXCEEDED');
  expect(issued.length + refused.length).toBe(20);
  for (const a of issued) expect(a.headers['payment-required']).toBeDefined();
  for (const a of refused) {
    expectApiError(a, 402, 'SPEND_CAP_EXCEEDED');
    expect(a.headers['payment-required']).toBeUndefined();
    expect(a.json.payment).toBeUndefined();
  }
  return { issued, refused };
};

/** Waits until every reservation held now has expired by Redis's clock. */
const untilReservationsExpire = async () => {
  const last = await redis.zrange(keys.reservations(buyer.agentId), '-1', '-1', 'WITHSCORES');
  const until = Number(last[1] ?? 0);
  for (;;) {
    const [seconds, micros] = await redis.time();
    if (Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) > until) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
};

beforeAll(async () => {
  stack = await startPaymentStack({
    proxies: 2,
    proxyEnv: { CROCHET_PAYMENT_REQUEST_TTL_SECONDS: String(TTL_SECONDS) },
  });
  keys = redisKeys(stack.plane.config.redisPrefix);
  seller = await startSeller((req, res) => {
    res.writeHead(req.url?.startsWith('/fail') ? 500 : 200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  const sellerAgent = await stack.plane.register('seller');
  buyer = await stack.plane.register('buyer');
  listingId = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/paid`, '0.01');
  failingListingId = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/fail`, '0.01');
  wallet = await createFundedWallet(stack.solana, { sol: 1, usdcAtomic: 10_000_000n });
  redis = new Redis(TEST_REDIS_URL);
}, 60_000);
afterAll(async () => {
  redis?.disconnect();
  await seller?.close();
  await stack?.stop();
});

describe('a daily spend cap reserved when payment requirements are issued', () => {
  let issued: RawResponse[] = [];

  it('20 parallel 402s against a cap for 3 calls: exactly 3 requirements, 17 refusals with the cap code', async () => {
    await setCap(PRICE * 3n);
    const first = await twentyAtOnce();
    issued = first.issued;
    expect(first.issued).toHaveLength(3);
    expect(first.refused).toHaveLength(17);
    expect(first.refused[0]!.json.error.reserved).toBe('0.03');
    expect(first.refused[0]!.json.error.spent_today).toBe('0');
    expect(await reservedTotal()).toBe(PRICE * 3n);
    expect(await spentToday()).toBe(0n);
    expect(seller.requests).toHaveLength(0);
  });

  it('paying one of the reserved requirements admits the call and counts the spend once', async () => {
    const proof = await pay(issued[1]!);
    const paid = await call(0, listingId, proof);
    expect(paid.status, paid.text).toBe(200);
    expect(await spentToday()).toBe(PRICE);
    expect(await reservedTotal()).toBe(PRICE * 2n);
    // Spent 1 + reserved 2: the cap is still full.
    const refused = await call(1);
    expectApiError(refused, 402, 'SPEND_CAP_EXCEEDED');
    expect(refused.json.error.spent_today).toBe('0.01');
    expect(refused.json.error.reserved).toBe('0.02');
  });

  it('once the payment requests expire their reservations are released and new requirements are issued', async () => {
    await untilReservationsExpire();
    const again = await twentyAtOnce();
    expect(again.issued).toHaveLength(2);
    expect(again.refused).toHaveLength(18);
    expect(await reservedTotal()).toBe(PRICE * 2n);
    expect(await spentToday()).toBe(PRICE);
  }, 30_000);

  it('a call refunded after its seller failed gives its spend back', async () => {
    await setCap(PRICE * 4n);
    const unpaid = await call(0, failingListingId);
    expectApiError(unpaid, 402, 'PAYMENT_REQUIRED');
    const failed = await call(1, failingListingId, await pay(unpaid));
    expect(failed.status).toBeGreaterThanOrEqual(500);
    await stack.plane.eventsConsumer.drain();
    const history = await stack.plane.call(
      'GET',
      `/api/v1/gateway-requests/${failed.headers['x-crochet-request-id']}`,
      {
        key: buyer.apiKey,
      },
    );
    expect(history.body.data).toMatchObject({ refund: 'refund_due' });
    await eventually(async () => expect(await spentToday()).toBe(PRICE));
    expect(await reservedTotal()).toBe(PRICE * 2n);
  });
});
