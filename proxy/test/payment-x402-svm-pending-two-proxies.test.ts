import { createFundedWallet, solBalanceOf, usdcBalanceOf } from '@crochet/dev-chains';
import { redisKeys } from '@crochet/protocol';
import type { Signature } from '@solana/kit';
import { encodePaymentSignatureHeader } from '@x402/core/http';
import { decodePaymentResponseHeader, x402Client } from '@x402/fetch';
import { ExactSvmScheme } from '@x402/svm/exact/client';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_REDIS_URL } from '../../control-plane/test/helpers.js';
import { createPaidListing, type PaymentStack, paymentRequiredOf, startPaymentStack } from './payment-stack.js';
import { expectApiError, gatewayCall, startSeller, type TestSeller } from './stack.js';

/**
 * An x402 Solana settlement that is broadcast but not final within the deadline is pending, and the buyer retries
 * with the same payment — on whichever proxy the balancer picks. The facilitator's pending-settlement store is in
 * Redis, shared by the proxies (as the EVM one is): the retry on another proxy waits for the transaction the first
 * one broadcast, and never sends a second one. (Per process, the other proxy would take the payment for a new one
 * and verify it again: with the buyer's USDC already ours — here the wallet held just the price — that fails, and
 * the buyer is refused for a payment that went through.)
 */

let stack: PaymentStack;
let seller: TestSeller;
let listing: string;
let buyerKey: string;
let redis: Redis;
const PRICE = 10_000n;
const FINALITY_DEPTH = 32;

beforeAll(async () => {
  // Settlements count at `finalized`; the dev chain holds finality back, so a settlement outlasts the deadline.
  stack = await startPaymentStack({
    proxies: 2,
    proxyEnv: { CROCHET_SOLANA_COMMITMENT: 'finalized', CROCHET_PAYMENT_VERIFY_TIMEOUT_MS: '1000' },
  });
  seller = await startSeller();
  const sellerAgent = await stack.plane.register('seller');
  buyerKey = (await stack.plane.register('buyer')).apiKey;
  listing = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/paid`, '0.01');
  redis = new Redis(TEST_REDIS_URL);
}, 60_000);
afterAll(async () => {
  stack?.solana.setFinalizationDepth(0);
  redis?.disconnect();
  await seller?.close();
  await stack?.stop();
});

describe('an x402 Solana settlement pending on one proxy', () => {
  it('is waited for, not sent again, when the same payment is retried on another proxy', async () => {
    const [first, second] = stack.proxies as [(typeof stack.proxies)[0], (typeof stack.proxies)[0]];
    const wallet = await createFundedWallet(stack.solana, { sol: 0, usdcAtomic: PRICE });
    const client = new x402Client().register(
      stack.solana.caip2 as `${string}:${string}`,
      new ExactSvmScheme(wallet.signer, { rpcUrl: stack.solana.rpcUrl }),
    );
    const unpaid = await gatewayCall(first, listing, buyerKey, { body: { q: 'svm' } });
    const payload = await client.createPaymentPayload(paymentRequiredOf(unpaid)!);
    const header = { 'payment-signature': encodePaymentSignatureHeader(payload) };
    const feePayer = (payload.accepted.extra as { feePayer: string }).feePayer;
    const feePayerBefore = await solBalanceOf(stack.solana, feePayer);
    const marketplaceBefore = await usdcBalanceOf(stack.solana, stack.solanaPayTo);
    const landedBefore = stack.solana.engine.transactionCount;

    stack.solana.setFinalizationDepth(FINALITY_DEPTH);
    const pending = await gatewayCall(first, listing, buyerKey, { body: { q: 'svm' }, headers: header });
    expectApiError(pending, 402, 'PAYMENT_PENDING');
    expect(Number(pending.headers['retry-after'])).toBeGreaterThan(0);
    expect(seller.requests).toHaveLength(0);
    // Broadcast once, and remembered where every proxy looks.
    expect(stack.solana.engine.transactionCount).toBe(landedBefore + 1);
    const settling = await redis.keys(`${redisKeys(stack.plane.config.redisPrefix).paymentSettling('')}*`);
    expect(settling).toHaveLength(1);
    const broadcast = await redis.get(settling[0]!);
    expect(broadcast).toEqual(expect.any(String));

    // Retried on the other proxy while still not final: pending again, and still one transaction.
    const stillPending = await gatewayCall(second, listing, buyerKey, { body: { q: 'svm' }, headers: header });
    expectApiError(stillPending, 402, 'PAYMENT_PENDING');
    expect(stack.solana.engine.transactionCount).toBe(landedBefore + 1);
    expect(seller.requests).toHaveLength(0);

    // Final now: the retry on the other proxy completes the call with the transaction the first one broadcast.
    stack.solana.advanceSlots(FINALITY_DEPTH);
    const paid = await gatewayCall(second, listing, buyerKey, { body: { q: 'svm' }, headers: header });
    expect(paid.status, paid.text).toBe(200);
    expect(seller.requests).toHaveLength(1);
    const settlement = decodePaymentResponseHeader(paid.headers['payment-response'] as string);
    expect(settlement).toMatchObject({ success: true, transaction: broadcast, payer: wallet.address });
    expect(stack.solana.engine.transactionCount).toBe(landedBefore + 1);
    // Paid once: the USDC moved once, the fee payer paid that one transaction's fee.
    expect(await usdcBalanceOf(stack.solana, stack.solanaPayTo)).toBe(marketplaceBefore + PRICE);
    expect(await usdcBalanceOf(stack.solana, wallet.address)).toBe(0n);
    const tx = await stack.solana.rpc
      .getTransaction(broadcast as Signature, { encoding: 'json', maxSupportedTransactionVersion: 0 })
      .send();
    expect(feePayerBefore - (await solBalanceOf(stack.solana, feePayer))).toBe(tx!.meta!.fee);
    expect(await redis.keys(`${redisKeys(stack.plane.config.redisPrefix).paymentSettling('')}*`)).toHaveLength(0);
  });
});
