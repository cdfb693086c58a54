import { createFundedWallet, transferUsdcWithMemo } from '@crochet/dev-chains';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPaidListing, type PaymentStack, paymentTx, startPaymentStack } from './payment-stack.js';
import { expectApiError, gatewayCall, type RawResponse, startSeller, type TestSeller } from './stack.js';

/**
 * DESIGN §3.4 exactly once: one payment proof, retried 50 times at once across two proxies sharing Redis, pays for
 * exactly one forwarded call; and it never pays for a call to another listing.
 */

let stack: PaymentStack;
let seller: TestSeller;
let listing: string;
let otherListing: string;
let buyerKey: string;

beforeAll(async () => {
  stack = await startPaymentStack({ proxies: 2 });
  // A slow seller keeps the winning call in flight while the others arrive.
  seller = await startSeller((_req, res, body) => {
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ echo: body.toString('utf8') }));
    }, 100);
  });
  const sellerAgent = await stack.plane.register('seller');
  buyerKey = (await stack.plane.register('buyer')).apiKey;
  listing = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/paid`, '0.01');
  otherListing = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/other`, '0.01');
}, 60_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

describe('one proof, many concurrent retries, two proxies', () => {
  it('forwards exactly one call; every other retry is told the proof is used or still pending', async () => {
    const unpaid = await gatewayCall(stack.proxies[0]!, listing, buyerKey, { body: { n: -1 } });
    expectApiError(unpaid, 402, 'PAYMENT_REQUIRED');
    const wallet = await createFundedWallet(stack.solana, { sol: 1, usdcAtomic: 1_000_000n });
    const signature = await transferUsdcWithMemo(
      stack.solana,
      wallet.signer,
      stack.solanaPayTo,
      10_000n,
      unpaid.json.payment.payment_request_id,
    );
    const proof = paymentTx(stack.solana.caip2, signature);

    const results = await Promise.all(
      Array.from({ length: 50 }, (_, n) =>
        gatewayCall(stack.proxies[n % 2]!, listing, buyerKey, { body: { n }, headers: proof }),
      ),
    );
    const ok = results.filter((r) => r.status === 200);
    expect(ok, results.map((r) => `${r.status} ${r.json?.error?.code ?? ''}`).join(', ')).toHaveLength(1);
    expect(seller.requests).toHaveLength(1);
    const winner = ok[0]!.headers['x-crochet-request-id'];
    expect(seller.requests[0]!.headers['x-crochet-request-id']).toBe(winner);

    const others = results.filter((r) => r.status !== 200);
    const codes = new Set(others.map((r) => `${r.status} ${r.json?.error?.code}`));
    for (const code of codes) expect(['409 PAYMENT_ALREADY_USED', '402 PAYMENT_PENDING']).toContain(code);
    const used = others.filter((r: RawResponse) => r.status === 409);
    expect(used.length).toBeGreaterThan(0);
    for (const r of used) expect(expectApiError(r, 409, 'PAYMENT_ALREADY_USED').gateway_request_id).toBe(winner);
    for (const r of others.filter((r) => r.status === 402)) expectApiError(r, 402, 'PAYMENT_PENDING');

    // Retried afterwards, on either proxy, the answer is settled: used, by the winner.
    for (const proxy of stack.proxies) {
      const again = await gatewayCall(proxy, listing, buyerKey, { body: { n: 50 }, headers: proof });
      expect(expectApiError(again, 409, 'PAYMENT_ALREADY_USED').gateway_request_id).toBe(winner);
    }

    // The proof is bound to the call it paid for: another listing does not take it either.
    for (const proxy of stack.proxies) {
      const elsewhere = await gatewayCall(proxy, otherListing, buyerKey, { body: { n: 51 }, headers: proof });
      expectApiError(elsewhere, 409, 'PAYMENT_ALREADY_USED');
    }
    expect(seller.requests).toHaveLength(1);
  });
});
