import { authorizationState, devPublicClient, mintUsdc, transferUsdc, usdcBalance } from '@crochet/dev-chains';
import { redisKeys, utcDay } from '@crochet/protocol';
import { encodePaymentSignatureHeader } from '@x402/core/http';
import { toClientEvmSigner } from '@x402/evm';
import { ExactEvmScheme } from '@x402/evm/exact/client';
import { x402Client } from '@x402/fetch';
import { Redis } from 'ioredis';
import type { Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_REDIS_URL } from '../../control-plane/test/helpers.js';
import {
  createPaidListing,
  type PaymentStack,
  paymentRequiredOf,
  registerVerifiedEvmBuyer,
  startPaymentStack,
} from './payment-stack.js';
import { eventually, expectApiError, gatewayCall, startSeller, type TestSeller } from './stack.js';

/**
 * DESIGN §3.4 "pending, never failed": a verifier that outlasts the gateway's deadline answers 503
 * PAYMENT_VERIFIER_UNAVAILABLE naming the rail, with Retry-After (the rail's verifier did not answer — not our stores,
 * not the payment); the same proof retried later completes the call, and the buyer never pays twice. A proof verified
 * but not consumed is remembered, so its retry does not ask the chain (or Relay) again. A settlement broadcast but
 * not confirmed in time is PAYMENT_PENDING.
 */

let stack: PaymentStack;
let seller: TestSeller;
let sellerKey: string;
let buyerKey: string;
let solver: `0x${string}`;
let buyerWallet: `0x${string}`;
let buyerId: string;
const PRICE = 100_000n;

beforeAll(async () => {
  stack = await startPaymentStack({ proxyEnv: { CROCHET_PAYMENT_VERIFY_TIMEOUT_MS: '200' } });
  seller = await startSeller();
  sellerKey = (await stack.plane.register('seller')).apiKey;
  const buyer = await registerVerifiedEvmBuyer(stack, 'buyer', stack.evm.accounts[6]!.privateKey);
  buyerKey = buyer.apiKey;
  buyerWallet = buyer.address;
  buyerId = buyer.agentId;
  solver = stack.evm.accounts[5]!.privateKey;
  await mintUsdc(stack.evm, privateKeyToAccount(solver).address, 10_000_000n);
}, 60_000);
let client: Redis | undefined;
const redis = () => (client ??= new Redis(TEST_REDIS_URL));
afterAll(async () => {
  client?.disconnect();
  stack?.relay.setDelay(0);
  await seller?.close();
  await stack?.stop();
});

/** One real payment: a Relay request (status success) whose fill moved PRICE to the marketplace on anvil. */
const payThroughRelay = async () => {
  const fill = await transferUsdc(stack.evm, solver, stack.evmPayTo, PRICE);
  const usdc = { chainId: stack.evm.chainId, address: stack.evm.usdc, symbol: 'USDC', decimals: 6 };
  return stack.relay.createRequest({
    status: 'success',
    user: buyerWallet,
    recipient: stack.evmPayTo,
    originChainId: stack.evm.chainId,
    destinationChainId: stack.evm.chainId,
    currencyOut: usdc,
    amountOut: PRICE.toString(),
    outTxHashes: [fill],
  }).id;
};

const call = (listingId: string, requestId: string) =>
  gatewayCall(stack.proxies[0]!, listingId, buyerKey, {
    body: { q: 'slow' },
    headers: { 'x-crochet-relay-request-id': requestId },
  });

describe('a payment whose verification times out', () => {
  it('is answered 503 naming the rail, and the same proof retried once the rail answers completes the call without a new payment', async () => {
    const listing = await createPaidListing(stack, sellerKey, `${seller.url}/slow`, '0.10');
    const received = await usdcBalance(stack.evm, stack.evmPayTo);
    const id = await payThroughRelay();

    stack.relay.setDelay(1_000);
    const started = Date.now();
    const pending = await call(listing, id).finally(() => stack.relay.setDelay(0));
    const error = expectApiError(pending, 503, 'PAYMENT_VERIFIER_UNAVAILABLE');
    expect(error).toMatchObject({ rail: 'relay' });
    expect(error.message).toMatch(/did not answer within 200 ms/);
    expect(Number(pending.headers['retry-after'])).toBeGreaterThan(0);
    // The gateway answered at its deadline, not when Relay did.
    expect(Date.now() - started).toBeLessThan(900);
    expect(seller.requests).toHaveLength(0);

    const paid = await call(listing, id);
    expect(paid.status, paid.text).toBe(200);
    expect(seller.requests).toHaveLength(1);
    // One payment, one call: nothing was paid again.
    expect(await usdcBalance(stack.evm, stack.evmPayTo)).toBe(received + PRICE);

    // From now on the proof is settled in Redis: a replay is answered without asking Relay.
    const hits = { ...stack.relay.hits };
    expectApiError(await call(listing, id), 409, 'PAYMENT_ALREADY_USED');
    expect(stack.relay.hits).toEqual(hits);
  });

  it('remembers a verified proof that could not be used yet, so its retry does not verify again', async () => {
    // One call a minute: the second paid call is verified, then refused by the listing's rate limit.
    const listing = await createPaidListing(stack, sellerKey, `${seller.url}/limited`, '0.10', {
      rate_limit_per_minute: 1,
    });
    const before = seller.requests.length;
    expect((await call(listing, await payThroughRelay())).status).toBe(200);

    const id = await payThroughRelay();
    const hitsBefore = { ...stack.relay.hits };
    const limited = await call(listing, id);
    expectApiError(limited, 429, 'RATE_LIMITED');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(stack.relay.hits.status).toBeGreaterThan(hitsBefore.status);
    expect(seller.requests).toHaveLength(before + 1);

    // The seller lifts the limit; the retry is admitted from the verification already made.
    const patched = await stack.plane.call('PATCH', `/api/v1/listings/${listing}`, {
      key: sellerKey,
      body: { rate_limit_per_minute: 1_000 },
    });
    expect(patched.status, patched.text).toBe(200);
    await eventually(() => expect(stack.proxies[0]!.store.listing(listing)?.rateLimitPerMinute).toBe(1_000));
    const hits = { ...stack.relay.hits };
    const paid = await eventually(async () => {
      const res = await call(listing, id);
      expect(res.status, res.text).toBe(200);
      return res;
    });
    expect(paid.json).toEqual({ echo: '{"q":"slow"}' });
    expect(stack.relay.hits).toEqual(hits);
    expect(seller.requests).toHaveLength(before + 2);
  });

  it('is pending when settlement outlasts the deadline; the same payment retried on another proxy completes the call', async () => {
    // Two proxies with a deadline that verification meets on anvil but a held-back settlement does not.
    const first = await stack.addProxy({ CROCHET_PAYMENT_VERIFY_TIMEOUT_MS: '1500' });
    const second = await stack.addProxy({ CROCHET_PAYMENT_VERIFY_TIMEOUT_MS: '1500' });
    const listing = await createPaidListing(stack, sellerKey, `${seller.url}/settling`, '0.10');
    const buyer = privateKeyToAccount(stack.evm.accounts[2]!.privateKey);
    await mintUsdc(stack.evm, buyer.address, 1_000_000n);
    const client = new x402Client().register(
      stack.evm.caip2 as `${string}:${string}`,
      new ExactEvmScheme(toClientEvmSigner(buyer, devPublicClient(stack.evm))),
    );
    client.setSpendControls({ allowedAssets: [{ network: stack.evm.caip2, asset: stack.evm.usdc }] });
    const unpaid = await gatewayCall(first, listing, buyerKey, { body: { q: 'settle' } });
    const payload = await client.createPaymentPayload(paymentRequiredOf(unpaid)!);
    const header = { 'payment-signature': encodePaymentSignatureHeader(payload) };
    const nonce = (payload.payload as { authorization: { nonce: Hex } }).authorization.nonce;
    const before = seller.requests.length;
    const payToBefore = await usdcBalance(stack.evm, stack.evmPayTo);

    const anvil = (method: string, params: unknown[] = []) =>
      fetch(stack.evm.rpcUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
      });
    // The chain stops mining: the settlement transaction is broadcast but not confirmed in time.
    await anvil('evm_setAutomine', [false]);
    try {
      const pending = await gatewayCall(first, listing, buyerKey, { body: { q: 'settle' }, headers: header });
      expectApiError(pending, 402, 'PAYMENT_PENDING');
      expect(Number(pending.headers['retry-after'])).toBeGreaterThan(0);
      expect(seller.requests).toHaveLength(before);
    } finally {
      await anvil('evm_setAutomine', [true]);
      await anvil('evm_mine');
    }

    // Meanwhile the operator caps the agent at what it has spent today, this payment included: the retry of a
    // payment already broadcast is not capped (its spend stays counted, once), while a new call is.
    const spent = BigInt(
      (await redis().get(redisKeys(stack.plane.config.redisPrefix).spend(buyerId, utcDay()))) ?? '0',
    );
    expect(spent).toBeGreaterThanOrEqual(PRICE);
    await stack.plane.deps.pool.query('UPDATE agents SET daily_spend_cap_atomic = $2 WHERE id = $1', [
      buyerId,
      spent.toString(),
    ]);
    await stack.plane.deps.publisher.changed({ agentId: buyerId });
    await eventually(() => expect(second.store.agent(buyerId)?.daily_spend_cap_atomic).toBe(spent.toString()));

    // Retried with the same payment (on another proxy): the broadcast settlement is found, not repeated.
    const paid = await gatewayCall(second, listing, buyerKey, { body: { q: 'settle' }, headers: header });
    expect(paid.status, paid.text).toBe(200);
    expect(paid.headers['payment-response']).toEqual(expect.any(String));
    expect(seller.requests).toHaveLength(before + 1);
    expect(await authorizationState(stack.evm, buyer.address, nonce)).toBe(true);
    expect(await usdcBalance(stack.evm, stack.evmPayTo)).toBe(payToBefore + PRICE);
    expect(await usdcBalance(stack.evm, buyer.address)).toBe(1_000_000n - PRICE);
    expect(BigInt((await redis().get(redisKeys(stack.plane.config.redisPrefix).spend(buyerId, utcDay()))) ?? '0')).toBe(
      spent,
    );
    expectApiError(await gatewayCall(second, listing, buyerKey, { body: { q: 'next' } }), 402, 'SPEND_CAP_EXCEEDED');
  });
});
