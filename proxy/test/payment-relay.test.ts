import { mintUsdc, type RelayIntentStatus, transferUsdc } from '@crochet/dev-chains';
import type { Address, Hash } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createPaidListing,
  type PaymentStack,
  paymentTx,
  registerVerifiedEvmBuyer,
  startPaymentStack,
} from './payment-stack.js';
import { expectApiError, gatewayCall, startSeller, type TestSeller } from './stack.js';

/**
 * DESIGN §3.4 Relay payments (`X-Crochet-Relay-Request-Id`) against Relay's current API (the local stand-in speaks
 * only it; `GET /requests/v2` is retired there as at Relay): the status comes from `GET /intents/status/v3`, the
 * request from `GET /requests/v3` with the gateway's `x-api-key`; its recipient, currency and amount must be the
 * marketplace's; its destination fill is a real USDC transfer on anvil, checked on chain, and consumed with the
 * request id.
 */

let stack: PaymentStack;
let seller: TestSeller;
let listing: string;
let buyerKey: string;
let solver: `0x${string}`;
let buyerWallet: `0x${string}`;
const PRICE = 100_000n;

beforeAll(async () => {
  stack = await startPaymentStack();
  seller = await startSeller();
  const sellerAgent = await stack.plane.register('seller');
  // The buyer's verified wallet made the Relay requests (request ids are public: only their maker may spend them).
  const buyer = await registerVerifiedEvmBuyer(stack, 'buyer', stack.evm.accounts[6]!.privateKey);
  buyerKey = buyer.apiKey;
  buyerWallet = buyer.address;
  listing = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/paid`, '0.10');
  // Relay's solver fills on the destination chain from its own wallet.
  solver = stack.evm.accounts[5]!.privateKey;
  await mintUsdc(stack.evm, privateKeyToAccount(solver).address, 10_000_000n);
}, 60_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

/** A Relay request whose fill really paid `recipient` on anvil. */
const relayRequest = async (
  status: RelayIntentStatus,
  options: { recipient?: Address; fill?: Hash; user?: Address } = {},
): Promise<{ id: string; fill: Hash }> => {
  const fill = options.fill ?? (await transferUsdc(stack.evm, solver, stack.evmPayTo, PRICE));
  const usdc = { chainId: stack.evm.chainId, address: stack.evm.usdc, symbol: 'USDC', decimals: 6 };
  const request = stack.relay.createRequest({
    status,
    user: options.user ?? buyerWallet,
    recipient: options.recipient ?? stack.evmPayTo,
    originChainId: 8453,
    destinationChainId: stack.evm.chainId,
    currencyIn: { ...usdc, chainId: 8453, address: '0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913' },
    currencyOut: usdc,
    amountOut: PRICE.toString(),
    inTxHashes: [`0x${'ab'.repeat(32)}`],
    outTxHashes: [fill],
  });
  return { id: request.id, fill };
};

const call = (headers: Record<string, string>) =>
  gatewayCall(stack.proxies[0]!, listing, buyerKey, { body: { q: 'relay' }, headers });
const relayId = (id: string) => ({ 'x-crochet-relay-request-id': id });

describe('a payment through Relay', () => {
  it('pays one call when the request succeeded; its fill transaction cannot pay again', async () => {
    const { id, fill } = await relayRequest('success');
    const paid = await call(relayId(id));
    expect(paid.status, paid.text).toBe(200);
    expect(paid.json).toEqual({ echo: '{"q":"relay"}' });
    expect(seller.requests).toHaveLength(1);
    const requestId = paid.headers['x-crochet-request-id'];

    expect(expectApiError(await call(relayId(id)), 409, 'PAYMENT_ALREADY_USED').gateway_request_id).toBe(requestId);
    // The fill is a USDC transfer to the marketplace: presented directly it is the same payment, already used.
    const direct = await call(paymentTx(stack.evm.caip2, fill));
    expect(expectApiError(direct, 409, 'PAYMENT_ALREADY_USED').gateway_request_id).toBe(requestId);
    // Nor through another Relay request that claims the same fill.
    const copy = await relayRequest('success', { fill });
    expect(expectApiError(await call(relayId(copy.id)), 409, 'PAYMENT_ALREADY_USED').gateway_request_id).toBe(
      requestId,
    );
    expect(seller.requests).toHaveLength(1);
  });

  it('refuses failed and refunded requests', async () => {
    for (const status of ['failure', 'refund'] as const) {
      const { id } = await relayRequest(status);
      expectApiError(await call(relayId(id)), 402, 'PAYMENT_RELAY_FAILED');
    }
    expect(seller.requests).toHaveLength(1);
  });

  it('reads requests through v3 with the API key, never the retired v2', async () => {
    const before = { ...stack.relay.hits };
    const { id } = await relayRequest('success');
    expect((await call(relayId(id))).status).toBe(200);
    expect(stack.relay.hits.requests).toBe(before.requests + 1);
    expect(stack.relay.hits.retired).toBe(0);
  });

  it('a wrong API key is the verifier failing (503 naming Relay), never our stores; the proof stays good', async () => {
    const misconfigured = await stack.addProxy({ ...stack.proxyEnv, CROCHET_RELAY_API_KEY: 'not-the-key' });
    const before = seller.requests.length;
    const { id } = await relayRequest('success');
    const refused = await gatewayCall(misconfigured, listing, buyerKey, { body: { q: 'relay' }, headers: relayId(id) });
    const error = expectApiError(refused, 503, 'PAYMENT_VERIFIER_UNAVAILABLE');
    expect(error).toMatchObject({ rail: 'relay', verifier: 'Relay API' });
    expect(error.message).toMatch(/refused the gateway's API key \(HTTP 401\)/);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    expect(seller.requests).toHaveLength(before);
    // The same proof on a well-configured proxy pays, once.
    expect((await call(relayId(id))).status).toBe(200);
    expect(seller.requests).toHaveLength(before + 1);
  });

  it('answers PAYMENT_PENDING while the request is in flight, then accepts the same id once it succeeded', async () => {
    const before = seller.requests.length;
    const { id } = await relayRequest('pending');
    const pending = await call(relayId(id));
    expectApiError(pending, 402, 'PAYMENT_PENDING');
    expect(Number(pending.headers['retry-after'])).toBeGreaterThan(0);
    expect(seller.requests).toHaveLength(before);

    stack.relay.setStatus(id, 'success');
    const paid = await call(relayId(id));
    expect(paid.status, paid.text).toBe(200);
    expect(seller.requests).toHaveLength(before + 1);
  });

  it('refuses a request that delivered to someone else', async () => {
    const before = seller.requests.length;
    const elsewhere = privateKeyToAccount(stack.evm.accounts[6]!.privateKey).address;
    const fill = await transferUsdc(stack.evm, solver, elsewhere, PRICE);
    const { id } = await relayRequest('success', { recipient: elsewhere, fill });
    expectApiError(await call(relayId(id)), 402, 'PAYMENT_WRONG_RECIPIENT');
    expect(seller.requests).toHaveLength(before);
  });

  it('refuses a request that says it paid us when its fill went elsewhere', async () => {
    const before = seller.requests.length;
    const elsewhere = privateKeyToAccount(stack.evm.accounts[6]!.privateKey).address;
    const fill = await transferUsdc(stack.evm, solver, elsewhere, PRICE);
    // Relay reports the marketplace as recipient, but the chain says otherwise: the chain wins.
    const { id } = await relayRequest('success', { fill });
    expectApiError(await call(relayId(id)), 402, 'PAYMENT_WRONG_RECIPIENT');
    expect(seller.requests).toHaveLength(before);
  });
});
