import { authorizationState, devPublicClient, mintUsdc, usdcBalance } from '@crochet/dev-chains';
import { encodePaymentSignatureHeader } from '@x402/core/http';
import { toClientEvmSigner } from '@x402/evm';
import { ExactEvmScheme } from '@x402/evm/exact/client';
import { x402Client } from '@x402/fetch';
import type { Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPaidListing, type PaymentStack, paymentRequiredOf, startPaymentStack } from './payment-stack.js';
import { eventually, expectApiError, gatewayCall, startSeller, type TestSeller } from './stack.js';

/**
 * DESIGN §3.4 / issue 4 §5, settlement policy per listing, with x402 `exact` on anvil (the rail that settles after
 * verifying): `after_response` settles only when the seller answered 2xx and otherwise gives the payment back
 * untouched; `before_forward` (the default) settles first, so a seller failure leaves a settled payment due a refund.
 */

let stack: PaymentStack;
let seller: TestSeller;
let sellerStatus = 200;
let sellerKey: string;
let buyerKey: string;
const PRICE = 100_000n;
const buyer = () => privateKeyToAccount(stack.evm.accounts[1]!.privateKey);

beforeAll(async () => {
  stack = await startPaymentStack();
  seller = await startSeller((_req, res, body) => {
    res.writeHead(sellerStatus, { 'content-type': 'application/json' });
    res.end(JSON.stringify(sellerStatus < 300 ? { echo: body.toString('utf8') } : { error: 'seller failed' }));
  });
  sellerKey = (await stack.plane.register('seller')).apiKey;
  buyerKey = (await stack.plane.register('buyer')).apiKey;
  await mintUsdc(stack.evm, buyer().address, 10_000_000n);
}, 60_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

const call = (listing: string, headers: Record<string, string> = {}) =>
  gatewayCall(stack.proxies[0]!, listing, buyerKey, { body: { q: 'policy' }, headers });

/** What an x402 buyer sends after a 402 on the EVM option: an EIP-3009 authorization in PAYMENT-SIGNATURE. */
const x402Payment = async (listing: string) => {
  const client = new x402Client().register(
    stack.evm.caip2 as `${string}:${string}`,
    new ExactEvmScheme(toClientEvmSigner(buyer(), devPublicClient(stack.evm))),
  );
  client.setSpendControls({ allowedAssets: [{ network: stack.evm.caip2, asset: stack.evm.usdc }] });
  const unpaid = await call(listing);
  expectApiError(unpaid, 402, 'PAYMENT_REQUIRED');
  const payload = await client.createPaymentPayload(paymentRequiredOf(unpaid)!);
  const nonce = (payload.payload as { authorization: { nonce: Hex } }).authorization.nonce;
  return { header: { 'payment-signature': encodePaymentSignatureHeader(payload) }, nonce };
};

describe('settlement policy after_response', () => {
  it('does not settle when the seller fails, gives the payment back, and settles the retry the seller answers', async () => {
    const listing = await createPaidListing(stack, sellerKey, `${seller.url}/after`, '0.10');
    const patched = await stack.plane.call('PATCH', `/api/v1/listings/${listing}`, {
      key: sellerKey,
      body: { settlement_policy: 'after_response' },
    });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.body.data.gateway.settlement_policy).toBe('after_response');
    await eventually(() => expect(stack.proxies[0]!.store.listing(listing)?.settlementPolicy).toBe('after_response'));
    const before = await usdcBalance(stack.evm, buyer().address);
    const { header, nonce } = await x402Payment(listing);

    sellerStatus = 500;
    const failed = await call(listing, header);
    expect(failed.status).toBe(500);
    expect(failed.json).toEqual({ error: 'seller failed' });
    // A buyer retries at once: the payment must already be free again.
    const retried = await call(listing, header);
    expect(retried.status, retried.text).toBe(500);
    expect(failed.headers['payment-response']).toBeUndefined();
    const forwarded = seller.requests.length;
    // Never settled: the authorization is unused on chain and no USDC moved.
    expect(await authorizationState(stack.evm, buyer().address, nonce)).toBe(false);
    expect(await usdcBalance(stack.evm, buyer().address)).toBe(before);
    const failedId = failed.headers['x-crochet-request-id'] as string;
    const record = await eventually(async () => {
      const res = await stack.plane.call('GET', `/api/v1/gateway-requests/${failedId}`, { key: buyerKey });
      expect(res.body?.data?.payment?.outcome, res.text).toBeDefined();
      return res.body.data;
    }, 10_000);
    expect(record.payment.outcome).toEqual({ status: 'released', tx: null });

    // The same payment, retried at once: it was given back, so it pays for this call.
    sellerStatus = 200;
    const paid = await call(listing, header);
    expect(paid.status, paid.text).toBe(200);
    expect(paid.json).toEqual({ echo: '{"q":"policy"}' });
    expect(seller.requests).toHaveLength(forwarded + 1);
    // Settled once the answer is out.
    await eventually(async () => expect(await usdcBalance(stack.evm, buyer().address)).toBe(before - PRICE), 10_000);
    expect(await authorizationState(stack.evm, buyer().address, nonce)).toBe(true);
    const paidId = paid.headers['x-crochet-request-id'] as string;
    const settled = await eventually(async () => {
      const res = await stack.plane.call('GET', `/api/v1/gateway-requests/${paidId}`, { key: buyerKey });
      expect(res.body?.data?.payment?.outcome?.status, res.text).toBe('settled');
      return res.body.data;
    }, 10_000);
    expect(settled.payment.outcome.tx).toMatch(/^0x[0-9a-f]{64}$/);

    // And now it is used.
    expectApiError(await call(listing, header), 409, 'PAYMENT_ALREADY_USED');
    expect(seller.requests).toHaveLength(forwarded + 1);
  });
});

describe('settlement policy before_forward (the default)', () => {
  it('settles before forwarding; when the seller then fails, the paid request is marked refund_due', async () => {
    const listing = await createPaidListing(stack, sellerKey, `${seller.url}/before`, '0.10');
    expect(stack.proxies[0]!.store.listing(listing)?.settlementPolicy).toBe('before_forward');
    const before = await usdcBalance(stack.evm, buyer().address);
    const payToBefore = await usdcBalance(stack.evm, stack.evmPayTo);
    const { header, nonce } = await x402Payment(listing);

    sellerStatus = 500;
    const failed = await call(listing, header);
    sellerStatus = 200;
    expect(failed.status).toBe(500);
    expect(failed.headers['payment-response']).toEqual(expect.any(String));
    expect(await authorizationState(stack.evm, buyer().address, nonce)).toBe(true);
    expect(await usdcBalance(stack.evm, buyer().address)).toBe(before - PRICE);
    expect(await usdcBalance(stack.evm, stack.evmPayTo)).toBe(payToBefore + PRICE);

    const id = failed.headers['x-crochet-request-id'] as string;
    const record = await eventually(async () => {
      const res = await stack.plane.call('GET', `/api/v1/gateway-requests/${id}`, { key: buyerKey });
      expect(res.status, res.text).toBe(200);
      expect(res.body.data.payment?.outcome?.status, res.text).toBe('refund_due');
      return res.body.data;
    }, 10_000);
    expect(record).toMatchObject({ id, listing_id: listing, http_status: 500 });
    expect(record.payment).toMatchObject({ rail: 'x402-exact', network: stack.evm.caip2 });
    expect(record.payment.outcome.tx).toMatch(/^0x[0-9a-f]{64}$/);
    // The buyer finds it by the settlement transaction its PAYMENT-RESPONSE named.
    const lookup = await stack.plane.call(
      'GET',
      `/api/v1/gateway-requests?payment_proof=${record.payment.outcome.tx}`,
      {
        key: buyerKey,
      },
    );
    expect(lookup.body.data.map((r: { id: string }) => r.id)).toEqual([id]);

    // Settled means spent: the same payment does not pay again.
    expectApiError(await call(listing, header), 409, 'PAYMENT_ALREADY_USED');
  });
});
