import { mintUsdc, usdcBalance } from '@crochet/dev-chains';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPaidListing, type PaymentStack, registerVerifiedEvmBuyer } from '../../proxy/test/payment-stack.js';
import { eventually, startSeller, type TestSeller } from '../../proxy/test/stack.js';
import { Crochet, type ProgressEvent } from '../src/index.js';
import { startSdkStack } from './sdk-stack.js';

/**
 * The SDK paying through Relay on the dev chains: it quotes the 402's `relay` delivery at the Relay stand-in
 * (POST /quote/v2, the API named in the 402), sends the deposit step from the buyer's verified EVM wallet, and
 * retries the call with X-Crochet-Relay-Request-Id — through PAYMENT_PENDING while the solver has not filled yet,
 * with the same request id, one deposit, one fill, one journal, one call to the seller.
 */

let stack: PaymentStack;
let seller: TestSeller;
let listing: string;
let client: Crochet;
const buyerKey = () => stack.evm.accounts[5]!.privateKey;

beforeAll(async () => {
  stack = await startSdkStack();
  seller = await startSeller();
  const sellerKey = (await stack.plane.register('seller')).apiKey;
  listing = await createPaidListing(stack, sellerKey, `${seller.url}/relayed`, '0.10');
  const buyer = await registerVerifiedEvmBuyer(stack, 'relay buyer', buyerKey());
  await mintUsdc(stack.evm, buyer.address, 1_000_000n);
  client = new Crochet({
    baseUrl: stack.proxies[0]!.url,
    apiKey: buyer.apiKey,
    wallets: { evm: { account: privateKeyToAccount(buyerKey()), rpcUrl: stack.evm.rpcUrl } },
  });
}, 60_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

/** Journals booked for the listing's requests, once completions reached the ledger. */
const journalsOf = (requestId: string) =>
  eventually(async () => {
    await stack.plane.eventsConsumer.drain();
    const { rows } = await stack.plane.deps.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM ledger_journals WHERE gateway_request_id = $1',
      [requestId],
    );
    expect(rows[0]!.n).toBeGreaterThan(0);
    return rows[0]!.n;
  }, 10_000);

describe('the SDK paying through Relay', () => {
  it('quotes, deposits once and retries with the request id: one fill, one journal, one seller request', async () => {
    const buyer = privateKeyToAccount(buyerKey()).address;
    const [payToBefore, buyerBefore] = await Promise.all([
      usdcBalance(stack.evm, stack.evmPayTo),
      usdcBalance(stack.evm, buyer),
    ]);
    const quotesBefore = stack.relay.hits.quotes;
    const events: ProgressEvent[] = [];
    const result = await client.call(listing, { q: 'relay' }, { rail: 'relay', onProgress: (e) => events.push(e) });

    expect(result.status).toBe(200);
    expect(await result.json()).toEqual({ echo: '{"q":"relay"}' });
    expect(result.payment?.rail).toBe('relay');
    const id = result.payment!.headers['x-crochet-relay-request-id']!;
    expect(id).toMatch(/^0x[0-9a-f]{64}$/);
    expect(result.payment!.proofId).toBe(`relay:${id}`);
    // One quote, one deposit (the buyer paid the price once), one fill (the marketplace got it once).
    expect(events.filter((e) => e.phase === 'paying')).toHaveLength(1);
    expect(stack.relay.hits.quotes - quotesBefore).toBe(1);
    const request = stack.relay.getRequest(id)!;
    expect(request.status).toBe('success');
    expect(request.inTxHashes).toEqual([result.payment!.tx]);
    expect(request.outTxHashes).toHaveLength(1);
    expect(await usdcBalance(stack.evm, buyer)).toBe(buyerBefore - 100_000n);
    expect(await usdcBalance(stack.evm, stack.evmPayTo)).toBe(payToBefore + 100_000n);
    expect(seller.requests).toHaveLength(1);
    expect(await journalsOf(result.requestId!)).toBe(1);
    const receipt = await result.receipt();
    expect(receipt.valid).toBe(true);
  });

  it('while the fill is pending, retries with the same request id and never deposits again', async () => {
    const buyer = privateKeyToAccount(buyerKey()).address;
    const [payToBefore, buyerBefore] = await Promise.all([
      usdcBalance(stack.evm, stack.evmPayTo),
      usdcBalance(stack.evm, buyer),
    ]);
    const quotesBefore = stack.relay.hits.quotes;
    const sellerBefore = seller.requests.length;
    stack.relay.holdFills(true);
    const events: ProgressEvent[] = [];
    const result = await client
      .call(
        listing,
        { q: 'slow solver' },
        {
          rail: 'relay',
          onProgress: (event) => {
            events.push(event);
            // The gateway said pending: the solver fills while the SDK waits Retry-After.
            if (event.phase === 'waiting') stack.relay.holdFills(false);
          },
        },
      )
      .finally(() => stack.relay.holdFills(false));

    expect(result.status).toBe(200);
    expect(await result.json()).toEqual({ echo: '{"q":"slow solver"}' });
    const waits = events.filter((e) => e.phase === 'waiting');
    expect(waits.length).toBeGreaterThanOrEqual(1);
    expect(waits[0]!.code).toBe('PAYMENT_PENDING');
    // Every retry carried the proof of the one deposit.
    for (const wait of waits) expect(wait.proof).toEqual(result.payment);
    expect(events.filter((e) => e.phase === 'paying')).toHaveLength(1);
    expect(stack.relay.hits.quotes - quotesBefore).toBe(1);
    expect(await usdcBalance(stack.evm, buyer)).toBe(buyerBefore - 100_000n);
    expect(await usdcBalance(stack.evm, stack.evmPayTo)).toBe(payToBefore + 100_000n);
    expect(seller.requests.length - sellerBefore).toBe(1);
    expect(await journalsOf(result.requestId!)).toBe(1);
    // The request id paid for exactly one gateway request: the completed call.
    const paid = (await client.history.list({ payment_proof: result.payment!.proofId })).data;
    expect(paid.map((r) => r.id)).toEqual([result.requestId]);
  });
});
