import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { devPublicClient, mintUsdc, usdcBalance } from '@crochet/dev-chains';
import { redisKeys } from '@crochet/protocol';
import { encodePaymentSignatureHeader } from '@x402/core/http';
import { toClientEvmSigner } from '@x402/evm';
import { ExactEvmScheme } from '@x402/evm/exact/client';
import { decodePaymentResponseHeader, x402Client } from '@x402/fetch';
import { Redis } from 'ioredis';
import type { Hash } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_REDIS_URL } from '../../control-plane/test/helpers.js';
import { createPaidListing, type PaymentStack, paymentRequiredOf, startPaymentStack } from './payment-stack.js';
import { gatewayCall, type RawResponse, startSeller, type TestSeller } from './stack.js';

/**
 * Several proxies settle x402 EVM payments with one settler key (`CROCHET_EVM_SETTLER_KEY`). Each pays gas from the
 * same account, so their transactions share one nonce sequence; the proxies pick nonces under a lease in Redis
 * (plugins/src/payments/settler-nonces.ts). Two proxies × 20 concurrent settlements: 40 settled, 40 consecutive
 * nonces, nothing left in the pool. A proxy that died holding the lease delays settlements until the lease expires,
 * a hole in the nonces (a broadcast dropped from the pool) is refilled instead of blocking what follows, and a
 * broadcast whose answer was lost is sent again as the same transaction, never as a second one.
 */

let stack: PaymentStack;
let seller: TestSeller;
let listing: string;
let buyerKey: string;
let redis: Redis;
let keys: { lease: string; nonce: string };
const PRICE = 100_000n;
const buyer = () => privateKeyToAccount(stack.evm.accounts[2]!.privateKey);
const settler = () => privateKeyToAccount(stack.evm.accounts[8]!.privateKey).address;

beforeAll(async () => {
  stack = await startPaymentStack({ proxies: 2 });
  seller = await startSeller();
  const sellerAgent = await stack.plane.register('seller');
  buyerKey = (await stack.plane.register('buyer')).apiKey;
  listing = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/paid`, '0.10');
  await mintUsdc(stack.evm, buyer().address, 100n * PRICE);
  redis = new Redis(TEST_REDIS_URL);
  const prefix = redisKeys(stack.plane.config.redisPrefix);
  keys = {
    lease: prefix.settlerLease(stack.evm.chainId, settler()),
    nonce: prefix.settlerNonce(stack.evm.chainId, settler()),
  };
}, 60_000);
afterAll(async () => {
  redis?.disconnect();
  await seller?.close();
  await stack?.stop();
});

const anvil = async <T>(method: string, params: unknown[] = []): Promise<T> => {
  const res = await fetch(stack.evm.rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  return ((await res.json()) as { result: T }).result;
};
const nonceOf = async (tag: 'latest' | 'pending') =>
  Number(await anvil<string>('eth_getTransactionCount', [settler(), tag]));

/** `n` x402 payments for the listing (EIP-3009 authorizations from the buyer, each with its own nonce). */
const payments = async (n: number): Promise<Record<string, string>[]> => {
  const client = new x402Client().register(
    stack.evm.caip2 as `${string}:${string}`,
    new ExactEvmScheme(toClientEvmSigner(buyer(), devPublicClient(stack.evm))),
  );
  client.setSpendControls({ allowedAssets: [{ network: stack.evm.caip2, asset: stack.evm.usdc }] });
  const required = paymentRequiredOf(await gatewayCall(stack.proxies[0]!, listing, buyerKey, { body: {} }))!;
  const out: Record<string, string>[] = [];
  for (let i = 0; i < n; i++) {
    out.push({ 'payment-signature': encodePaymentSignatureHeader(await client.createPaymentPayload(required)) });
  }
  return out;
};

const settledTx = (res: RawResponse): Hash => {
  expect(res.status, res.text).toBe(200);
  return decodePaymentResponseHeader(res.headers['payment-response'] as string).transaction as Hash;
};

/** Every settlement mined and successful, one per nonce, none waiting in the pool. */
const expectAllMined = async (txs: Hash[], nonceBefore: number) => {
  expect(new Set(txs).size).toBe(txs.length);
  const client = devPublicClient(stack.evm);
  const mined = await Promise.all(txs.map((hash) => client.getTransaction({ hash })));
  expect(mined.map((t) => t.nonce).sort((a, b) => a - b)).toEqual(txs.map((_, i) => nonceBefore + i));
  for (const hash of txs) expect((await client.getTransactionReceipt({ hash })).status).toBe('success');
  expect(await nonceOf('latest')).toBe(nonceBefore + txs.length);
  expect(await nonceOf('pending')).toBe(nonceBefore + txs.length);
  expect(await anvil<{ pending: string; queued: string }>('txpool_status')).toEqual({ pending: '0x0', queued: '0x0' });
};

describe('one settler key, several proxies', () => {
  it('two proxies × 20 concurrent x402 settlements: 40 settled on consecutive nonces, none stuck', async () => {
    const proofs = await payments(40);
    const nonceBefore = await nonceOf('latest');
    const payToBefore = await usdcBalance(stack.evm, stack.evmPayTo);
    // As the docs tell a buyer: a 503 (a store or the settler busy beyond its budget on a loaded machine) is retried
    // with the same proof, which pays once whatever happened to the first try.
    const callPaying = async (headers: Record<string, string>, i: number) => {
      for (let attempt = 0; ; attempt++) {
        const res = await gatewayCall(stack.proxies[i % 2]!, listing, buyerKey, { body: { q: String(i) }, headers });
        if (res.status !== 503 || attempt === 4) return res;
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    };
    const answers = await Promise.all(proofs.map(callPaying));
    const txs = answers.map(settledTx);
    expect(seller.requests).toHaveLength(40);
    await expectAllMined(txs, nonceBefore);
    expect(await usdcBalance(stack.evm, stack.evmPayTo)).toBe(payToBefore + 40n * PRICE);
    // The lease was given back.
    expect(await redis.exists(keys.lease)).toBe(0);
  });

  it('a proxy that died holding the lease delays settlements until it expires; nothing is skipped', async () => {
    const proofs = await payments(4);
    const nonceBefore = await nonceOf('latest');
    // What a proxy killed between taking the lease and giving it back leaves behind.
    await redis.set(keys.lease, 'a-proxy-that-died', 'PX', 1_500);
    const started = Date.now();
    const answers = await Promise.all(
      proofs.map((headers, i) => gatewayCall(stack.proxies[i % 2]!, listing, buyerKey, { body: {}, headers })),
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
    await expectAllMined(answers.map(settledTx), nonceBefore);
  });

  it('a hole in the nonces (a broadcast dropped from the pool) is refilled, not waited on forever', async () => {
    const [proof] = await payments(1);
    const nonceBefore = await nonceOf('latest');
    // The proxies believe three more transactions went out than the chain ever saw, and the chain has stood still
    // there for longer than the hole wait.
    await redis.hset(keys.nonce, { next: nonceBefore + 3, stuck_at: nonceBefore, stuck_since: Date.now() - 60_000 });
    const answer = await gatewayCall(stack.proxies[1]!, listing, buyerKey, { body: {}, headers: proof! });
    await expectAllMined([settledTx(answer)], nonceBefore);
    expect(await redis.hget(keys.nonce, 'next')).toBe(String(nonceBefore + 1));
  });

  it('a broadcast whose answer is lost is sent again as the same transaction: one settlement, one nonce', async () => {
    // An RPC in front of anvil that passes the next eth_sendRawTransaction on and then drops the connection.
    let dropNextSend = true;
    let sends = 0;
    const lossy: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', async () => {
        const body = Buffer.concat(chunks);
        const upstream = await fetch(stack.evm.rpcUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
        });
        const answer = Buffer.from(await upstream.arrayBuffer());
        if (body.includes('eth_sendRawTransaction')) {
          sends += 1;
          if (dropNextSend) {
            dropNextSend = false;
            req.socket.destroy();
            return;
          }
        }
        res.writeHead(upstream.status, { 'content-type': 'application/json' }).end(answer);
      });
    });
    await new Promise<void>((resolve) => lossy.listen(0, '127.0.0.1', resolve));
    try {
      const proxy = await stack.addProxy({
        ...stack.proxyEnv,
        CROCHET_EVM_RPC_URL: `http://127.0.0.1:${(lossy.address() as AddressInfo).port}`,
      });
      const [proof] = await payments(1);
      const nonceBefore = await nonceOf('latest');
      const answer = await gatewayCall(proxy, listing, buyerKey, { body: {}, headers: proof! });
      await expectAllMined([settledTx(answer)], nonceBefore);
      // Sent twice, the second time as the very same bytes (anvil had mined the first): one transaction.
      expect(sends).toBe(2);
    } finally {
      lossy.closeAllConnections();
      await new Promise((resolve) => lossy.close(resolve));
    }
  });
});
