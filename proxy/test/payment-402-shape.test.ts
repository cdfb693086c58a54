import { x402Client, x402HTTPClient } from '@x402/core/client';
import { decodePaymentRequiredHeader } from '@x402/core/http';
import { parsePaymentRequired } from '@x402/core/schemas';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPaidListing, type PaymentStack, startPaymentStack } from './payment-stack.js';
import { expectApiError, gatewayCall, startSeller, type TestSeller } from './stack.js';

/** DESIGN §3.4: what an unpaid call to a per_call listing answers, as an unmodified x402 client reads it. */

let stack: PaymentStack;
let seller: TestSeller;
let buyerKey: string;
let sellerKey: string;
let cheap: string;
let dear: string;

beforeAll(async () => {
  stack = await startPaymentStack();
  seller = await startSeller();
  sellerKey = (await stack.plane.register('seller')).apiKey;
  buyerKey = (await stack.plane.register('buyer')).apiKey;
  cheap = await createPaidListing(stack, sellerKey, `${seller.url}/cheap`, '0.01');
  dear = await createPaidListing(stack, sellerKey, `${seller.url}/dear`, '0.10');
}, 60_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

const unpaid = async (listingId: string) => {
  const res = await gatewayCall(stack.proxies[0]!, listingId, buyerKey, { body: { q: 1 } });
  expectApiError(res, 402, 'PAYMENT_REQUIRED');
  const header = res.headers['payment-required'];
  expect(typeof header).toBe('string');
  return { res, header: header as string };
};

describe('the 402 of a per_call listing', () => {
  it('carries an x402 v2 PaymentRequired that @x402/core decodes and validates; Solana only below the EVM minimum', async () => {
    const { res, header } = await unpaid(cheap);
    const required = decodePaymentRequiredHeader(header);
    const parsed = parsePaymentRequired(required);
    expect(parsed.success, JSON.stringify(parsed.error?.issues)).toBe(true);
    // The client side of @x402/core reads it the same way (what @x402/fetch does with a 402).
    const client = new x402HTTPClient(new x402Client());
    expect(client.getPaymentRequiredResponse((name) => res.headers[name.toLowerCase()] as string, res.json)).toEqual(
      required,
    );

    expect(required.x402Version).toBe(2);
    expect(required.resource.url).toMatch(new RegExp(`^https?://[^/]+/api/v1/gateway/${cheap}$`));
    expect(required.accepts).toHaveLength(1);
    expect(required.accepts[0]).toEqual({
      scheme: 'exact',
      network: stack.solana.caip2,
      amount: '10000',
      asset: stack.solana.usdcMint,
      payTo: stack.solanaPayTo,
      maxTimeoutSeconds: expect.any(Number),
      extra: {
        feePayer: expect.any(String),
        decimals: 6,
        memo: res.json.payment.payment_request_id,
        // The dev chain reuses devnet's CAIP-2 id: the 402 names the RPC to pay through.
        rpcUrl: stack.solana.rpcUrl,
      },
    });
    expect(required.accepts.some((a) => a.network.startsWith('eip155:'))).toBe(false);
  });

  it('lists an EVM option after the Solana one when the price clears the EVM route minimum', async () => {
    const { header } = await unpaid(dear);
    const required = decodePaymentRequiredHeader(header);
    expect(parsePaymentRequired(required).success).toBe(true);
    expect(required.accepts.map((a) => a.network)).toEqual([stack.solana.caip2, stack.evm.caip2]);
    expect(required.accepts.map((a) => a.amount)).toEqual(['100000', '100000']);
    // The minimum itself clears it.
    const atMinimum = await createPaidListing(stack, sellerKey, `${seller.url}/edge`, '0.05');
    const edge = decodePaymentRequiredHeader((await unpaid(atMinimum)).header);
    expect(edge.accepts.map((a) => a.network)).toEqual([stack.solana.caip2, stack.evm.caip2]);
    expect(required.accepts[1]).toEqual({
      scheme: 'exact',
      network: stack.evm.caip2,
      amount: '100000',
      asset: stack.evm.usdc,
      payTo: stack.evmPayTo,
      maxTimeoutSeconds: expect.any(Number),
      extra: { name: stack.evm.usdcName, version: stack.evm.usdcVersion, decimals: 6 },
    });
  });

  it('has a JSON body with the payment request, the same options and what a Relay payment must deliver', async () => {
    const before = Date.now();
    const { res, header } = await unpaid(cheap);
    const payment = res.json.payment;
    expect(payment).toMatchObject({
      payment_request_id: expect.stringMatching(/^pay_/),
      listing_id: cheap,
      amount: '0.01',
      amount_atomic: '10000',
      currency: 'USDC',
    });
    expect(Date.parse(payment.expires_at)).toBeGreaterThan(before);
    expect(payment.accepts).toEqual(decodePaymentRequiredHeader(header).accepts);
    expect(payment.relay).toMatchObject({
      recipient: stack.evmPayTo,
      currency: { chain_id: stack.evm.chainId, address: stack.evm.usdc, decimals: 6 },
      amount: '10000',
      destination_chain_id: stack.evm.chainId,
      api_url: stack.relay.url,
    });
    // Every 402 is a new payment request.
    const again = await unpaid(cheap);
    expect(again.res.json.payment.payment_request_id).not.toBe(payment.payment_request_id);
  });

  it('forwards nothing while unpaid', () => {
    expect(seller.requests).toHaveLength(0);
  });
});
