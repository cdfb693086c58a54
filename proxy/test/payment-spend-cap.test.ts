import { createFundedWallet, type FundedWallet, transferUsdcWithMemo } from '@crochet/dev-chains';
import { redisKeys, utcDay } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_REDIS_URL } from '../../control-plane/test/helpers.js';
import { createPaidListing, type PaymentStack, paymentTx, startPaymentStack } from './payment-stack.js';
import { eventually, expectApiError, gatewayCall, startSeller, type TestSeller } from './stack.js';

/**
 * An operator's daily spend cap, enforced by every proxy from the pushed agent config: refused before the buyer
 * pays (no payment requirements past the cap), and atomically at admission (the spend counter is checked and
 * added to in the same script that consumes the proof), so concurrent paid calls on two proxies cannot overshoot.
 */

let stack: PaymentStack;
let seller: TestSeller;
let listingId: string;
let buyer: { apiKey: string; agentId: string };
let wallet: FundedWallet;
let redis: Redis;

const PRICE = 10_000n; // 0.01 USDC

const setCap = async (capAtomic: bigint | null) => {
  await stack.plane.deps.pool.query('UPDATE agents SET daily_spend_cap_atomic = $2 WHERE id = $1', [
    buyer.agentId,
    capAtomic === null ? null : capAtomic.toString(),
  ]);
  await stack.plane.deps.publisher.changed({ agentId: buyer.agentId });
  const expected = capAtomic === null ? null : capAtomic.toString();
  await eventually(() => {
    for (const proxy of stack.proxies) expect(proxy.store.agent(buyer.agentId)?.daily_spend_cap_atomic).toBe(expected);
  });
};

const call = (proxy: number, headers: Record<string, string> = {}) =>
  gatewayCall(stack.proxies[proxy]!, listingId, buyer.apiKey, { headers, body: { q: 1 } });

/** Asks for payment requirements, pays them on the Solana dev chain, and returns the proof header. */
const pay = async (proxy = 0) => {
  const unpaid = await call(proxy);
  expectApiError(unpaid, 402, 'PAYMENT_REQUIRED');
  const signature = await transferUsdcWithMemo(
    stack.solana,
    wallet.signer,
    stack.solanaPayTo,
    PRICE,
    unpaid.json.payment.payment_request_id,
  );
  return paymentTx(stack.solana.caip2, signature);
};

const spentToday = async () =>
  BigInt((await redis.get(redisKeys(stack.plane.config.redisPrefix).spend(buyer.agentId, utcDay()))) ?? '0');

beforeAll(async () => {
  stack = await startPaymentStack({ proxies: 2 });
  seller = await startSeller();
  const sellerAgent = await stack.plane.register('seller');
  buyer = await stack.plane.register('buyer');
  listingId = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/paid`, '0.01');
  wallet = await createFundedWallet(stack.solana, { sol: 1, usdcAtomic: 10_000_000n });
  redis = new Redis(TEST_REDIS_URL);
}, 60_000);
afterAll(async () => {
  redis?.disconnect();
  await seller?.close();
  await stack?.stop();
});

describe('a daily spend cap set by the operator', () => {
  it('counts the spend of paid calls with no cap set', async () => {
    const paid = await call(0, await pay());
    expect(paid.status, paid.text).toBe(200);
    expect(await spentToday()).toBe(PRICE);
  });

  it('refuses, on both proxies, to issue payment requirements once the next call would pass the cap', async () => {
    await setCap(PRICE * 2n);
    const second = await call(1, await pay(1));
    expect(second.status, second.text).toBe(200);
    expect(await spentToday()).toBe(PRICE * 2n);
    for (const proxy of [0, 1]) {
      const refused = await call(proxy);
      expectApiError(refused, 402, 'SPEND_CAP_EXCEEDED');
      expect(refused.json.error.daily_spend_cap).toBe('0.02');
      expect(refused.json.error.spent_today).toBe('0.02');
      expect(refused.headers['payment-required']).toBeUndefined();
    }
    expect(seller.requests).toHaveLength(2);
  });

  it('admits exactly as many concurrent paid calls across two proxies as the cap allows; a transfer past it is refunded', async () => {
    await setCap(null);
    const proofs = [await pay(0), await pay(1), await pay(0)];
    // Two more calls fit under the new cap; three proofs race for them on two proxies.
    await setCap(PRICE * 4n);
    const answers = await Promise.all(proofs.map((proof, i) => call(i % 2, proof)));
    const ok = answers.filter((a) => a.status === 200);
    const refused = answers.filter((a) => a.status !== 200);
    expect(ok).toHaveLength(2);
    expect(refused).toHaveLength(1);
    expectApiError(refused[0]!, 402, 'SPEND_CAP_EXCEEDED');
    expect(await spentToday()).toBe(PRICE * 4n);
    expect(seller.requests).toHaveLength(4);

    // The refused call's USDC had already moved: it is recorded under its own gateway request, marked for refund, and
    // booked then reversed in the ledger — the proof cannot pay for another call.
    const refundId = refused[0]!.json.error.refund_gateway_request_id as string;
    expect(refused[0]!.headers['x-crochet-request-id']).toBe(refundId);
    await stack.plane.eventsConsumer.drain();
    const history = await stack.plane.call('GET', `/api/v1/gateway-requests/${refundId}`, { key: buyer.apiKey });
    expect(history.body.data).toMatchObject({ http_status: 402, refund: 'refund_due' });
    const journals = await stack.plane.deps.pool.query<{ kind: string }>(
      'SELECT kind FROM ledger_journals WHERE gateway_request_id = $1 ORDER BY kind',
      [refundId],
    );
    expect(journals.rows.map((j) => j.kind)).toEqual(['payment', 'refund']);
    await setCap(PRICE * 5n);
    const refusedProof = proofs[answers.findIndex((a) => a.status !== 200)]!;
    expectApiError(await call(1, refusedProof), 409, 'PAYMENT_ALREADY_USED');
    expect(await spentToday()).toBe(PRICE * 4n);
  });

  it('does not stop free calls or other agents', async () => {
    const other = await stack.plane.register('other buyer');
    const unpaid = await gatewayCall(stack.proxies[0]!, listingId, other.apiKey);
    expectApiError(unpaid, 402, 'PAYMENT_REQUIRED');
  });
});
