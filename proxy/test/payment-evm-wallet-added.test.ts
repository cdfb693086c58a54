import { mintUsdc, transferUsdc } from '@crochet/dev-chains';
import type { Hash } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyWallet } from '../../control-plane/test/helpers.js';
import {
  createPaidListing,
  type PaymentStack,
  paymentTx,
  startPaymentStack,
  untilProxiesHaveWallet,
} from './payment-stack.js';
import { expectApiError, gatewayCall, startSeller, type TestSeller } from './stack.js';

/**
 * DESIGN §3.9 + §3.4 on anvil, through two proxies: a wallet an agent adds with its API key (no recovery, its key
 * stays) reaches every proxy's config at once, so a direct USDC transfer from it pays — even one the gateway refused
 * a moment before, as it was not the agent's then. Removing the wallet stops that just as fast.
 */
let stack: PaymentStack;
let seller: TestSeller;
let listing: string;
const PRICE = 100_000n;

beforeAll(async () => {
  stack = await startPaymentStack({ proxies: 2 });
  seller = await startSeller();
  const sellerAgent = await stack.plane.register('seller');
  listing = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/paid`, '0.10');
}, 90_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

describe('an EVM wallet added with the API key', () => {
  it('pays for calls by direct transfer on every proxy as soon as it is added, and no longer once removed', async () => {
    const privateKey = stack.evm.accounts[1]!.privateKey;
    const account = privateKeyToAccount(privateKey);
    await mintUsdc(stack.evm, account.address, 10_000_000n);
    const { apiKey, agentId } = await stack.plane.register('buyer');
    const pay = () => transferUsdc(stack.evm, privateKey, stack.evmPayTo, PRICE);
    const call = (tx: Hash, proxy: number) =>
      gatewayCall(stack.proxies[proxy]!, listing, apiKey, {
        body: { q: 'added' },
        headers: paymentTx(stack.evm.caip2, tx),
      });
    const before = seller.requests.length;

    // Not the agent's wallet yet: refused, and not used up.
    const early = await pay();
    expectApiError(await call(early, 0), 402, 'PAYMENT_SENDER_MISMATCH');

    const added = await verifyWallet(stack.plane, apiKey, {
      chain: 'evm',
      address: account.address,
      sign: (message) => account.signMessage({ message }),
    });
    expect(added.status, added.text).toBe(201);
    expect(added.body.data).toMatchObject({ chain: 'evm', address: account.address, verified: true });
    // "At once": a change notice, not the periodic resync (minutes); a second is generous.
    await untilProxiesHaveWallet(stack, agentId, account.address, true, 1_000);

    const paid = await call(early, 0);
    expect(paid.status, paid.text).toBe(200);
    expect(paid.json).toEqual({ echo: '{"q":"added"}' });
    const onOther = await call(await pay(), 1);
    expect(onOther.status, onOther.text).toBe(200);
    expect(seller.requests).toHaveLength(before + 2);
    // The same key throughout: adding a wallet revoked nothing.
    const me = await stack.plane.call('GET', '/api/v1/me', { key: apiKey });
    expect(me.body.data.keys.map((k: { revoked_at: unknown }) => k.revoked_at)).toEqual([null]);

    // Paid before the removal, presented after it: refused as well.
    const unused = await pay();
    const removed = await stack.plane.call('DELETE', `/api/v1/me/wallets/${account.address}`, { key: apiKey });
    expect(removed.status, removed.text).toBe(200);
    await untilProxiesHaveWallet(stack, agentId, account.address, false, 1_000);
    expectApiError(await call(unused, 0), 402, 'PAYMENT_SENDER_MISMATCH');
    expectApiError(await call(await pay(), 1), 402, 'PAYMENT_SENDER_MISMATCH');
    expect(seller.requests).toHaveLength(before + 2);
  });
});
