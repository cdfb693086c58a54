import { createFundedWallet, usdcBalanceOf } from '@crochet/dev-chains';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPaidListing, type PaymentStack } from '../../proxy/test/payment-stack.js';
import { eventually, startSeller, type TestSeller } from '../../proxy/test/stack.js';
import { Crochet, CrochetClientError, type ProgressEvent } from '../src/index.js';
import { type CutRelay, startCutRelay } from './cut-relay.js';
import { startSdkStack } from './sdk-stack.js';

/**
 * DESIGN §3.5, a buyer after a dropped connection: the SDK asks its history what became of the paid call instead of
 * paying again. A retry lost before it reached the gateway is sent again with the same proof; an answer cut off
 * mid-stream is reported as paid and served, and resuming with its proof never pays a second time.
 */

let stack: PaymentStack;
let seller: TestSeller;
let relay: CutRelay;
let quick: string;
let dripping: string;

beforeAll(async () => {
  stack = await startSdkStack();
  seller = await startSeller((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    if (!req.url!.endsWith('/drip')) return res.end('done');
    let n = 0;
    const timer = setInterval(() => {
      res.write(`chunk ${n++}\n`);
      if (n === 10) {
        clearInterval(timer);
        res.end();
      }
    }, 100);
    res.once('close', () => clearInterval(timer));
  });
  const sellerKey = (await stack.plane.register('seller')).apiKey;
  quick = await createPaidListing(stack, sellerKey, `${seller.url}/quick`, '0.01');
  dripping = await createPaidListing(stack, sellerKey, `${seller.url}/drip`, '0.01');
  relay = await startCutRelay(stack.proxies[0]!.url);
}, 60_000);
afterAll(async () => {
  await relay?.close();
  await seller?.close();
  await stack?.stop();
});

const buyer = async () => {
  const wallet = await createFundedWallet(stack.solana, { sol: 1, usdcAtomic: 1_000_000n });
  const client = new Crochet({
    baseUrl: relay.url,
    wallets: { solana: { signer: wallet.signer, rpcUrl: stack.solana.rpcUrl } },
  });
  await client.register({ name: 'buyer on a bad network' });
  return { client, wallet };
};

/** Journals of a listing's calls, once they reached the ledger (completions are sent batched). */
const journalsOf = (listingId: string) =>
  eventually(async () => {
    await stack.plane.eventsConsumer.drain();
    const { rows } = await stack.plane.deps.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ledger_journals j JOIN gateway_requests g ON g.id = j.gateway_request_id
        WHERE g.listing_id = $1`,
      [listingId],
    );
    expect(rows[0]!.n).toBeGreaterThan(0);
    return rows[0]!.n;
  }, 10_000);

describe('a paid call whose connection drops', () => {
  it('before the paid retry reached the gateway: history has nothing, the same proof is sent again', async () => {
    const { client, wallet } = await buyer();
    const payToBefore = await usdcBalanceOf(stack.solana, stack.solanaPayTo);
    const events: ProgressEvent[] = [];
    relay.dropRequest('x-crochet-payment-tx');

    const result = await client.call(quick, { q: 1 }, { onProgress: (e) => events.push(e) });
    expect(result.status).toBe(200);
    expect(await result.text()).toBe('done');
    expect(relay.cuts).toBe(1);
    expect(events.map((e) => e.phase)).toEqual(['payment_required', 'paying', 'paid', 'recovering']);

    // One transfer on chain, one call to the seller, one journal.
    expect(await usdcBalanceOf(stack.solana, wallet.address)).toBe(990_000n);
    expect(await usdcBalanceOf(stack.solana, stack.solanaPayTo)).toBe(payToBefore + 10_000n);
    expect(seller.requests.filter((r) => r.url.endsWith('/quick'))).toHaveLength(1);
    expect(await journalsOf(quick)).toBe(1);
  });

  it('mid-stream: reported as paid and served from the history; resuming with the proof does not pay again', async () => {
    const { client, wallet } = await buyer();
    const payToBefore = await usdcBalanceOf(stack.solana, stack.solanaPayTo);
    relay.cutAnswer('chunk 2');

    const result = await client.call(dripping, { q: 2 });
    expect(result.status).toBe(200);
    const cut = await result.text().catch((error: unknown) => error);
    expect(cut).toBeInstanceOf(CrochetClientError);
    const { code, details } = cut as CrochetClientError;
    expect(code).toBe('CALL_INTERRUPTED');
    expect(details['outcome']).toBe('paid');
    expect(details['gatewayRequest']).toMatchObject({
      id: result.requestId,
      status: 'client_aborted',
      http_status: 200,
      refund: null,
    });

    // Resuming with the proof of that call: the gateway names the request it paid for; nothing is paid again.
    const again = await client
      .call(dripping, { q: 2 }, { proof: result.payment! })
      .catch((error: unknown) => error as CrochetClientError);
    expect(again).toBeInstanceOf(CrochetClientError);
    expect((again as CrochetClientError).details['gatewayRequest']).toMatchObject({ id: result.requestId });

    expect(await usdcBalanceOf(stack.solana, wallet.address)).toBe(990_000n);
    expect(await usdcBalanceOf(stack.solana, stack.solanaPayTo)).toBe(payToBefore + 10_000n);
    expect(seller.requests.filter((r) => r.url.endsWith('/drip'))).toHaveLength(1);
    expect(await journalsOf(dripping)).toBe(1);
  });
});
