import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { devPublicClient, mintUsdc, transferUsdc } from '@crochet/dev-chains';
import { encodePaymentSignatureHeader } from '@x402/core/http';
import { toClientEvmSigner } from '@x402/evm';
import { ExactEvmScheme } from '@x402/evm/exact/client';
import { x402Client } from '@x402/fetch';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProxyServer } from '../src/app.js';
import {
  createPaidListing,
  type PaymentStack,
  paymentRequiredOf,
  paymentTx,
  paySolana,
  payThroughRelay,
  registerVerifiedEvmBuyer,
  startPaymentStack,
} from './payment-stack.js';
import { expectApiError, gatewayCall, type RawResponse, startSeller, type TestSeller } from './stack.js';

/**
 * DESIGN §3.4 "pending, never failed", for every rail: a verifier that fails — Relay erroring, unreachable or
 * answering nonsense, a chain RPC erroring or down — is 503 PAYMENT_VERIFIER_UNAVAILABLE naming the rail and the
 * service, with Retry-After. Never STATE_UNAVAILABLE (our own stores are fine), never a refusal: nothing reaches the
 * seller, and the same proof pays once the verifier answers again. (A Relay request really in flight is
 * PAYMENT_PENDING: payment-relay.test.ts; a verifier slower than the deadline: payment-pending-timeout.test.ts.)
 */

let stack: PaymentStack;
let seller: TestSeller;
let listing: string;
let buyer: { apiKey: string; agentId: string; address: `0x${string}` };
let solver: `0x${string}`;
/** Answers every request HTTP 503, as an RPC provider having a bad day. */
let erroring: Server;
let erroringUrl: string;
/** A URL nothing listens on. */
let downUrl: string;
/** A proxy whose EVM RPC answers 503 and whose Solana RPC and Relay are down. */
let broken: ProxyServer;
const PRICE = 100_000n;

const listen = async (server: Server): Promise<string> => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
};

beforeAll(async () => {
  stack = await startPaymentStack();
  seller = await startSeller();
  erroring = createServer((_req, res) => res.writeHead(503, { 'content-type': 'text/plain' }).end('overloaded'));
  erroringUrl = await listen(erroring);
  const closed = createServer();
  downUrl = await listen(closed);
  await new Promise((resolve) => closed.close(resolve));
  broken = await stack.addProxy({
    ...stack.proxyEnv,
    CROCHET_EVM_RPC_URL: erroringUrl,
    CROCHET_SOLANA_RPC_URL: downUrl,
    CROCHET_RELAY_API_URL: downUrl,
  });
  const sellerAgent = await stack.plane.register('seller');
  buyer = await registerVerifiedEvmBuyer(stack, 'buyer', stack.evm.accounts[6]!.privateKey);
  listing = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/paid`, '0.10');
  solver = stack.evm.accounts[5]!.privateKey;
  await mintUsdc(stack.evm, privateKeyToAccount(solver).address, 10_000_000n);
  await mintUsdc(stack.evm, buyer.address, 10_000_000n);
}, 60_000);
afterAll(async () => {
  stack?.relay.failWith(null);
  await seller?.close();
  await new Promise((resolve) => erroring?.close(resolve));
  await stack?.stop();
});

const call = (proxy: { url: string }, headers: Record<string, string>) =>
  gatewayCall(proxy, listing, buyer.apiKey, { body: { q: 'verify' }, headers });

/** 503 PAYMENT_VERIFIER_UNAVAILABLE naming the rail and the verifier, with Retry-After; the seller not called. */
const expectVerifierUnavailable = (res: RawResponse, rail: string, verifier: RegExp, reason: RegExp) => {
  const error = expectApiError(res, 503, 'PAYMENT_VERIFIER_UNAVAILABLE');
  expect(error.rail).toBe(rail);
  expect(error.verifier).toMatch(verifier);
  expect(error.message).toMatch(reason);
  expect(error.message).not.toContain('127.0.0.1');
  expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
};

describe('a failing external verifier', () => {
  it('Relay answering 5xx: 503 naming Relay; the same request id pays once Relay is back', async () => {
    const proof = await payThroughRelay(stack, solver, buyer.address, PRICE);
    const before = seller.requests.length;
    stack.relay.failWith(502);
    try {
      expectVerifierUnavailable(await call(stack.proxies[0]!, proof), 'relay', /^Relay API$/, /answered HTTP 502/);
    } finally {
      stack.relay.failWith(null);
    }
    expect(seller.requests).toHaveLength(before);
    expect((await call(stack.proxies[0]!, proof)).status).toBe(200);
    expect(seller.requests).toHaveLength(before + 1);
  });

  it('Relay answering something unreadable, or unreachable: 503 naming Relay', async () => {
    const proof = await payThroughRelay(stack, solver, buyer.address, PRICE);
    const before = seller.requests.length;
    stack.relay.failWith('malformed');
    try {
      expectVerifierUnavailable(await call(stack.proxies[0]!, proof), 'relay', /^Relay API$/, /cannot read/);
    } finally {
      stack.relay.failWith(null);
    }
    expectVerifierUnavailable(await call(broken, proof), 'relay', /^Relay API$/, /could not be reached/);
    expect(seller.requests).toHaveLength(before);
    expect((await call(stack.proxies[0]!, proof)).status).toBe(200);
  });

  it('the EVM RPC erroring: a direct transfer gets 503 naming the chain, and pays once it answers', async () => {
    const tx = await transferUsdc(stack.evm, stack.evm.accounts[6]!.privateKey, stack.evmPayTo, PRICE);
    const before = seller.requests.length;
    const proof = paymentTx(stack.evm.caip2, tx);
    expectVerifierUnavailable(
      await call(broken, proof),
      'evm-transfer',
      new RegExp(`^EVM RPC \\(${stack.evm.caip2}\\)$`),
      /failed/,
    );
    expect(seller.requests).toHaveLength(before);
    expect((await call(stack.proxies[0]!, proof)).status).toBe(200);
  });

  it('the Solana RPC down: a direct transfer gets 503 naming the chain, and pays once it answers', async () => {
    const proof = await paySolana(stack, listing, buyer.apiKey, PRICE);
    const before = seller.requests.length;
    expectVerifierUnavailable(
      await call(broken, proof),
      'solana-transfer',
      new RegExp(`^Solana RPC \\(${stack.solana.caip2}\\)$`),
      /failed/,
    );
    expect(seller.requests).toHaveLength(before);
    expect((await call(stack.proxies[0]!, proof)).status).toBe(200);
  });

  it('the EVM RPC erroring: an x402 payment gets 503 naming the chain (not "invalid"), and settles once it answers', async () => {
    const account = privateKeyToAccount(stack.evm.accounts[6]!.privateKey);
    const client = new x402Client().register(
      stack.evm.caip2 as `${string}:${string}`,
      new ExactEvmScheme(toClientEvmSigner(account, devPublicClient(stack.evm))),
    );
    client.setSpendControls({ allowedAssets: [{ network: stack.evm.caip2, asset: stack.evm.usdc }] });
    const unpaid = await gatewayCall(stack.proxies[0]!, listing, buyer.apiKey, { body: { q: 'verify' } });
    const payload = await client.createPaymentPayload(paymentRequiredOf(unpaid)!);
    const proof = { 'payment-signature': encodePaymentSignatureHeader(payload) };
    const before = seller.requests.length;
    expectVerifierUnavailable(
      await call(broken, proof),
      'x402-exact',
      new RegExp(`^EVM RPC \\(${stack.evm.caip2}\\)$`),
      /failed/,
    );
    expect(seller.requests).toHaveLength(before);
    const paid = await call(stack.proxies[0]!, proof);
    expect(paid.status, paid.text).toBe(200);
    expect(seller.requests).toHaveLength(before + 1);
  });
});
