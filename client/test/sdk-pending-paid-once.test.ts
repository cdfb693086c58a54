import { authorizationState, mintUsdc, usdcBalance } from '@crochet/dev-chains';
import type { Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPaidListing, type PaymentStack } from '../../proxy/test/payment-stack.js';
import { eventually, startSeller, type TestSeller } from '../../proxy/test/stack.js';
import { Crochet, type ProgressEvent } from '../src/index.js';
import { startSdkStack } from './sdk-stack.js';

/**
 * DESIGN §3.4 "pending, never failed", from the buyer's side: the chain stops confirming, the gateway answers
 * PAYMENT_PENDING with Retry-After, and the SDK retries the same x402 authorization until the call completes —
 * one authorization used, one transfer on chain, one journal, one call to the seller.
 */

let stack: PaymentStack;
let seller: TestSeller;
let listing: string;

beforeAll(async () => {
  // A deadline verification meets on anvil but a settlement held back by the chain does not.
  stack = await startSdkStack({ proxyEnv: { CROCHET_PAYMENT_VERIFY_TIMEOUT_MS: '1500' } });
  seller = await startSeller();
  const sellerKey = (await stack.plane.register('seller')).apiKey;
  listing = await createPaidListing(stack, sellerKey, `${seller.url}/settling`, '0.10');
}, 60_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

const anvil = (method: string, params: unknown[] = []) =>
  fetch(stack.evm.rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });

describe('a payment that is pending', () => {
  it('is retried with the same proof until the call completes, and paid once', async () => {
    const account = privateKeyToAccount(stack.evm.accounts[4]!.privateKey);
    await mintUsdc(stack.evm, account.address, 1_000_000n);
    const client = new Crochet({ baseUrl: stack.proxies[0]!.url, wallets: { evm: { account } } });
    await client.register({ name: 'patient buyer' });
    const payToBefore = await usdcBalance(stack.evm, stack.evmPayTo);

    const events: ProgressEvent[] = [];
    await anvil('evm_setAutomine', [false]);
    let mining = false;
    const result = await client
      .call(
        listing,
        { q: 'pending' },
        {
          onProgress: (event) => {
            events.push(event);
            // The gateway said pending: the chain catches up while the SDK waits Retry-After.
            if (event.phase === 'waiting' && !mining) {
              mining = true;
              void anvil('evm_setAutomine', [true]).then(() => anvil('evm_mine'));
            }
          },
        },
      )
      .finally(async () => {
        await anvil('evm_setAutomine', [true]);
      });

    expect(result.status).toBe(200);
    expect(await result.json()).toEqual({ echo: '{"q":"pending"}' });
    const waits = events.filter((e) => e.phase === 'waiting');
    expect(waits.length).toBeGreaterThanOrEqual(1);
    expect(waits[0]!.code).toBe('PAYMENT_PENDING');
    // Paid once: one payment step, one authorization, one transfer, one journal, one call to the seller.
    expect(events.filter((e) => e.phase === 'paying')).toHaveLength(1);
    const nonce = result.payment!.proofId.split(':').at(-1) as Hex;
    expect(await authorizationState(stack.evm, account.address, nonce)).toBe(true);
    expect(await usdcBalance(stack.evm, stack.evmPayTo)).toBe(payToBefore + 100_000n);
    expect(await usdcBalance(stack.evm, account.address)).toBe(900_000n);
    expect(seller.requests).toHaveLength(1);
    // Completions reach the ledger batched: wait for the journal, then there is exactly one.
    const journals = await eventually(async () => {
      await stack.plane.eventsConsumer.drain();
      const { rows } = await stack.plane.deps.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ledger_journals j JOIN gateway_requests g ON g.id = j.gateway_request_id
          WHERE g.listing_id = $1`,
        [listing],
      );
      expect(rows[0]!.n).toBeGreaterThan(0);
      return rows[0]!.n;
    }, 10_000);
    expect(journals).toBe(1);
    // The history shows the pending attempt and the completed one, both carrying the same proof.
    const attempts = (await client.history.list({ payment_proof: result.payment!.proofId })).data;
    expect(attempts.map((r) => r.status)).toEqual(expect.arrayContaining(['completed', 'payment_pending']));
  });
});
