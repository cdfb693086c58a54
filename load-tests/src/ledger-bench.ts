/**
 * `npm run bench:ledger`: ledger postings through the real events consumer (DESIGN §3.5; never a test assertion).
 *
 * 1. Throughput: 100 000 events (50 000 paid calls, start + end, 10 % refunded) already in the stream; one consumer
 *    drains them (--consumers=<n> consumers of the group side by side, as n control planes would; --apply-depth=<n>
 *    batches each keeps in hand, default the consumer's own, 2). Prints events/s
 *    and journals/s (a refunded call posts two).
 *    Also prints the CPU each call cost the consumer (this process), PostgreSQL and Redis while draining.
 *    `--kind=free`: free calls instead (the history write path alone: no payment, no journal).
 * 2. Lag at a fixed rate: calls published at 5 000 events/s for `--lag-seconds`; the lag of a posting is the time
 *    from the end event's XADD to its journal's commit, sampled by polling. Prints p50/p99/max. Paid calls only.
 *
 * Uses DATABASE_URL's server (default: the local test server) for a scratch database and REDIS_URL under a scratch
 * prefix; both are removed at the end.
 */
import { randomBytes } from 'node:crypto';
import { EVENT_FIELD, type GatewayEvent, newId, redisKeys } from '@crochet/protocol';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createPool, migrate } from '../../control-plane/src/db.js';
import { startEventsConsumer } from '../../control-plane/src/events-consumer.js';
import { cpuOf, ownCpu } from './cpu.js';
import { percentile } from './stats.js';

const args = new Map(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, '').split('=');
    return [k!, v ?? 'true'] as const;
  }),
);
const EVENTS = Number(args.get('events') ?? 100_000);
const RATE = Number(args.get('rate') ?? 5_000);
const LAG_SECONDS = Number(args.get('lag-seconds') ?? 10);
const BATCH = Number(args.get('batch') ?? 500);
const CONSUMERS = Number(args.get('consumers') ?? 1);
const APPLY_DEPTH = args.has('apply-depth') ? Number(args.get('apply-depth')) : undefined;
const KIND = args.get('kind') ?? 'paid';
if (KIND !== 'paid' && KIND !== 'free') throw new Error(`--kind=${KIND}: paid or free`);
const DATABASE_URL = process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
/** What the consumers said, counted (a batch that met another writer and was applied again is a warning). */
const said = new Map<string, number>();
const count = (level: string) => (obj: object, msg: string) => {
  const code = (obj as { err?: { code?: unknown } }).err?.code;
  const key = `${level}: ${msg}${code === undefined ? '' : ` [${String(code)}]`}`;
  said.set(key, (said.get(key) ?? 0) + 1);
};
const counted = { info: () => {}, warn: count('warn'), error: count('error') };

const agents = Array.from({ length: 200 }, () => newId('agent'));
const listings = Array.from({ length: 100 }, () => newId('listing'));
let n = 0;
/** One paid call: its start and its end (every tenth refunded), stamped now. */
const paidCall = (): [GatewayEvent, GatewayEvent] => {
  const i = n++;
  const tx = `0x${randomBytes(32).toString('hex')}`;
  const at = Date.now();
  const id = newId('gatewayRequest');
  const listing_id = listings[i % listings.length]!;
  const price = String(1_000 + (i % 10_000));
  return [
    {
      type: 'gateway.start',
      v: 1,
      id,
      listing_id,
      seller_id: agents[i % 100]!,
      buyer_id: agents[100 + (i % 100)]!,
      key_id: newId('key'),
      method: 'POST',
      path: '/bench',
      price_atomic: price,
      currency: 'USDC',
      at,
      payment: {
        rail: 'evm-transfer',
        network: 'eip155:8453',
        payer: '0x0000000000000000000000000000000000000001',
        amount_atomic: price,
        asset: '0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913',
        tx,
        proof_ids: [`evm:${tx}`],
      },
    },
    {
      type: 'gateway.end',
      v: 1,
      id,
      listing_id,
      status: i % 10 === 0 ? 'upstream_error' : 'completed',
      http_status: i % 10 === 0 ? 502 : 200,
      error_code: i % 10 === 0 ? 'UPSTREAM_ERROR' : null,
      latency_ms: 20,
      upstream_latency_ms: 15,
      bytes_in: 10,
      bytes_out: 100,
      at,
      payment_outcome: { status: i % 10 === 0 ? 'refund_due' : 'settled', tx },
    },
  ];
};

/** One free call: its start and its end, stamped now. */
const freeCall = (): [GatewayEvent, GatewayEvent] => {
  const [start, end] = paidCall();
  const { payment: _none, ...free } = start as GatewayEvent & { payment?: unknown };
  const { payment_outcome: _no, ...freeEnd } = end as GatewayEvent & { payment_outcome?: unknown };
  return [{ ...free, price_atomic: '0' } as GatewayEvent, freeEnd as GatewayEvent];
};
const call = KIND === 'free' ? freeCall : paidCall;

const main = async (): Promise<void> => {
  const name = `crochet_ledger_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(DATABASE_URL);
  url.pathname = `/${name}`;
  const pool = createPool(url.toString(), 4);
  const redis = new Redis(REDIS_URL);
  const prefix = `bench:${randomBytes(4).toString('hex')}:`;
  const stream = redisKeys(prefix).events;
  try {
    await migrate(pool);
    const publish = async (events: GatewayEvent[]): Promise<void> => {
      const pipeline = redis.pipeline();
      for (const e of events) pipeline.xadd(stream, '*', EVENT_FIELD, JSON.stringify(e));
      await pipeline.exec();
    };

    // --- 1. throughput --------------------------------------------------------------------------------------------
    for (let i = 0; i < EVENTS; i += 10_000) {
      await publish(Array.from({ length: Math.min(10_000, EVENTS - i) / 2 }, call).flat());
    }
    const cpu0 = { consumer: ownCpu(), postgres: cpuOf('postgres'), redis: cpuOf('redis-server') };
    const t0 = performance.now();
    const consumers = await Promise.all(
      Array.from({ length: CONSUMERS }, (_, i) =>
        startEventsConsumer({
          pool,
          redis,
          prefix,
          consumerName: `bench-${i}`,
          batchSize: BATCH,
          applyDepth: APPLY_DEPTH,
          log: counted,
        }),
      ),
    );
    await Promise.all(consumers.map((c) => c.drain({ timeoutMs: 600_000 })));
    const seconds = (performance.now() - t0) / 1000;
    const perCall = (used: number): string => `${Math.round((used * 1e6) / (EVENTS / 2))} µs`;
    const cpu = [
      `consumer ${perCall(ownCpu() - cpu0.consumer)}`,
      `postgres ${perCall(cpuOf('postgres') - cpu0.postgres)}`,
      `redis ${perCall(cpuOf('redis-server') - cpu0.redis)}`,
    ];
    const { rows } = await pool.query('SELECT count(*)::int AS journals FROM ledger_journals');
    const { rows: sums } = await pool.query(
      'SELECT coalesce(sum(amount_atomic), 0)::text AS total FROM ledger_entries',
    );
    const journals = rows[0].journals as number;
    console.log(`throughput: ${EVENTS} events of ${KIND} calls in ${seconds.toFixed(2)} s (batch ${BATCH})`);
    console.log(
      `  ${Math.round(EVENTS / seconds)} events/s, ${Math.round(journals / seconds)} journals/s ` +
        `(${journals} journals; sum of all entries ${sums[0].total})`,
    );
    console.log(`  CPU per call: ${cpu.join(', ')}`);
    for (const [msg, n] of said) console.log(`  consumer ${msg} (${n}×)`);
    said.clear();

    if (KIND === 'free') {
      await Promise.all(consumers.map((c) => c.stop()));
      return;
    }
    // --- 2. lag at a fixed rate -------------------------------------------------------------------------------------
    const sentAt = new Map<string, number>();
    const lags: number[] = [];
    const tickMs = 10;
    const perTick = (RATE * tickMs) / 1000 / 2; // calls per tick (2 events each)
    const until = Date.now() + LAG_SECONDS * 1000;
    let carry = 0;
    let done = false;
    const poller = (async () => {
      let lastId = 0;
      while (!done || sentAt.size > 0) {
        const { rows: posted } = await pool.query<{ id: string; gateway_request_id: string }>(
          "SELECT id::text, gateway_request_id FROM ledger_journals WHERE id > $1 AND kind = 'payment' ORDER BY id",
          [lastId],
        );
        const now = Date.now();
        for (const row of posted) {
          lastId = Math.max(lastId, Number(row.id));
          const sent = sentAt.get(row.gateway_request_id);
          if (sent !== undefined) {
            lags.push(now - sent);
            sentAt.delete(row.gateway_request_id);
          }
        }
        if (done && Date.now() > until + 30_000) break;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    while (Date.now() < until) {
      const tickStart = Date.now();
      carry += perTick;
      const count = Math.floor(carry);
      carry -= count;
      const calls = Array.from({ length: count }, paidCall);
      await publish(calls.flat());
      const now = Date.now();
      for (const [start] of calls) sentAt.set(start.id, now);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, tickMs - (Date.now() - tickStart))));
    }
    done = true;
    await poller;
    await Promise.all(consumers.map((c) => c.stop()));
    lags.sort((a, b) => a - b);
    console.log(
      `lag at ${RATE} events/s for ${LAG_SECONDS} s: ${lags.length} postings, ` +
        `p50 ${percentile(lags, 50)} ms, p99 ${percentile(lags, 99)} ms, max ${lags[lags.length - 1]} ms ` +
        `(end XADD → journal visible, polled every 5 ms)`,
    );
    for (const [msg, n] of said) console.log(`  consumer ${msg} (${n}×)`);
  } finally {
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      if (keys.length > 0) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
    redis.disconnect();
  }
};

await main();
