import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProxyServer } from '../src/app.js';
import { createPaidListing, type PaymentStack, paySolana, startPaymentStack } from './payment-stack.js';
import { expectApiError, gatewayCall, startSeller, type TestSeller } from './stack.js';

/**
 * DESIGN §3.4 / §4 `CROCHET_SOLANA_COMMITMENT`: a gateway that requires finalized Solana payments (the default on
 * mainnet) answers a transfer that is only confirmed with 402 PAYMENT_UNCONFIRMED and Retry-After — pending, never
 * failed — and accepts the same proof once the transfer is finalized. A gateway at `confirmed` (the default
 * elsewhere) accepts it as soon as it lands. The dev chain holds finality back by 32 blocks, as a cluster roots a
 * block about 32 blocks later.
 */

let stack: PaymentStack;
let seller: TestSeller;
let listing: string;
let buyerKey: string;
/** At `confirmed` (the default off mainnet, as on this devnet-like chain). */
let confirmedProxy: ProxyServer;
const PRICE = 10_000n;
const FINALITY_DEPTH = 32;

beforeAll(async () => {
  stack = await startPaymentStack({ proxyEnv: { CROCHET_SOLANA_COMMITMENT: 'finalized' } });
  confirmedProxy = await stack.addProxy({ ...stack.proxyEnv, CROCHET_SOLANA_COMMITMENT: 'confirmed' });
  seller = await startSeller();
  const sellerAgent = await stack.plane.register('seller');
  buyerKey = (await stack.plane.register('buyer')).apiKey;
  listing = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/paid`, '0.01');
  stack.solana.setFinalizationDepth(FINALITY_DEPTH);
}, 60_000);
afterAll(async () => {
  stack?.solana.setFinalizationDepth(0);
  await seller?.close();
  await stack?.stop();
});

const call = (proxy: { url: string }, proof: Record<string, string>) =>
  gatewayCall(proxy, listing, buyerKey, { body: { q: 'final' }, headers: proof });

describe('Solana finality', () => {
  it('a confirmed transfer is pending at `finalized`, then pays with the same proof once finalized', async () => {
    const finalizing = stack.proxies[0]!;
    const proof = await paySolana(stack, listing, buyerKey, PRICE, finalizing);

    const pending = await call(finalizing, proof);
    const error = expectApiError(pending, 402, 'PAYMENT_UNCONFIRMED');
    expect(error.message).toMatch(/confirmed \(0 confirmations\), not finalized yet/);
    // 32 blocks of ~0.4 s to go.
    expect(Number(pending.headers['retry-after'])).toBe(13);
    expect(seller.requests).toHaveLength(0);

    stack.solana.advanceSlots(FINALITY_DEPTH / 2);
    const halfway = await call(finalizing, proof);
    expectApiError(halfway, 402, 'PAYMENT_UNCONFIRMED');
    expect(Number(halfway.headers['retry-after'])).toBeLessThan(13);
    expect(seller.requests).toHaveLength(0);

    stack.solana.advanceSlots(FINALITY_DEPTH / 2);
    const paid = await call(finalizing, proof);
    expect(paid.status, paid.text).toBe(200);
    expect(seller.requests).toHaveLength(1);
    expectApiError(await call(finalizing, proof), 409, 'PAYMENT_ALREADY_USED');
  });

  it('a gateway at `confirmed` accepts the transfer as it lands', async () => {
    const before = seller.requests.length;
    const proof = await paySolana(stack, listing, buyerKey, PRICE, confirmedProxy);
    const paid = await call(confirmedProxy, proof);
    expect(paid.status, paid.text).toBe(200);
    expect(seller.requests).toHaveLength(before + 1);
  });
});
