import { createFundedWallet, mintUsdc, usdcBalance, usdcBalanceOf } from '@crochet/dev-chains';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPaidListing, type PaymentStack } from '../../proxy/test/payment-stack.js';
import { eventually, startSeller, type TestSeller } from '../../proxy/test/stack.js';
import { Budget, Crochet, CrochetClientError, type ProgressEvent } from '../src/index.js';
import { startSdkStack } from './sdk-stack.js';

/**
 * The SDK against the real stack on the dev chains: it registers with proof of work, finds a listing, and calls it —
 * free, then paid by a direct Solana transfer, x402 on Solana and x402 on EVM — each paid call paid exactly once on
 * chain, booked once in the ledger, answered once by the seller, with a receipt that verifies against the JWKS.
 */

let stack: PaymentStack;
let seller: TestSeller;
let sellerKey: string;
let freeListing: string;
let solanaListing: string;
let evmListing: string;

beforeAll(async () => {
  stack = await startSdkStack();
  seller = await startSeller();
  sellerKey = (await stack.plane.register('seller')).apiKey;
  freeListing = (
    await stack.plane.createListing(sellerKey, {
      name: 'Free echo',
      description: 'Echoes the body, free',
      private_endpoint_url: `${seller.url}/free`,
    })
  ).listing.id;
  solanaListing = await createPaidListing(stack, sellerKey, `${seller.url}/cheap`, '0.01', { name: 'Cheap echo' });
  evmListing = await createPaidListing(stack, sellerKey, `${seller.url}/dear`, '0.10', { name: 'Dear echo' });
}, 60_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

const baseUrl = () => stack.proxies[0]!.url;

/** Journals booked for a gateway request, once its events reached the ledger (completions are sent batched). */
const journals = async (requestId: string) => {
  const count = async () => {
    await stack.plane.eventsConsumer.drain();
    const { rows } = await stack.plane.deps.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM ledger_journals WHERE gateway_request_id = $1',
      [requestId],
    );
    return rows[0]!.n;
  };
  return eventually(async () => {
    const n = await count();
    expect(n).toBeGreaterThan(0);
    return n;
  }, 10_000);
};

describe('the buyer SDK', () => {
  it('registers with proof of work, searches listings and makes a free call', async () => {
    const client = new Crochet({ baseUrl: baseUrl() });
    const registered = await client.register({ name: 'sdk buyer' });
    expect(registered.api_key).toMatch(/^am_k_/);
    expect(client.apiKey).toBe(registered.api_key);

    const found = await client.listings.search({ q: 'Free echo' });
    expect(found.data.map((l) => l.id)).toContain(freeListing);

    const result = await client.call(freeListing, { hello: 'world' });
    expect(result.status).toBe(200);
    expect(result.payment).toBeNull();
    expect(await result.json()).toEqual({ echo: '{"hello":"world"}' });
    expect(result.requestId).toMatch(/^gr_/);
  });

  it('pays a 402 with a direct Solana transfer, once, and verifies the receipt', async () => {
    const wallet = await createFundedWallet(stack.solana, { sol: 1, usdcAtomic: 1_000_000n });
    const client = new Crochet({
      baseUrl: baseUrl(),
      wallets: { solana: { signer: wallet.signer, rpcUrl: stack.solana.rpcUrl } },
    });
    await client.register({ name: 'solana buyer' });
    const before = await usdcBalanceOf(stack.solana, stack.solanaPayTo);
    const events: ProgressEvent[] = [];

    const result = await client.call(solanaListing, { q: 1 }, { maxPrice: '0.01', onProgress: (e) => events.push(e) });
    expect(result.status).toBe(200);
    expect(await result.text()).toBe('{"echo":"{\\"q\\":1}"}');
    expect(result.payment?.rail).toBe('solana-transfer');
    expect(result.price).toBe('0.01');
    expect(events.map((e) => e.phase)).toEqual(['payment_required', 'paying', 'paid']);

    expect(await usdcBalanceOf(stack.solana, stack.solanaPayTo)).toBe(before + 10_000n);
    expect(await usdcBalanceOf(stack.solana, wallet.address)).toBe(990_000n);
    expect(await journals(result.requestId!)).toBe(1);

    const header = await client.receipts.verify(result.headerReceipt!, { requestId: result.requestId! });
    expect(header, JSON.stringify(header)).toMatchObject({ valid: true });
    const full = await result.receipt();
    expect(full).toMatchObject({ valid: true, claims: { sub: result.requestId, status: 200, amount: '10000' } });
    // A receipt whose amount was changed does not verify.
    const [head, claims, signature] = full.jws.split('.');
    const changed = { ...JSON.parse(Buffer.from(claims!, 'base64url').toString()), amount: '1' };
    const tampered = `${head}.${Buffer.from(JSON.stringify(changed)).toString('base64url')}.${signature}`;
    expect((await client.receipts.verify(tampered)).valid).toBe(false);
  });

  it('pays with x402 on Solana (the gateway pays the fee) and with x402 on EVM', async () => {
    const solanaWallet = await createFundedWallet(stack.solana, { sol: 0, usdcAtomic: 1_000_000n });
    const evmAccount = privateKeyToAccount(stack.evm.accounts[3]!.privateKey);
    await mintUsdc(stack.evm, evmAccount.address, 1_000_000n);
    const client = new Crochet({
      baseUrl: baseUrl(),
      wallets: { solana: { signer: solanaWallet.signer, rpcUrl: stack.solana.rpcUrl }, evm: { account: evmAccount } },
    });
    await client.register({ name: 'x402 buyer' });

    const svm = await client.call(solanaListing, { q: 'svm' }, { rail: 'x402-svm' });
    expect(svm.status).toBe(200);
    expect(await svm.json()).toEqual({ echo: '{"q":"svm"}' });
    expect(svm.settlement).toMatchObject({ success: true, network: stack.solana.caip2 });
    expect(await usdcBalanceOf(stack.solana, solanaWallet.address)).toBe(990_000n);

    const payToBefore = await usdcBalance(stack.evm, stack.evmPayTo);
    const evm = await client.call(evmListing, { q: 'evm' }, { rail: 'x402-evm' });
    expect(evm.status).toBe(200);
    expect(await evm.json()).toEqual({ echo: '{"q":"evm"}' });
    expect(evm.settlement).toMatchObject({ success: true, network: stack.evm.caip2 });
    expect(await usdcBalance(stack.evm, stack.evmPayTo)).toBe(payToBefore + 100_000n);
    expect(await usdcBalance(stack.evm, evmAccount.address)).toBe(900_000n);
    for (const id of [svm.requestId!, evm.requestId!]) expect(await journals(id)).toBe(1);
    expect((await evm.receipt()).valid).toBe(true);

    // History finds each call by the proof the SDK holds.
    const byProof = await client.history.list({ payment_proof: evm.payment!.proofId });
    expect(byProof.data.map((r) => r.id)).toContain(evm.requestId);
  });

  it('refuses a price above maxPrice or the budget before paying anything', async () => {
    const wallet = await createFundedWallet(stack.solana, { sol: 1, usdcAtomic: 1_000_000n });
    const client = new Crochet({
      baseUrl: baseUrl(),
      wallets: { solana: { signer: wallet.signer, rpcUrl: stack.solana.rpcUrl } },
    });
    await client.register({ name: 'careful buyer' });
    const forwarded = seller.requests.length;

    await expect(client.call(evmListing, {}, { maxPrice: '0.05' })).rejects.toMatchObject({
      code: 'MAX_PRICE_EXCEEDED',
    });
    const budget = new Budget('0.015');
    expect((await client.call(solanaListing, {}, { budget })).status).toBe(200);
    const refused = await client.call(solanaListing, {}, { budget }).catch((e) => e);
    expect(refused).toBeInstanceOf(CrochetClientError);
    expect(refused.code).toBe('BUDGET_EXCEEDED');
    expect(budget.spentAtomic).toBe(10_000n);
    // One paid call reached the seller; the refused ones moved no money.
    expect(seller.requests.length).toBe(forwarded + 1);
    expect(await usdcBalanceOf(stack.solana, wallet.address)).toBe(990_000n);
  });
});
