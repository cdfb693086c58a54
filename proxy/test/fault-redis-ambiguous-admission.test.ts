import { mintUsdc } from '@crochet/dev-chains';
import { redisKeys } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisProcess, startRedisProcess } from '../../control-plane/test/fault-services.js';
import {
  createPaidListing,
  type PaymentStack,
  paySolana,
  payThroughRelay,
  registerVerifiedEvmBuyer,
  startPaymentStack,
} from './payment-stack.js';
import { eventually, expectApiError, gatewayCall, startSeller, type TestSeller } from './stack.js';
import { startTcpRelay, type TcpRelay } from './tcp-relay.js';

/**
 * DESIGN §2: "Unknown" (a Redis script that timed out) is a state to resolve, never assumed to be "nothing happened".
 * Against a real redis-server: paused (SIGSTOP) while a paid call is admitted, and, through a TCP relay, with its
 * replies held back while it goes on executing. The call is resolved before the buyer is told anything; when Redis
 * stays silent past the resolve budget, the buyer is told to retry with the same proof: the abandoned call is
 * recorded refused with its proof given back, and the retry pays with that proof — never a 409 for a call that never
 * reached the seller, never a second payment.
 */

let redisServer: RedisProcess;
let relay: TcpRelay;
let stack: PaymentStack;
let seller: TestSeller;
let sellerKey: string;
let buyer: { apiKey: string; agentId: string; address: `0x${string}` };
let solver: `0x${string}`;
let direct: Redis;
const PRICE = 100_000n;

beforeAll(async () => {
  redisServer = await startRedisProcess();
  relay = await startTcpRelay({ host: '127.0.0.1', port: redisServer.port });
  stack = await startPaymentStack({
    services: { redisUrl: redisServer.url },
    // The proxy reaches Redis through the relay; the control plane directly.
    proxyEnv: { REDIS_URL: relay.url('redis'), CROCHET_PAYMENT_RESOLVE_MS: '2500' },
  });
  seller = await startSeller();
  sellerKey = (await stack.plane.register('seller')).apiKey;
  buyer = await registerVerifiedEvmBuyer(stack, 'buyer', stack.evm.accounts[7]!.privateKey);
  solver = stack.evm.accounts[5]!.privateKey;
  await mintUsdc(stack.evm, privateKeyToAccount(solver).address, 10_000_000n);
  direct = new Redis(redisServer.url);
}, 90_000);
afterAll(async () => {
  direct?.disconnect();
  stack?.relay.setDelay(0);
  await seller?.close();
  await stack?.stop();
  await relay?.close();
  await redisServer?.stop();
});

const journals = async (id: string) =>
  (await stack.plane.deps.pool.query('SELECT kind FROM ledger_journals WHERE gateway_request_id = $1', [id])).rows;

describe('a paid admission whose outcome is unknown', () => {
  it('Redis paused 1.5 s: the call waits, is resolved, reaches the seller once and is booked once', async () => {
    const listing = await createPaidListing(stack, sellerKey, `${seller.url}/paused`, '0.10');
    const proof = await paySolana(stack, listing, buyer.apiKey, PRICE);

    redisServer.pause();
    const resume = setTimeout(() => redisServer.resume(), 1_500);
    const started = Date.now();
    const res = await gatewayCall(stack.proxies[0]!, listing, buyer.apiKey, { headers: proof });
    clearTimeout(resume);
    redisServer.resume();
    expect(res.status, res.text).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_400);
    const requestId = res.headers['x-crochet-request-id'] as string;
    expect(seller.requests.filter((r) => r.url === '/paused')).toHaveLength(1);

    const replay = await gatewayCall(stack.proxies[0]!, listing, buyer.apiKey, { headers: proof });
    expectApiError(replay, 409, 'PAYMENT_ALREADY_USED');
    expect(replay.json.error.gateway_request_id).toBe(requestId);
    await eventually(async () => {
      await stack.plane.eventsConsumer.drain();
      expect(await journals(requestId)).toEqual([{ kind: 'payment' }]);
    }, 10_000);
  });

  it('replies held past the resolve budget: 503 "retry with the same proof", the proof is given back, the retry pays with it once', async () => {
    const listing = await createPaidListing(stack, sellerKey, `${seller.url}/held`, '0.10');
    const proof = await payThroughRelay(stack, solver, buyer.address, PRICE);
    const relayId = proof['x-crochet-relay-request-id']!;

    // Verification takes 400 ms (Relay is slow); while it runs, Redis's replies start being held back. The admission
    // that follows executes in Redis — it consumes the proof for this call — but its answer never arrives in time.
    stack.relay.setDelay(400);
    setTimeout(() => relay.stall(), 150);
    const unknown = await gatewayCall(stack.proxies[0]!, listing, buyer.apiKey, { headers: proof });
    expectApiError(unknown, 503, 'STATE_UNAVAILABLE');
    expect(unknown.json.error.message).toContain('same proof');
    const abandonedId = unknown.headers['x-crochet-request-id'] as string;
    expect(abandonedId).toMatch(/^gr_/);
    expect(seller.requests.filter((r) => r.url === '/held')).toHaveLength(0);

    // The network heals: the proxy learns the proof was consumed by the abandoned call and gives it back.
    stack.relay.setDelay(0);
    relay.heal();
    const keys = redisKeys(stack.plane.config.redisPrefix);
    await eventually(async () => {
      expect(await direct.get(keys.paymentUsed(`relay:${relayId.toLowerCase()}`))).toBeNull();
    }, 10_000);

    const retry = await gatewayCall(stack.proxies[0]!, listing, buyer.apiKey, { headers: proof });
    expect(retry.status, retry.text).toBe(200);
    const servedId = retry.headers['x-crochet-request-id'] as string;
    expect(servedId).not.toBe(abandonedId);
    expect(seller.requests.filter((r) => r.url === '/held')).toHaveLength(1);
    await eventually(async () => {
      await stack.plane.eventsConsumer.drain();
      const { rows } = await stack.plane.deps.pool.query(
        "SELECT id, status, payment -> 'outcome' ->> 'status' AS outcome FROM gateway_requests WHERE id = ANY ($1) ORDER BY id",
        [[abandonedId, servedId]],
      );
      expect(rows).toEqual([
        { id: abandonedId, status: 'refused', outcome: 'released' },
        { id: servedId, status: 'completed', outcome: 'settled' },
      ]);
      expect(await journals(abandonedId)).toEqual([]);
      expect(await journals(servedId)).toEqual([{ kind: 'payment' }]);
    }, 10_000);
    const replay = await gatewayCall(stack.proxies[0]!, listing, buyer.apiKey, { headers: proof });
    expectApiError(replay, 409, 'PAYMENT_ALREADY_USED');
    expect(replay.json.error.gateway_request_id).toBe(servedId);
  });
});
