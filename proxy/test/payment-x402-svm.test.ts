import { createFundedWallet, usdcBalanceOf } from '@crochet/dev-chains';
import type { Signature } from '@solana/kit';
import { encodePaymentSignatureHeader } from '@x402/core/http';
import { decodePaymentResponseHeader, x402Client } from '@x402/fetch';
import { ExactSvmScheme } from '@x402/svm/exact/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createPaidListing,
  type PaymentStack,
  paymentRequiredOf,
  paymentTx,
  startPaymentStack,
} from './payment-stack.js';
import { expectApiError, gatewayCall, startSeller, type TestSeller } from './stack.js';

/**
 * DESIGN §3.4 x402 `exact` on Solana: the buyer partially signs an SPL TransferChecked, the gateway adds its fee
 * payer's signature and sends it to the litesvm RPC, exactly as against a real cluster.
 */

let stack: PaymentStack;
let seller: TestSeller;
let listing: string;
let buyerKey: string;

beforeAll(async () => {
  stack = await startPaymentStack();
  seller = await startSeller();
  const sellerAgent = await stack.plane.register('seller');
  buyerKey = (await stack.plane.register('buyer')).apiKey;
  listing = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/paid`, '0.01');
}, 60_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

const call = (headers: Record<string, string> = {}) =>
  gatewayCall(stack.proxies[0]!, listing, buyerKey, { body: { q: 'svm' }, headers });

describe('x402 exact on Solana (litesvm over JSON-RPC)', () => {
  it('pays a 0.01 listing: the USDC reaches the marketplace token account and the call is answered once', async () => {
    // No SOL: the gateway's fee payer pays the fee, as x402 SVM intends.
    const wallet = await createFundedWallet(stack.solana, { sol: 0, usdcAtomic: 1_000_000n });
    const client = new x402Client().register(
      stack.solana.caip2 as `${string}:${string}`,
      new ExactSvmScheme(wallet.signer, { rpcUrl: stack.solana.rpcUrl }),
    );
    const marketplaceBefore = await usdcBalanceOf(stack.solana, stack.solanaPayTo);

    const unpaid = await call();
    expect(unpaid.status).toBe(402);
    const required = paymentRequiredOf(unpaid)!;
    const payload = await client.createPaymentPayload(required);
    expect(payload.accepted.network).toBe(stack.solana.caip2);
    const header = encodePaymentSignatureHeader(payload);

    const paid = await call({ 'payment-signature': header });
    expect(paid.status, paid.text).toBe(200);
    expect(paid.json).toEqual({ echo: '{"q":"svm"}' });
    expect(seller.requests).toHaveLength(1);
    const settlement = decodePaymentResponseHeader(paid.headers['payment-response'] as string);
    expect(settlement).toMatchObject({ success: true, network: stack.solana.caip2, payer: wallet.address });

    expect(await usdcBalanceOf(stack.solana, stack.solanaPayTo)).toBe(marketplaceBefore + 10_000n);
    expect(await usdcBalanceOf(stack.solana, wallet.address)).toBe(990_000n);
    const tx = await stack.solana.rpc
      .getTransaction(settlement.transaction as Signature, {
        commitment: 'confirmed',
        encoding: 'jsonParsed',
        maxSupportedTransactionVersion: 0,
      })
      .send();
    expect(tx?.meta?.err).toBeNull();

    // The authorization paid for one call, under either header.
    expectApiError(await call({ 'payment-signature': header }), 409, 'PAYMENT_ALREADY_USED');
    expectApiError(await call({ 'x-payment': header }), 409, 'PAYMENT_ALREADY_USED');
    // And its settlement transaction (the memo names this buyer's payment request) is not a second payment.
    expectApiError(await call(paymentTx(stack.solana.caip2, settlement.transaction)), 409, 'PAYMENT_ALREADY_USED');
    expect(seller.requests).toHaveLength(1);
    expect(await usdcBalanceOf(stack.solana, stack.solanaPayTo)).toBe(marketplaceBefore + 10_000n);
  });
});
