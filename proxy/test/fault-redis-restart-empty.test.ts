import { createFundedWallet, devPublicClient, mintUsdc, transferUsdc, transferUsdcWithMemo } from '@crochet/dev-chains';
import { encodePaymentSignatureHeader } from '@x402/core/http';
import { toClientEvmSigner } from '@x402/evm';
import { ExactEvmScheme } from '@x402/evm/exact/client';
import { x402Client } from '@x402/fetch';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type PostgresProcess,
  type RedisProcess,
  startPostgresProcess,
  startRedisProcess,
} from '../../control-plane/test/fault-services.js';
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
import { eventually, expectApiError, gatewayCall, rawRequest, startSeller, type TestSeller } from './stack.js';

/**
 * DESIGN §2 durability rule, against a real redis-server killed and restarted empty (and a PostgreSQL of the test's
 * own): the proxies notice the new Redis by its epoch, paid calls wait until the control plane has restored config,
 * consumed proofs and spend from PostgreSQL, and then a proof that paid once never pays again — on every rail — while
 * a payment request issued before the loss stays payable. Config changes made after the restart reach the proxies.
 * And when the control plane had not committed a paid call yet, the proxy that served it puts it back.
 */

let redisServer: RedisProcess;
let postgres: PostgresProcess;
let stack: PaymentStack;
let seller: TestSeller;
let sellerKey: string;
let paid: string;
let free: string;
let evmBuyer: { apiKey: string; agentId: string; address: `0x${string}` };
let solver: `0x${string}`;
const PRICE = 100_000n;

beforeAll(async () => {
  [redisServer, postgres] = await Promise.all([startRedisProcess(), startPostgresProcess()]);
  stack = await startPaymentStack({
    proxies: 2,
    services: { redisUrl: redisServer.url, databaseUrl: postgres.url },
  });
  seller = await startSeller();
  sellerKey = (await stack.plane.register('seller')).apiKey;
  evmBuyer = await registerVerifiedEvmBuyer(stack, 'evm buyer', stack.evm.accounts[4]!.privateKey);
  solver = stack.evm.accounts[5]!.privateKey;
  await mintUsdc(stack.evm, privateKeyToAccount(solver).address, 10_000_000n);
  await mintUsdc(stack.evm, evmBuyer.address, 10_000_000n);
  paid = await createPaidListing(stack, sellerKey, `${seller.url}/paid`, '0.10');
  free = (await stack.plane.createListing(sellerKey, { private_endpoint_url: `${seller.url}/free` })).listing.id;
}, 120_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
  await redisServer?.stop();
  await postgres?.destroy();
});

const [a, b] = [0, 1];
const proxy = (i: number) => stack.proxies[i]!;
const call = (i: number, headers: Record<string, string> = {}, key = evmBuyer.apiKey) =>
  gatewayCall(proxy(i), paid, key, { headers });
const servedPaid = () => seller.requests.filter((r) => r.url === '/paid').length;

/** A Solana transfer against a given payment request (one issued before a restart, say). */
const solanaProof = async (paymentRequestId: string) => {
  const wallet = await createFundedWallet(stack.solana, { sol: 1, usdcAtomic: 1_000_000n });
  const signature = await transferUsdcWithMemo(stack.solana, wallet.signer, stack.solanaPayTo, PRICE, paymentRequestId);
  return paymentTx(stack.solana.caip2, signature);
};
const x402Proof = async () => {
  const client = new x402Client().register(
    stack.evm.caip2 as `${string}:${string}`,
    new ExactEvmScheme(
      toClientEvmSigner(privateKeyToAccount(stack.evm.accounts[4]!.privateKey), devPublicClient(stack.evm)),
    ),
  );
  client.setSpendControls({ allowedAssets: [{ network: stack.evm.caip2, asset: stack.evm.usdc }] });
  const unpaid = await call(a);
  return {
    'payment-signature': encodePaymentSignatureHeader(await client.createPaymentPayload(paymentRequiredOf(unpaid)!)),
  };
};

/** Kills Redis and starts it again, empty; resolves when both proxies have adopted the new epoch. */
const restartEmpty = async () => {
  const before = proxy(a).state.current;
  await redisServer.kill();
  await redisServer.start();
  return before;
};
const adopted = async (old: string | null, timeoutMs = 15_000) =>
  eventually(async () => {
    for (const p of stack.proxies) {
      const ready = await rawRequest(p.url, '/readyz', { method: 'GET' });
      expect(ready.status, ready.text).toBe(200);
      expect(ready.json.data.redis_epoch).not.toBe(old);
    }
  }, timeoutMs);

describe('Redis killed and restarted empty', () => {
  it('pays once, ever, on every rail; keeps earlier payment requests payable; takes config changes made after', async () => {
    // Before: one paid call per rail (on either proxy), committed to PostgreSQL.
    const proofs = {
      solana: await paySolana(stack, paid, evmBuyer.apiKey, PRICE),
      evm: paymentTx(
        stack.evm.caip2,
        await transferUsdc(stack.evm, stack.evm.accounts[4]!.privateKey, stack.evmPayTo, PRICE),
      ),
      relay: await payThroughRelay(stack, solver, evmBuyer.address, PRICE),
      x402: await x402Proof(),
    };
    const servedBy: Record<string, string> = {};
    for (const [rail, proof] of Object.entries(proofs)) {
      const res = await call(rail === 'relay' ? b : a, proof);
      expect(res.status, `${rail}: ${res.text}`).toBe(200);
      servedBy[rail] = res.headers['x-crochet-request-id'] as string;
    }
    const issuedBefore = (await call(b)).json.payment.payment_request_id as string;
    const served = servedPaid();
    await stack.plane.eventsConsumer.drain();
    const revokeLater = await stack.plane.register('revoked after');

    const old = await restartEmpty();
    // Free calls go on from the config in memory while Redis is restored.
    const duringRestore = await gatewayCall(proxy(b), free, evmBuyer.apiKey);
    expect(duringRestore.status, duringRestore.text).toBe(200);
    await adopted(old);

    for (const [rail, proof] of Object.entries(proofs)) {
      for (const i of [a, b]) {
        const replay = await call(i, proof);
        expectApiError(replay, 409, 'PAYMENT_ALREADY_USED');
        expect(replay.json.error.gateway_request_id, rail).toBe(servedBy[rail]);
      }
    }
    expect(servedPaid()).toBe(served);

    // A payment request issued before the loss is still payable (its id proves itself).
    const late = await call(a, await solanaProof(issuedBefore));
    expect(late.status, late.text).toBe(200);

    // Config changed after the restart reaches both proxies.
    const me = await stack.plane.call('GET', '/api/v1/me', { key: revokeLater.apiKey });
    const second = await stack.plane.call('POST', '/api/v1/keys', { key: revokeLater.apiKey, body: { name: 'b' } });
    await stack.plane.call('DELETE', `/api/v1/keys/${me.body.data.current_key_id}`, { key: second.body.data.api_key });
    const created = (await stack.plane.createListing(sellerKey, { private_endpoint_url: `${seller.url}/new` })).listing;
    await eventually(async () => {
      for (const i of [a, b]) {
        expectApiError(await gatewayCall(proxy(i), free, revokeLater.apiKey), 401, 'API_KEY_REVOKED');
        expect((await gatewayCall(proxy(i), created.id, evmBuyer.apiKey)).status).toBe(200);
      }
    }, 3_000);
  });

  it('puts back a paid call the control plane had not committed: paid calls wait, the proof never pays again, the call is booked once', async () => {
    const proof = await paySolana(stack, paid, evmBuyer.apiKey, PRICE);
    // The control plane cannot commit anything: PostgreSQL answers nothing.
    postgres.pause();
    let resumed = false;
    try {
      const res = await call(a, proof);
      expect(res.status, res.text).toBe(200);
      const requestId = res.headers['x-crochet-request-id'] as string;
      const served = servedPaid();

      const old = await restartEmpty();
      // Paid calls wait for the restore (which needs PostgreSQL); the proxy that served the call has already marked
      // its proof used again in the new Redis.
      await eventually(async () => {
        const waiting = await call(b, proof);
        expectApiError(waiting, 503, 'STATE_UNAVAILABLE');
        expect(Number(waiting.headers['retry-after'])).toBeGreaterThan(0);
      }, 5_000);
      postgres.resume();
      resumed = true;
      await adopted(old, 30_000);
      for (const i of [a, b]) {
        const replay = await call(i, proof);
        expectApiError(replay, 409, 'PAYMENT_ALREADY_USED');
        expect(replay.json.error.gateway_request_id).toBe(requestId);
      }
      expect(servedPaid()).toBe(served);
      await eventually(async () => {
        await stack.plane.eventsConsumer.drain();
        const { rows } = await stack.plane.deps.pool.query(
          `SELECT g.status, (SELECT count(*)::int FROM ledger_journals j WHERE j.gateway_request_id = g.id) AS journals
             FROM gateway_requests g WHERE g.id = $1`,
          [requestId],
        );
        expect(rows).toEqual([{ status: 'completed', journals: 1 }]);
      }, 30_000);
    } finally {
      if (!resumed) postgres.resume();
    }
  });
});
