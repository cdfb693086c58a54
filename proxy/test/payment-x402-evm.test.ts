import { devPublicClient, mintUsdc, usdcBalance } from '@crochet/dev-chains';
import { encodePaymentSignatureHeader } from '@x402/core/http';
import { toClientEvmSigner } from '@x402/evm';
import { ExactEvmScheme } from '@x402/evm/exact/client';
import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from '@x402/fetch';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createPaidListing,
  type PaymentStack,
  paymentRequiredOf,
  paymentTx,
  registerVerifiedEvmBuyer,
  startPaymentStack,
} from './payment-stack.js';
import { eventually, expectApiError, gatewayCall, startSeller, type TestSeller } from './stack.js';

/**
 * DESIGN §3.4 x402 `exact` on EVM: an unmodified `@x402/fetch` client pays a listing with an EIP-3009 authorization
 * on anvil; the gateway verifies and settles it itself, and the authorization pays for one call only.
 */

let stack: PaymentStack;
let seller: TestSeller;
let listing: string;
let buyerKey: string;
let buyerId: string;
const PRICE = 100_000n;
const buyer = () => privateKeyToAccount(stack.evm.accounts[1]!.privateKey);

beforeAll(async () => {
  stack = await startPaymentStack();
  seller = await startSeller();
  const sellerAgent = await stack.plane.register('seller');
  // A verified wallet: the buyer could also pay by direct transfer from it (which must not double-count x402 ones).
  ({ apiKey: buyerKey, agentId: buyerId } = await registerVerifiedEvmBuyer(
    stack,
    'buyer',
    stack.evm.accounts[1]!.privateKey,
  ));
  listing = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/paid`, '0.10');
  await mintUsdc(stack.evm, buyer().address, 10_000_000n);
}, 60_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

/** An x402 buyer for the anvil network: EIP-3009 signatures from the buyer's key, our local USDC allowed. */
const x402Buyer = () => {
  const client = new x402Client().register(
    stack.evm.caip2 as `${string}:${string}`,
    new ExactEvmScheme(toClientEvmSigner(buyer(), devPublicClient(stack.evm))),
  );
  // x402 clients only pay the tokens they know (USDC on public chains) unless told otherwise.
  client.setSpendControls({ allowedAssets: [{ network: stack.evm.caip2, asset: stack.evm.usdc }] });
  return client;
};

const url = () => `${stack.proxies[0]!.url}/api/v1/gateway/${listing}`;
const init = (): RequestInit => ({
  method: 'POST',
  headers: { authorization: `Bearer ${buyerKey}`, 'content-type': 'application/json' },
  body: '{"q":"x402"}',
});

describe('x402 exact on EVM through an unmodified @x402/fetch client', () => {
  it('pays, gets the answer and a PAYMENT-RESPONSE; the USDC moved on chain; a replay is refused', async () => {
    const sent: Request[] = [];
    const recording: typeof fetch = async (input, requestInit) => {
      const request = new Request(input, requestInit);
      sent.push(request.clone());
      return fetch(request);
    };
    const [payToBefore, buyerBefore] = await Promise.all([
      usdcBalance(stack.evm, stack.evmPayTo),
      usdcBalance(stack.evm, buyer().address),
    ]);

    const res = await wrapFetchWithPayment(recording, x402Buyer())(url(), init());
    const text = await res.text();
    expect(res.status, text).toBe(200);
    expect(JSON.parse(text)).toEqual({ echo: '{"q":"x402"}' });
    expect(sent.map((r) => r.headers.has('payment-signature'))).toEqual([false, true]);
    expect(seller.requests).toHaveLength(1);
    // The seller never sees the buyer's payment header.
    expect(seller.requests[0]!.headers['payment-signature']).toBeUndefined();

    const settlement = decodePaymentResponseHeader(res.headers.get('payment-response')!);
    expect(settlement).toMatchObject({ success: true, network: stack.evm.caip2 });
    expect(settlement.transaction).toMatch(/^0x[0-9a-f]{64}$/);
    const receipt = await devPublicClient(stack.evm).getTransactionReceipt({
      hash: settlement.transaction as `0x${string}`,
    });
    expect(receipt.status).toBe('success');
    expect(await usdcBalance(stack.evm, stack.evmPayTo)).toBe(payToBefore + PRICE);
    expect(await usdcBalance(stack.evm, buyer().address)).toBe(buyerBefore - PRICE);

    // The same PAYMENT-SIGNATURE again: the authorization paid for one call, ever.
    const signature = sent[1]!.headers.get('payment-signature')!;
    const replay = await gatewayCall(stack.proxies[0]!, listing, buyerKey, {
      body: { q: 'x402' },
      headers: { 'payment-signature': signature },
    });
    const used = expectApiError(replay, 409, 'PAYMENT_ALREADY_USED');
    expect(used.gateway_request_id).toBe(res.headers.get('x-crochet-request-id'));
    // Nor is its settlement transaction (a USDC transfer from the buyer's verified wallet) a second payment.
    const settledTx = await gatewayCall(stack.proxies[0]!, listing, buyerKey, {
      body: { q: 'x402' },
      headers: paymentTx(stack.evm.caip2, settlement.transaction),
    });
    expect(expectApiError(settledTx, 409, 'PAYMENT_ALREADY_USED').gateway_request_id).toBe(
      res.headers.get('x-crochet-request-id'),
    );
    expect(seller.requests).toHaveLength(1);
    expect(await usdcBalance(stack.evm, stack.evmPayTo)).toBe(payToBefore + PRICE);
  });

  it('accepts the same v2 payload in an X-PAYMENT header', async () => {
    const payToBefore = await usdcBalance(stack.evm, stack.evmPayTo);
    const unpaid = await gatewayCall(stack.proxies[0]!, listing, buyerKey, { body: { q: 'x402' } });
    expect(unpaid.status).toBe(402);
    const payload = await x402Buyer().createPaymentPayload(paymentRequiredOf(unpaid)!);
    expect(payload.accepted.network).toBe(stack.evm.caip2);
    const header = encodePaymentSignatureHeader(payload);

    const paid = await gatewayCall(stack.proxies[0]!, listing, buyerKey, {
      body: { q: 'x402' },
      headers: { 'x-payment': header },
    });
    expect(paid.status, paid.text).toBe(200);
    expect(paid.headers['payment-response']).toEqual(expect.any(String));
    expect(await usdcBalance(stack.evm, stack.evmPayTo)).toBe(payToBefore + PRICE);
    expect(seller.requests).toHaveLength(2);

    // Whichever header carries it, it is the same proof.
    for (const name of ['x-payment', 'payment-signature']) {
      expectApiError(
        await gatewayCall(stack.proxies[0]!, listing, buyerKey, { body: { q: 'x402' }, headers: { [name]: header } }),
        409,
        'PAYMENT_ALREADY_USED',
      );
    }
    expect(seller.requests).toHaveLength(2);
  });
});

describe("an x402 payment past the operator's daily spend cap", () => {
  const setCap = async (capAtomic: string | null) => {
    await stack.plane.deps.pool.query('UPDATE agents SET daily_spend_cap_atomic = $2 WHERE id = $1', [
      buyerId,
      capAtomic,
    ]);
    await stack.plane.deps.publisher.changed({ agentId: buyerId });
    await eventually(() => expect(stack.proxies[0]!.store.agent(buyerId)?.daily_spend_cap_atomic).toBe(capAtomic));
  };

  it('is not settled, so no USDC moves, and the same authorization pays once the cap allows', async () => {
    const unpaid = await gatewayCall(stack.proxies[0]!, listing, buyerKey, { body: { q: 'cap' } });
    expect(unpaid.status).toBe(402);
    const header = encodePaymentSignatureHeader(await x402Buyer().createPaymentPayload(paymentRequiredOf(unpaid)!));
    const payToBefore = await usdcBalance(stack.evm, stack.evmPayTo);
    const forwardedBefore = seller.requests.length;

    await setCap('0');
    const refused = await gatewayCall(stack.proxies[0]!, listing, buyerKey, {
      body: { q: 'cap' },
      headers: { 'payment-signature': header },
    });
    expectApiError(refused, 402, 'SPEND_CAP_EXCEEDED');
    expect(refused.json.error.refund_gateway_request_id).toBeUndefined();
    expect(await usdcBalance(stack.evm, stack.evmPayTo)).toBe(payToBefore);
    expect(seller.requests).toHaveLength(forwardedBefore);

    await setCap(null);
    const paid = await gatewayCall(stack.proxies[0]!, listing, buyerKey, {
      body: { q: 'cap' },
      headers: { 'payment-signature': header },
    });
    expect(paid.status, paid.text).toBe(200);
    expect(await usdcBalance(stack.evm, stack.evmPayTo)).toBe(payToBefore + PRICE);
    expect(seller.requests).toHaveLength(forwardedBefore + 1);
  });
});
