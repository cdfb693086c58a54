import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createFundedWallet, transferUsdcWithMemo } from '@crochet/dev-chains';
import { decodePaymentRequiredHeader } from '@x402/core/http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PaymentStack, startPaymentStack } from './payment-stack.js';
import { eventually, startSeller, type TestSeller } from './stack.js';

let stack: PaymentStack;
let seller: TestSeller;
let listingId: string;
let buyerKey: string;

beforeAll(async () => {
  stack = await startPaymentStack();
  seller = await startSeller();
  const sellerAgent = await stack.plane.register('seller');
  buyerKey = (await stack.plane.register('buyer')).apiKey;
  const { listing } = await stack.plane.createListing(sellerAgent.apiKey, {
    pricing_model: 'per_call',
    price: { amount: '0.01' },
    private_endpoint_url: `${seller.url}/paid`,
  });
  listingId = listing.id;
}, 60_000);
afterAll(async () => {
  await seller.close();
  await stack?.stop();
});

const call = (headers: Record<string, string> = {}, subPath = '') =>
  fetch(`${stack.proxies[0]!.url}/api/v1/gateway/${listingId}${subPath}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${buyerKey}`, 'content-type': 'application/json', ...headers },
    body: '{"q":1}',
  });

describe('a per_call listing paid by a direct Solana USDC transfer', () => {
  it('answers 402 with x402 requirements, then forwards once the transfer is presented, exactly once', async () => {
    const unpaid = await call();
    expect(unpaid.status).toBe(402);
    const required = decodePaymentRequiredHeader(unpaid.headers.get('payment-required')!);
    expect(required.x402Version).toBe(2);
    expect(required.accepts[0]!.network).toBe(stack.solana.caip2);
    expect(required.accepts[0]!.amount).toBe('10000');
    const body = (await unpaid.json()) as any;
    expect(body.error.code).toBe('PAYMENT_REQUIRED');
    const paymentRequestId = body.payment.payment_request_id;
    expect(paymentRequestId).toMatch(/^pay_/);
    expect(seller.requests).toHaveLength(0);

    const buyerWallet = await createFundedWallet(stack.solana, { sol: 1, usdcAtomic: 1_000_000n });
    const signature = await transferUsdcWithMemo(
      stack.solana,
      buyerWallet.signer,
      stack.solanaPayTo,
      10_000n,
      paymentRequestId,
    );
    const proof = { 'x-crochet-payment-tx': `${stack.solana.caip2}:${signature}` };
    const paid = await call(proof);
    const text = await paid.text();
    expect(paid.status, text).toBe(200);
    expect(seller.requests).toHaveLength(1);
    const requestId = paid.headers.get('x-crochet-request-id');

    const again = await call(proof);
    expect(again.status).toBe(409);
    const reused = (await again.json()) as any;
    expect(reused.error.code).toBe('PAYMENT_ALREADY_USED');
    expect(reused.error.gateway_request_id).toBe(requestId);
    expect(seller.requests).toHaveLength(1);
  });

  it('refuses a wrong memo, an underpayment and a transfer to someone else', async () => {
    const wallet = await createFundedWallet(stack.solana, { sol: 1, usdcAtomic: 1_000_000n });
    const unpaid = (await (await call()).json()) as any;
    const id = unpaid.payment.payment_request_id;

    const wrongMemo = await transferUsdcWithMemo(
      stack.solana,
      wallet.signer,
      stack.solanaPayTo,
      10_000n,
      'pay_01M8H4C1P9JHV629DV3713W3NR',
    );
    const r1 = await call({ 'x-crochet-payment-tx': `${stack.solana.caip2}:${wrongMemo}` });
    expect([r1.status, ((await r1.json()) as any).error.code]).toEqual([402, 'PAYMENT_MEMO_MISMATCH']);

    const under = await transferUsdcWithMemo(stack.solana, wallet.signer, stack.solanaPayTo, 9_999n, id);
    const r2 = await call({ 'x-crochet-payment-tx': `${stack.solana.caip2}:${under}` });
    expect([r2.status, ((await r2.json()) as any).error.code]).toEqual([402, 'PAYMENT_UNDERPAID']);

    const stranger = await createFundedWallet(stack.solana, { sol: 1 });
    const elsewhere = await transferUsdcWithMemo(stack.solana, wallet.signer, stranger.address, 10_000n, id);
    const r3 = await call({ 'x-crochet-payment-tx': `${stack.solana.caip2}:${elsewhere}` });
    expect([r3.status, ((await r3.json()) as any).error.code]).toEqual([402, 'PAYMENT_WRONG_RECIPIENT']);
    expect(seller.requests).toHaveLength(1);
  });

  it('refuses a NUL in the sub-path (400) before anything is paid or forwarded: the proof pays the next call', async () => {
    const wallet = await createFundedWallet(stack.solana, { sol: 1, usdcAtomic: 1_000_000n });
    const id = ((await (await call()).json()) as any).payment.payment_request_id;
    const signature = await transferUsdcWithMemo(stack.solana, wallet.signer, stack.solanaPayTo, 10_000n, id);
    const proof = { 'x-crochet-payment-tx': `${stack.solana.caip2}:${signature}` };
    const before = seller.requests.length;
    const refused = await call(proof, '/x%00y');
    expect([refused.status, ((await refused.json()) as any).error.code]).toEqual([400, 'VALIDATION_FAILED']);
    expect(seller.requests.length).toBe(before);
    const served = await call(proof, '/x');
    expect(served.status, await served.text()).toBe(200);
  });

  it('gives the proof back when the seller cannot even be connected to: nothing charged, the proof pays again', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const closedPort = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const sellerAgent = await stack.plane.register('unreachable seller');
    const unreachable = (
      await stack.plane.createListing(sellerAgent.apiKey, {
        pricing_model: 'per_call',
        price: { amount: '0.01' },
        private_endpoint_url: `http://127.0.0.1:${closedPort}/gone`,
      })
    ).listing.id;
    const callUnreachable = (headers: Record<string, string> = {}) =>
      fetch(`${stack.proxies[0]!.url}/api/v1/gateway/${unreachable}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${buyerKey}`, 'content-type': 'application/json', ...headers },
        body: '{}',
      });
    const unpaid = await eventually(async () => {
      const res = await callUnreachable();
      expect(res.status).toBe(402);
      return (await res.json()) as any;
    });
    const wallet = await createFundedWallet(stack.solana, { sol: 1, usdcAtomic: 1_000_000n });
    const signature = await transferUsdcWithMemo(
      stack.solana,
      wallet.signer,
      stack.solanaPayTo,
      10_000n,
      unpaid.payment.payment_request_id,
    );
    const proof = { 'x-crochet-payment-tx': `${stack.solana.caip2}:${signature}` };
    for (let i = 0; i < 2; i++) {
      const res = await callUnreachable(proof);
      expect([res.status, ((await res.json()) as any).error.code]).toEqual([502, 'UPSTREAM_UNAVAILABLE']);
    }
    await stack.plane.eventsConsumer.drain();
    const { rows } = await stack.plane.deps.pool.query(
      `SELECT status, payment -> 'outcome' ->> 'status' AS outcome,
              (SELECT count(*)::int FROM ledger_journals j WHERE j.gateway_request_id = g.id) AS journals
         FROM gateway_requests g WHERE listing_id = $1 AND payment ? 'rail'`,
      [unreachable],
    );
    expect(rows).toEqual([
      { status: 'upstream_error', outcome: 'released', journals: 0 },
      { status: 'upstream_error', outcome: 'released', journals: 0 },
    ]);
  });
});
