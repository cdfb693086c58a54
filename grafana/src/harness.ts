import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createFundedWallet, type FundedWallet, transferUsdcWithMemo } from '@crochet/dev-chains';
import { EVENT_FIELD, EVENTS_GROUP, redisKeys } from '@crochet/protocol';
import { getBase58Decoder } from '@solana/kit';
import { Redis } from 'ioredis';
import { TEST_REDIS_URL, verifyWallet } from '../../control-plane/test/helpers.js';
import { solanaWallet } from '../../control-plane/test/wallets-support.js';
import { type PaymentStack, paymentTx, startPaymentStack } from '../../proxy/test/payment-stack.js';
import { eventually, gatewayCall, type RawResponse, startSeller, type TestSeller } from '../../proxy/test/stack.js';
import { freePort, type Prometheus, startPrometheus } from './prometheus.js';

/**
 * The stack the dashboards are proven against, shared by grafana/test/dashboards.test.ts and grafana/render.ts: a
 * control plane and two proxies on real Redis, PostgreSQL and dev chains; sellers that answer, fail, hang, reset,
 * refuse and stream; a real Prometheus scraping all three planes every second with the repository's alert rules;
 * and a bounded load that exercises every outcome the dashboards show — including config changes and one gateway
 * event the ledger consumer cannot apply (a dead letter), so those panels and alerts see real values too.
 */

/** Listing timeout for the hanging seller: the smallest the control plane accepts. */
const SLOW_TIMEOUT_MS = 1000;
const PRICE_ATOMIC = 10_000n; // 0.01 USDC
const LIMITED_PER_MINUTE = 5;

type ListingName = 'echo' | 'paid' | 'flaky' | 'slow' | 'reset' | 'refused' | 'stream' | 'limited';

export interface ObservedStack {
  stack: PaymentStack;
  prometheus: Prometheus;
  listings: Record<ListingName, string>;
  /** Drives the load for `durationMs` (bounded: one round of calls every `roundMs`); the answers' statuses by kind. */
  load(durationMs: number, options?: { roundMs?: number }): Promise<LoadSummary>;
  stop(): Promise<void>;
}

/** How many answers of each status each kind of call got. */
export type LoadSummary = Record<string, Record<number, number>>;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

/** The sellers, by what they do. */
const startSellers = async () => {
  const echo = await startSeller((_req, res, body) => {
    // A few milliseconds of work, so upstream latency is a distribution rather than a constant.
    setTimeout(() => json(res, 200, { echo: body.toString('utf8') }), 2 + Math.random() * 40);
  });
  const flaky = await startSeller((_req, res) => json(res, 500, { error: 'seller bug' }));
  const slow = await startSeller((_req, res) => {
    const timer = setTimeout(() => json(res, 200, { late: true }), SLOW_TIMEOUT_MS * 3);
    res.once('close', () => clearTimeout(timer));
  });
  const reset = await startSeller((req: IncomingMessage) => req.socket.destroy());
  const stream = await startSeller((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    let n = 0;
    const timer = setInterval(() => {
      res.write(`data: {"token":${n}}\n\n`);
      if (++n === 6) {
        clearInterval(timer);
        res.end();
      }
    }, 250);
    res.once('close', () => clearInterval(timer));
  });
  return { echo, flaky, slow, reset, stream };
};

/** A Crockford base32 id no payment request has: a memo that matches nothing. */
const strangerPaymentRequestId = () => {
  const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  return `pay_01${Array.from(randomBytes(24), (b) => alphabet[b % 32]).join('')}`;
};

export const startObservedStack = async (options: { scrapeIntervalSeconds?: number } = {}): Promise<ObservedStack> => {
  const stack = await startPaymentStack({
    proxies: 2,
    // Limits high enough for the load: the 429s come from one listing's own limit.
    proxyEnv: { CROCHET_KEY_RATE_LIMIT_PER_MINUTE: '1000000', CROCHET_LISTING_RATE_LIMIT_PER_MINUTE: '1000000' },
    // The transfers job runs every half second: the payout asked for during the load goes out and is booked.
    // The load's seller earns cents: any payout is allowed here (CROCHET_PAYOUT_MINIMUM).
    planeEnv: {
      CROCHET_RECONCILE_INTERVAL_SECONDS: '2',
      CROCHET_TRANSFERS_INTERVAL_MS: '500',
      CROCHET_PAYOUT_MINIMUM: '0.000001',
    },
  });
  let sellers: Awaited<ReturnType<typeof startSellers>> | undefined;
  let prometheus: Prometheus | undefined;
  const stop = async () => {
    await prometheus?.stop();
    await Promise.all(Object.values(sellers ?? {}).map((s: TestSeller) => s.close()));
    await stack.stop();
  };
  try {
    sellers = await startSellers();
    const sellerKey = (await stack.plane.register('seller')).apiKey;
    const buyerKey = (await stack.plane.register('buyer')).apiKey;
    // The seller is paid out during the load (the money-out panels): to a Solana wallet it verified.
    const payoutWallet = await verifyWallet(stack.plane, sellerKey, solanaWallet());
    if (payoutWallet.status !== 201) throw new Error(`seller wallet: ${payoutWallet.text}`);
    const refusedPort = await freePort();
    const create = async (url: string, fields: Record<string, unknown> = {}) =>
      (await stack.plane.createListing(sellerKey, { private_endpoint_url: url, ...fields })).listing.id as string;
    const s = sellers;
    const listings: Record<ListingName, string> = {
      echo: await create(`${s.echo.url}/echo`),
      paid: await create(`${s.echo.url}/paid`, { pricing_model: 'per_call', price: { amount: '0.01' } }),
      flaky: await create(`${s.flaky.url}/flaky`),
      slow: await create(`${s.slow.url}/slow`, { timeout_ms: SLOW_TIMEOUT_MS }),
      reset: await create(`${s.reset.url}/reset`),
      refused: await create(`http://127.0.0.1:${refusedPort}/refused`),
      stream: await create(`${s.stream.url}/stream`),
      limited: await create(`${s.echo.url}/limited`, { rate_limit_per_minute: LIMITED_PER_MINUTE }),
    };
    await eventually(() => {
      for (const proxy of stack.proxies) {
        for (const id of Object.values(listings)) if (!proxy.store.listing(id)) throw new Error(`${id} not known`);
      }
    }, 10_000);
    const wallet = await createFundedWallet(stack.solana, { sol: 10, usdcAtomic: 1_000_000_000n });

    prometheus = await startPrometheus(
      { proxies: stack.proxies.map((p) => p.metricsUrl), controlPlanes: [stack.plane.metricsUrl] },
      { scrapeIntervalSeconds: options.scrapeIntervalSeconds ?? 1 },
    );
    // Counters that first appear after the first scrape still lose their first increment to rate(): start the load
    // only once every target has been scraped.
    await prometheus.waitForScrapes(1);

    const load = (durationMs: number, loadOptions: { roundMs?: number } = {}) =>
      driveLoad({ stack, listings, buyerKey, sellerKey, wallet }, durationMs, loadOptions.roundMs ?? 250);
    return { stack, prometheus, listings, load, stop };
  } catch (error) {
    await stop();
    throw error;
  }
};

/**
 * A consumer that read an event and died before acknowledging it: the entry stays pending until the control plane's
 * consumer claims it (after its idle period, longer than this load), so the pending panel sees a real backlog.
 */
const stalledConsumer = async (stack: PaymentStack): Promise<void> => {
  const redis = new Redis(TEST_REDIS_URL);
  const stream = redisKeys(stack.plane.config.redisPrefix).events;
  try {
    // One transaction: the entry this consumer takes is the oldest undelivered one, never one already in flight.
    await redis
      .multi()
      .xadd(stream, '*', EVENT_FIELD, 'not json {')
      .xreadgroup('GROUP', EVENTS_GROUP, 'stalled-consumer', 'COUNT', 1, 'STREAMS', stream, '>')
      .exec();
  } finally {
    redis.disconnect();
  }
};

/** A gateway event that is not JSON: the consumer retries it, then moves it to the dead-letter stream. */
const poisonEvent = async (stack: PaymentStack): Promise<void> => {
  const redis = new Redis(TEST_REDIS_URL);
  try {
    await redis.xadd(redisKeys(stack.plane.config.redisPrefix).events, '*', EVENT_FIELD, 'not json {');
  } finally {
    redis.disconnect();
  }
};

/**
 * Rounds of calls, one every `roundMs`, alternating proxies: free calls, a paid call (402 → a real Solana transfer →
 * forwarded → the same proof replayed, 409), refused and pending proofs, a bad key, an unknown listing, a rate-limited
 * listing, and sellers that answer 500, reset, refuse, hang past the listing timeout (504) and stream. A few control
 * plane reads go with each round; three quarters in, the seller asks to be paid out one call's earnings on Solana
 * (sent by the control plane's transfers job). In-flight calls are awaited before it resolves.
 */
const driveLoad = async (
  world: {
    stack: PaymentStack;
    listings: Record<ListingName, string>;
    buyerKey: string;
    sellerKey: string;
    wallet: FundedWallet;
  },
  durationMs: number,
  roundMs: number,
): Promise<LoadSummary> => {
  const { stack, listings, buyerKey, sellerKey, wallet } = world;
  const summary: LoadSummary = {};
  const count = (kind: string, res: RawResponse | { status: number }) => {
    summary[kind] ??= {};
    summary[kind][res.status] = (summary[kind][res.status] ?? 0) + 1;
    return res;
  };
  /** A call that got no HTTP answer at all counts as status 0. */
  const failed = (kind: string) => () => {
    count(kind, { status: 0 });
  };
  const solana = stack.solana;
  const inFlight: Promise<unknown>[] = [];
  const rounds = Math.max(1, Math.round(durationMs / roundMs));
  let changes = 0;
  const started = Date.now();

  for (let round = 0; round < rounds; round++) {
    if (round === Math.floor(rounds / 2)) inFlight.push(poisonEvent(stack));
    if (round === 0) inFlight.push(stalledConsumer(stack));
    if (round === Math.floor((rounds * 3) / 4)) {
      inFlight.push(
        stack.plane
          .call('POST', '/api/v1/payouts', { key: sellerKey, body: { network: solana.caip2, amount: '0.0095' } })
          .then((r) => count('payout', r), failed('payout')),
      );
    }
    // A seller setting changed every 2 s: config publishes, and the proxies' versions move.
    if (round % Math.max(1, Math.round(2_000 / roundMs)) === 0) {
      const timeout_ms = 29_000 - (changes++ % 2) * 1_000;
      inFlight.push(
        stack.plane
          .call('PATCH', `/api/v1/listings/${listings.echo}`, { key: sellerKey, body: { timeout_ms } })
          .then((r) => count('config change', r), failed('config change')),
      );
    }
    const proxy = stack.proxies[round % stack.proxies.length]!;
    const other = stack.proxies[(round + 1) % stack.proxies.length]!;
    const call = (kind: string, name: ListingName | string, key: string | null, opts = {}) =>
      gatewayCall(proxy, listings[name as ListingName] ?? name, key, opts).then((r) => count(kind, r), failed(kind));

    // Calls that outlast the round run beside it.
    inFlight.push(call('slow', 'slow', buyerKey), call('stream', 'stream', buyerKey, { method: 'GET' }));

    const paid = (async () => {
      const unpaid = await gatewayCall(proxy, listings.paid, buyerKey, { body: { round } });
      count('unpaid', unpaid);
      const id = unpaid.json?.payment?.payment_request_id as string | undefined;
      if (!id) return;
      const signature = await transferUsdcWithMemo(solana, wallet.signer, stack.solanaPayTo, PRICE_ATOMIC, id);
      const proof = paymentTx(solana.caip2, signature);
      count('paid', await gatewayCall(proxy, listings.paid, buyerKey, { body: { round }, headers: proof }));
      count('replay', await gatewayCall(other, listings.paid, buyerKey, { body: { round }, headers: proof }));
      if (round % 2 === 0) {
        const stranger = await transferUsdcWithMemo(
          solana,
          wallet.signer,
          stack.solanaPayTo,
          PRICE_ATOMIC,
          strangerPaymentRequestId(),
        );
        const refused = paymentTx(solana.caip2, stranger);
        count('wrong memo', await gatewayCall(proxy, listings.paid, buyerKey, { headers: refused }));
      }
    })().catch(failed('paid'));

    const notYetOnChain = paymentTx(solana.caip2, getBase58Decoder().decode(randomBytes(64)));
    const relayRequest = { 'x-crochet-relay-request-id': `0x${randomBytes(32).toString('hex')}` };
    await Promise.all([
      paid,
      ...Array.from({ length: 6 }, (_, n) =>
        call('free', 'echo', buyerKey, { body: { round, pad: 'x'.repeat(n * 200) } }),
      ),
      call('pending tx', 'paid', buyerKey, { headers: notYetOnChain }),
      call('pending relay', 'paid', buyerKey, { headers: relayRequest }),
      call('bad key', 'echo', `crk_${randomBytes(24).toString('base64url')}`),
      call('unknown listing', 'lst_01NOSUCHLISTING0000000000', buyerKey),
      call('limited', 'limited', buyerKey),
      call('seller 500', 'flaky', buyerKey),
      call('seller reset', 'reset', buyerKey),
      call('seller refused', 'refused', buyerKey),
      stack.plane.call('GET', '/api/v1/listings').then((r) => count('cp listings', r), failed('cp listings')),
      stack.plane
        .call('GET', '/api/v1/listings/lst_01NOSUCHLISTING0000000000')
        .then((r) => count('cp missing', r), failed('cp missing')),
    ]);
    const next = started + (round + 1) * roundMs;
    if (next > Date.now()) await sleep(next - Date.now());
  }
  await Promise.all(inFlight);
  return summary;
};
