import { request as httpRequest } from 'node:http';
import { createFundedWallet, transferUsdcWithMemo } from '@crochet/dev-chains';
import { CryptoBox, PaymentRequestIds } from '@crochet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type PostgresProcess,
  type RedisProcess,
  startPostgresProcess,
  startRedisProcess,
} from '../../control-plane/test/fault-services.js';
import { TEST_DATA_PLANE_KEY } from '../../control-plane/test/helpers.js';
import { createPaidListing, type PaymentStack, paymentTx, startPaymentStack } from './payment-stack.js';
import { eventually, rawRequest, startSeller, type TestSeller } from './stack.js';
import { startTcpRelay, type TcpRelay } from './tcp-relay.js';

/**
 * A randomized history check in the spirit of Jepsen: random faults (Redis paused, Redis replies held back, Redis
 * killed and restarted empty, PostgreSQL paused) under random traffic (free calls, paid calls with fresh proofs,
 * replays of proofs already used, buyers that go away mid-call, sellers that are slow, stream, or fail), on two
 * proxies. Then one checker reads what the clients saw, what the seller saw, `gateway_requests` and the ledger, and
 * holds them to the rules of DESIGN §2 and §3.5.
 *
 * Seeded: CROCHET_HISTORY_SEED replays a history; CROCHET_HISTORIES runs more of them (default 2).
 */

const HISTORIES = Number(process.env['CROCHET_HISTORIES'] ?? 2);
const HISTORY_MS = Number(process.env['CROCHET_HISTORY_MS'] ?? 7_000);
const WORKERS = 6;
const PRICE = 10_000n;

/** mulberry32: small, seedable, good enough to pick operations and faults. */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
};

let redisServer: RedisProcess;
let postgres: PostgresProcess;
let relay: TcpRelay;
let stack: PaymentStack;
let seller: TestSeller;
let free: string;
let paid: string;
let buyer: { apiKey: string; agentId: string };

beforeAll(async () => {
  [redisServer, postgres] = await Promise.all([startRedisProcess(), startPostgresProcess()]);
  relay = await startTcpRelay({ host: '127.0.0.1', port: redisServer.port });
  stack = await startPaymentStack({
    services: { redisUrl: redisServer.url, databaseUrl: postgres.url },
    proxyEnv: { CROCHET_PAYMENT_RESOLVE_MS: '2500' },
  });
  // The second proxy reaches Redis through the relay (its replies can be held back).
  await stack.addProxy({ ...stack.proxyEnv, REDIS_URL: relay.url('redis'), CROCHET_PAYMENT_RESOLVE_MS: '2500' });
  seller = await startSeller((req, res) => {
    const route = req.url!.split('/').at(-1);
    if (route === 'fail') {
      res.writeHead(500, { 'content-type': 'application/json' });
      return res.end('{"error":"seller"}');
    }
    if (route === 'drip') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      let n = 0;
      const timer = setInterval(() => {
        res.write(`${n++}\n`);
        if (n === 5) {
          clearInterval(timer);
          res.end();
        }
      }, 80);
      res.once('close', () => clearInterval(timer));
      return;
    }
    const delay = route === 'slow' ? 400 : 0;
    const timer = setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    }, delay);
    res.once('close', () => clearTimeout(timer));
  });
  const sellerKey = (await stack.plane.register('seller')).apiKey;
  buyer = await stack.plane.register('buyer');
  free = (await stack.plane.createListing(sellerKey, { private_endpoint_url: seller.url })).listing.id;
  paid = await createPaidListing(stack, sellerKey, seller.url, '0.01');
}, 120_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
  await relay?.close();
  await redisServer?.stop();
  await postgres?.destroy();
});

/** Fresh direct Solana payments, each against its own payment request (ids prove themselves: no 402 needed). */
const makeProofs = async (n: number): Promise<Record<string, string>[]> => {
  const ids = new PaymentRequestIds(CryptoBox.parseKey(TEST_DATA_PLANE_KEY)!);
  const wallet = await createFundedWallet(stack.solana, { sol: 5, usdcAtomic: PRICE * BigInt(n + 10) });
  const proofs: Record<string, string>[] = [];
  for (let i = 0; i < n; i++) {
    const signature = await transferUsdcWithMemo(
      stack.solana,
      wallet.signer,
      stack.solanaPayTo,
      PRICE,
      ids.issue(paid, buyer.agentId),
    );
    proofs.push(paymentTx(stack.solana.caip2, signature));
  }
  return proofs;
};

interface Op {
  kind: 'free' | 'paid' | 'replay';
  route: string;
  proof: string | null;
  abortAfterMs: number | null;
  status: number;
  requestId: string | undefined;
  /** The client read the whole answer. */
  complete: boolean;
}

/** One call as a client makes it; aborting ones destroy the connection after `abortAfterMs`. */
const callOnce = (proxyUrl: string, op: Omit<Op, 'status' | 'requestId' | 'complete'>): Promise<Op> =>
  new Promise((resolve) => {
    const listing = op.kind === 'free' ? free : paid;
    const req = httpRequest(`${proxyUrl}/api/v1/gateway/${listing}/${op.route}`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${buyer.apiKey}`,
        'content-type': 'application/json',
        ...(op.proof ? { 'x-crochet-payment-tx': op.proof } : {}),
      },
    });
    const result: Op = { ...op, status: 0, requestId: undefined, complete: false };
    let settled = false;
    const done = () => {
      if (settled) return;
      settled = true;
      resolve(result);
    };
    req.setTimeout(20_000, () => req.destroy());
    req.on('error', done);
    req.on('response', (res) => {
      result.status = res.statusCode!;
      result.requestId = res.headers['x-crochet-request-id'] as string | undefined;
      res.on('data', () => {});
      res.on('end', () => {
        result.complete = true;
        done();
      });
      res.on('error', done);
      res.on('close', done);
    });
    req.end('{"q":1}');
    if (op.abortAfterMs !== null) {
      setTimeout(() => {
        req.destroy();
        done();
      }, op.abortAfterMs);
    }
  });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Random faults until `until`, each healed before the next; returns what it did. */
const faults = async (random: () => number, until: number): Promise<string[]> => {
  const done: string[] = [];
  while (Date.now() < until - 1_500) {
    await sleep(200 + random() * 600);
    const pick = random();
    const ms = Math.round(300 + random() * 1_200);
    if (pick < 0.3) {
      done.push(`redis paused ${ms} ms`);
      redisServer.pause();
      await sleep(ms);
      redisServer.resume();
    } else if (pick < 0.55) {
      done.push(`redis replies held ${ms} ms (proxy 2)`);
      relay.stall();
      await sleep(ms);
      relay.heal();
    } else if (pick < 0.75) {
      done.push(`redis killed, restarted empty after ${ms} ms`);
      await redisServer.kill();
      await sleep(ms);
      await redisServer.start();
    } else {
      done.push(`postgres paused ${ms} ms`);
      postgres.pause();
      await sleep(ms);
      postgres.resume();
    }
  }
  return done;
};

/** Random traffic on both proxies until `until`. */
const traffic = async (random: () => number, until: number, proofs: Record<string, string>[]): Promise<Op[]> => {
  const ops: Op[] = [];
  const used: string[] = [];
  const routes = ['ok', 'ok', 'ok', 'slow', 'drip', 'fail'];
  const worker = async (w: number) => {
    while (Date.now() < until) {
      const pick = random();
      const route = routes[Math.floor(random() * routes.length)]!;
      const abortAfterMs = random() < 0.12 ? Math.round(random() * 500) : null;
      let kind: Op['kind'] = 'free';
      let proof: string | null = null;
      if (pick < 0.3 && proofs.length > 0) {
        kind = 'paid';
        proof = proofs.pop()!['x-crochet-payment-tx']!;
        used.push(proof);
      } else if (pick < 0.4 && used.length > 0) {
        kind = 'replay';
        proof = used[Math.floor(random() * used.length)]!;
      }
      ops.push(await callOnce(stack.proxies[w % 2]!.url, { kind, route, proof, abortAfterMs }));
      await sleep(random() * 40);
    }
  };
  await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
  return ops;
};

/** Waits until both proxies adopted Redis's epoch, nothing is left in any outbox, and the consumer drained. */
const converge = async () => {
  await eventually(async () => {
    for (const p of stack.proxies) {
      const ready = await rawRequest(p.url, '/readyz', { method: 'GET' });
      expect(ready.status, ready.text).toBe(200);
      expect(p.outbox.unsent).toBe(0);
    }
    await stack.plane.eventsConsumer.drain({ timeoutMs: 5_000 });
    const { rows } = await stack.plane.deps.pool.query(
      "SELECT count(*)::int AS n FROM gateway_requests WHERE status = 'forwarded'",
    );
    expect(rows[0].n).toBe(0);
  }, 60_000);
};

/** The checker: what clients saw, what the seller saw, the history and the ledger. */
const check = async (ops: Op[]) => {
  const pool = stack.plane.deps.pool;
  const { rows } = await pool.query(
    `SELECT id, listing_id, status, http_status, payment, path FROM gateway_requests WHERE buyer_id = $1 OR buyer_id IS NULL`,
    [buyer.agentId],
  );
  const byId = new Map(rows.map((r) => [r.id as string, r]));

  // 1. Every answer a client read to its end is recorded, in the final state that answer means.
  for (const op of ops.filter((o) => o.complete && o.requestId)) {
    const row = byId.get(op.requestId!);
    expect(row, `${op.kind} ${op.route} ${op.status} ${op.requestId}`).toBeDefined();
    if (op.status >= 200 && op.status < 300) expect(row.status).toBe('completed');
    expect(row.http_status).toBe(op.status);
  }
  // 2. No duplicates: the seller saw each gateway request once, and each is recorded.
  const seen = seller.requests.map((r) => String(r.headers['x-crochet-request-id']));
  expect(new Set(seen).size).toBe(seen.length);
  for (const id of seen) expect(byId.has(id), id).toBe(true);

  // 3. A proof pays once, ever: at most one request per proof reached the seller, at most one answer was 2xx.
  const proofOf = (row: { payment: { tx?: string } | null }) => row.payment?.tx ?? null;
  const forwardedByProof = new Map<string, string[]>();
  for (const id of seen) {
    const tx = proofOf(byId.get(id));
    if (tx) forwardedByProof.set(tx, [...(forwardedByProof.get(tx) ?? []), id]);
  }
  for (const [tx, ids] of forwardedByProof) expect(ids, tx).toHaveLength(1);
  const okByProof = new Map<string, number>();
  for (const op of ops.filter((o) => o.proof && o.status >= 200 && o.status < 300)) {
    okByProof.set(op.proof!, (okByProof.get(op.proof!) ?? 0) + 1);
  }
  for (const [proof, n] of okByProof) expect(n, proof).toBe(1);

  // 4. Every paid call the seller served is booked once; a seller failure is booked and reversed.
  const { rows: journals } = await pool.query(
    'SELECT gateway_request_id, kind FROM ledger_journals WHERE buyer_id = $1',
    [buyer.agentId],
  );
  const kinds = new Map<string, string[]>();
  for (const j of journals) kinds.set(j.gateway_request_id, [...(kinds.get(j.gateway_request_id) ?? []), j.kind]);
  for (const row of rows.filter((r) => r.payment?.rail)) {
    const outcome = row.payment.outcome?.status;
    const booked = (kinds.get(row.id) ?? []).sort();
    if (outcome === 'settled') expect(booked, row.id).toEqual(['payment']);
    else if (outcome === 'refund_due') expect(booked, row.id).toEqual(['payment', 'refund']);
    else expect(booked, `${row.id} ${outcome}`).toEqual([]);
    if (row.status === 'completed' && row.http_status >= 200 && row.http_status < 300) {
      expect(outcome, row.id).toBe('settled');
    }
  }
  // 5. The ledger balances: every journal sums to zero.
  const { rows: unbalanced } = await pool.query(
    `SELECT j.id FROM ledger_journals j JOIN ledger_entries e ON e.journal_id = j.id
      GROUP BY j.id HAVING sum(e.amount_atomic) <> 0 OR count(*) < 2`,
  );
  expect(unbalanced).toEqual([]);
  // 6. Every request reached a final state (converge waited for it) — none is left forwarded.
  expect(rows.filter((r) => r.status === 'forwarded')).toEqual([]);
};

describe('random faults under random traffic', () => {
  it(`${HISTORIES} histories hold every rule`, async () => {
    const seed0 = Number(process.env['CROCHET_HISTORY_SEED'] ?? Date.now() % 1_000_000);
    let operations = 0;
    for (let h = 0; h < HISTORIES; h++) {
      const seed = seed0 + h;
      const random = prng(seed);
      const proofs = await makeProofs(60);
      const until = Date.now() + HISTORY_MS;
      const [ops, injected] = await Promise.all([traffic(random, until, proofs), faults(prng(seed * 7919), until)]);
      relay.heal();
      redisServer.resume();
      postgres.resume();
      await converge();
      await check(ops);
      operations += ops.length;
      console.log(
        `history ${h + 1}/${HISTORIES} (seed ${seed}): ${ops.length} operations ` +
          `(${ops.filter((o) => o.kind === 'paid').length} paid, ${ops.filter((o) => o.kind === 'replay').length} replays, ` +
          `${ops.filter((o) => o.abortAfterMs !== null).length} aborting); faults: ${injected.join('; ') || 'none'}`,
      );
    }
    console.log(`${HISTORIES} histories, ${operations} operations: every rule held`);
  }, 600_000);
});
