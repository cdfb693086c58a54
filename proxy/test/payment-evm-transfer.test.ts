import {
  deployTestUsdc,
  devPublicClient,
  devWalletClient,
  mintUsdc,
  testUsdcAbi,
  transferUsdc,
  usdcBalance,
} from '@crochet/dev-chains';
import type { Address, Hash, Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createPaidListing,
  type PaymentStack,
  paymentTx,
  registerVerifiedEvmBuyer,
  startPaymentStack,
} from './payment-stack.js';
import { eventually, expectApiError, gatewayCall, startSeller, type TestSeller } from './stack.js';

/**
 * DESIGN §3.4 direct EVM transfers (`X-Crochet-Payment-Tx: eip155:<chain>:0x<hash>`) on anvil: a plain USDC transfer
 * to the marketplace from a verified wallet of the calling agent pays for one call; everything else gets a precise
 * code, and nothing reaches the seller.
 */

let stack: PaymentStack;
let seller: TestSeller;
/** 0.10 USDC: clears the stack's EVM route minimum (0.05). */
let listing: string;
/** 0.01 USDC: below it. */
let cheapListing: string;
let alice: { apiKey: string; agentId: string; address: Address; key: Hex };
let bob: { apiKey: string; agentId: string; address: Address; key: Hex };
/** No wallet at all. */
let carolKey: string;
/** A wallet registered but never verified. */
let dave: { apiKey: string; address: Address; key: Hex };
const PRICE = 100_000n;

beforeAll(async () => {
  stack = await startPaymentStack();
  seller = await startSeller();
  const sellerAgent = await stack.plane.register('seller');
  listing = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/paid`, '0.10');
  cheapListing = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/cheap`, '0.01');
  const [a, b, d] = [1, 2, 4].map((i) => stack.evm.accounts[i]!.privateKey);
  alice = { ...(await registerVerifiedEvmBuyer(stack, 'alice', a!)), key: a! };
  bob = { ...(await registerVerifiedEvmBuyer(stack, 'bob', b!)), key: b! };
  carolKey = (await stack.plane.register('carol')).apiKey;
  const daveAddress = privateKeyToAccount(d!).address;
  dave = {
    apiKey: (await stack.plane.register('dave', { chain: 'evm', address: daveAddress })).apiKey,
    address: daveAddress,
    key: d!,
  };
  for (const who of [alice.address, bob.address, dave.address]) await mintUsdc(stack.evm, who, 10_000_000n);
}, 90_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

const pay = (fromKey: Hex, amount = PRICE, to: Address = stack.evmPayTo) =>
  transferUsdc(stack.evm, fromKey, to, amount);
const call = (apiKey: string, tx: Hash, options: { listingId?: string; proxy?: number } = {}) =>
  gatewayCall(stack.proxies[options.proxy ?? 0]!, options.listingId ?? listing, apiKey, {
    body: { q: 'evm' },
    headers: paymentTx(stack.evm.caip2, tx),
  });

describe('a direct USDC transfer on an EVM chain', () => {
  it('pays one call from a verified wallet; the same transaction presented by another agent is already used', async () => {
    const before = seller.requests.length;
    const tx = await pay(alice.key);
    const paid = await call(alice.apiKey, tx);
    expect(paid.status, paid.text).toBe(200);
    expect(paid.json).toEqual({ echo: '{"q":"evm"}' });
    expect(seller.requests).toHaveLength(before + 1);
    const requestId = paid.headers['x-crochet-request-id'];
    expect(requestId).toMatch(/^gr_/);

    const reused = expectApiError(await call(bob.apiKey, tx), 409, 'PAYMENT_ALREADY_USED');
    expect(reused.gateway_request_id).toBe(requestId);
    expectApiError(await call(alice.apiKey, tx), 409, 'PAYMENT_ALREADY_USED');
    expect(seller.requests).toHaveLength(before + 1);

    // The buyer finds the call it paid for by the transaction it holds (control plane, through the event stream).
    const found = await eventually(async () => {
      const res = await stack.plane.call('GET', `/api/v1/gateway-requests?payment_proof=${tx}`, { key: alice.apiKey });
      expect(res.status, res.text).toBe(200);
      expect(res.body.data).toHaveLength(1);
      return res.body.data[0];
    }, 10_000);
    expect(found).toMatchObject({
      id: requestId,
      listing_id: listing,
      payment: { rail: 'evm-transfer', network: stack.evm.caip2, tx, amount_atomic: PRICE.toString() },
    });
    expect(found.payment.payer).toBe(alice.address.toLowerCase());
    // Nobody else does.
    const other = await stack.plane.call('GET', `/api/v1/gateway-requests?payment_proof=${tx}`, { key: bob.apiKey });
    expect(other.body.data).toEqual([]);
  });

  it("refuses another agent's fresh transaction as a sender mismatch, and still lets its owner use it", async () => {
    const before = seller.requests.length;
    const tx = await pay(alice.key);
    expectApiError(await call(bob.apiKey, tx), 402, 'PAYMENT_SENDER_MISMATCH');
    expect(seller.requests).toHaveLength(before);
    const paid = await call(alice.apiKey, tx);
    expect(paid.status, paid.text).toBe(200);
    expect(seller.requests).toHaveLength(before + 1);
  });

  it('refuses a transfer from a wallet the caller has not verified (none, unverified, or someone else’s)', async () => {
    const before = seller.requests.length;
    // Carol has no wallet; the transfer comes from an address nobody registered.
    const stranger = stack.evm.accounts[3]!.privateKey;
    await mintUsdc(stack.evm, privateKeyToAccount(stranger).address, PRICE);
    expectApiError(await call(carolKey, await pay(stranger)), 402, 'PAYMENT_SENDER_MISMATCH');
    // Dave registered his wallet but never proved control of it.
    expectApiError(await call(dave.apiKey, await pay(dave.key)), 402, 'PAYMENT_SENDER_MISMATCH');
    expect(seller.requests).toHaveLength(before);
  });

  it('refuses a transfer to another address, an underpayment, another token and a reverted transaction', async () => {
    const before = seller.requests.length;
    const elsewhere = privateKeyToAccount(stack.evm.accounts[5]!.privateKey).address;
    expectApiError(await call(alice.apiKey, await pay(alice.key, PRICE, elsewhere)), 402, 'PAYMENT_WRONG_RECIPIENT');

    expectApiError(await call(alice.apiKey, await pay(alice.key, PRICE - 1n)), 402, 'PAYMENT_UNDERPAID');

    // A second TestUSDC: same interface, another contract.
    const other = await deployTestUsdc({
      rpcUrl: stack.evm.rpcUrl,
      chainId: stack.evm.chainId,
      deployerKey: stack.evm.deployerKey,
    });
    const otherToken = { ...stack.evm, usdc: other.address };
    await mintUsdc(otherToken, alice.address, PRICE);
    const wrongAsset = await transferUsdc(otherToken, alice.key, stack.evmPayTo, PRICE);
    expectApiError(await call(alice.apiKey, wrongAsset), 402, 'PAYMENT_WRONG_ASSET');

    // More than the balance, with a fixed gas limit so it is not estimated (and refused) first: it mines, reverted.
    const balance = await usdcBalance(stack.evm, alice.address);
    const reverted = await devWalletClient(stack.evm, alice.key).writeContract({
      address: stack.evm.usdc,
      abi: await testUsdcAbi(),
      functionName: 'transfer',
      args: [stack.evmPayTo, balance + 1n],
      gas: 100_000n,
    });
    const receipt = await devPublicClient(stack.evm).waitForTransactionReceipt({ hash: reverted });
    expect(receipt.status).toBe('reverted');
    expectApiError(await call(alice.apiKey, reverted), 402, 'PAYMENT_TX_FAILED');
    expect(seller.requests).toHaveLength(before);
  });

  it('refuses any EVM proof for a price below the EVM route minimum, before anything is forwarded', async () => {
    const before = seller.requests.length;
    const tx = await pay(alice.key);
    expectApiError(await call(alice.apiKey, tx, { listingId: cheapListing }), 402, 'PAYMENT_ROUTE_MINIMUM_NOT_MET');
    expect(seller.requests).toHaveLength(before);
    // Refused, not consumed: the transfer still pays a listing that clears the minimum.
    expect((await call(alice.apiKey, tx)).status).toBe(200);
  });

  it('answers PAYMENT_UNCONFIRMED until the transaction has enough confirmations, then accepts the same proof', async () => {
    const strict = await stack.addProxy({ CROCHET_EVM_CONFIRMATIONS: '5' });
    const proxy = stack.proxies.indexOf(strict);
    await eventually(() =>
      expect(strict.store.agent(alice.agentId)?.evm_wallets).toContain(alice.address.toLowerCase()),
    );
    const before = seller.requests.length;
    const tx = await pay(alice.key);
    const pending = await call(alice.apiKey, tx, { proxy });
    expectApiError(pending, 402, 'PAYMENT_UNCONFIRMED');
    expect(Number(pending.headers['retry-after'])).toBeGreaterThan(0);
    expect(seller.requests).toHaveLength(before);

    // Mined in block N, it has 1 confirmation; 4 more blocks make 5.
    await fetch(stack.evm.rpcUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'anvil_mine', params: ['0x4'] }),
    });
    const paid = await call(alice.apiKey, tx, { proxy });
    expect(paid.status, paid.text).toBe(200);
    expect(seller.requests).toHaveLength(before + 1);
  });
});
