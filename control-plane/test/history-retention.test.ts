import { newId, redisKeys, ulid } from '@crochet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Pool, transaction } from '../src/db.js';
import { applyEvents } from '../src/events-consumer.js';
import {
  type HistoryOptions,
  maintainHistory,
  monthStartMs,
  partitionBound,
  partitionName,
} from '../src/history-partitions.js';
import { reconcile } from '../src/ledger/reconcile.js';
import { type Call, endEvent, startEvent } from './events-support.js';
import { startTestControlPlane, type TestPlane } from './helpers.js';
import { insertListing, ledgerTotals, paidEnd, paidStart } from './ledger-support.js';

/**
 * CROCHET_HISTORY_RETENTION_DAYS: months of gateway requests that ended before now − retention are dropped whole,
 * unless a money path still needs one of their rows (a call in flight, a journal not posted, a refund not sent);
 * recent months, the ledger and reviews stay; with no retention, everything stays.
 */
describe('history retention', () => {
  const call: Call = { listingId: newId('listing'), sellerId: newId('agent'), buyerId: newId('agent') };
  const silent = { info: () => {}, warn: () => {}, error: () => {} };
  const nowMs = Date.now();
  /** A time in the month `months` from now, and an id made then. */
  const inMonth = (months: number) => monthStartMs(nowMs, months) + 3 * 86_400_000;
  const idIn = (months: number) => `gr_${ulid(inMonth(months))}`;
  const month = (months: number) => partitionName(monthStartMs(nowMs, months));
  let plane: TestPlane;
  let pool: Pool;
  const maintain = (options: Partial<HistoryOptions> = {}) =>
    maintainHistory({ pool, retentionDays: 0, log: silent, ...options });
  const apply = (...events: Parameters<typeof applyEvents>[1]) =>
    transaction(pool, (client) => applyEvents(client, events));
  const partitionOf = async (id: string) =>
    (await pool.query('SELECT tableoid::regclass::text AS p FROM gateway_requests WHERE id = $1', [id])).rows[0]?.p;
  const partitions = async () =>
    (
      await pool.query<{ name: string }>(
        `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = 'gateway_requests'::regclass`,
      )
    ).rows.map((r) => r.name);

  // Eight months ago: only calls whose money is done — free, paid and booked, refunded and the refund sent.
  const free = startEvent(call, { id: idIn(-8), at: inMonth(-8), price_atomic: '0' });
  const booked = paidStart(call, 10_000n, { id: idIn(-8), at: inMonth(-8) });
  const refundSent = paidStart(call, 5_000n, { id: idIn(-8), at: inMonth(-8) });
  // Seven months ago: a paid call still forwarded (its end may yet come and be booked).
  const inFlight = paidStart(call, 10_000n, { id: idIn(-7), at: inMonth(-7) });
  // Six months ago: a paid call that ended settled, whose journal is not posted yet (reconciliation would post it).
  const unposted = paidStart(call, 10_000n, { id: idIn(-6), at: inMonth(-6) });
  // Seven months ago too, just after it: a paid call whose end (settled) came and whose start never did — the only
  // record of that payment, not bookable until the start arrives.
  const startLost = paidStart(call, 7_000n, { id: `gr_${ulid(inMonth(-7) + 60_000)}`, at: inMonth(-7) + 60_000 });
  // Five months ago: a refund booked and not sent yet (the transfers job reads the payer from the row).
  const refundOwed = paidStart(call, 5_000n, { id: idIn(-5), at: inMonth(-5) });
  // This month.
  const recent = paidStart(call, 10_000n);

  beforeAll(async () => {
    plane = await startTestControlPlane({
      CROCHET_RECONCILE_INTERVAL_SECONDS: '0',
      CROCHET_SCORE_INTERVAL_SECONDS: '0',
    });
    await plane.historyJob.stop(); // its first run, at start, is over; the test runs the job itself from here
    pool = plane.deps.pool;
    await insertListing(pool, call);
    await apply(
      free,
      endEvent(free),
      booked,
      paidEnd(booked),
      refundSent,
      paidEnd(refundSent, 'refund_due'),
      inFlight,
      paidEnd(startLost),
      refundOwed,
      paidEnd(refundOwed, 'refund_due'),
      recent,
      paidEnd(recent),
    );
    // Recorded as the consumer would, but its journal not posted: the row alone, settled.
    await pool.query(
      `INSERT INTO gateway_requests (id, listing_id, seller_id, buyer_id, status, http_status, price_atomic, currency,
                                     payment, created_at, completed_at)
       VALUES ($1, $2, $3, $4, 'completed', 200, 10000, 'USDC', $5, $6, $6)`,
      [
        unposted.id,
        call.listingId,
        call.sellerId,
        call.buyerId,
        JSON.stringify({ ...unposted.payment, outcome: { status: 'settled', tx: unposted.payment!.tx } }),
        new Date(inMonth(-6)),
      ],
    );
    // The refund of eight months ago went out and was confirmed.
    await pool.query(
      `INSERT INTO money_transfers (id, kind, owner_id, gateway_request_id, network, to_address, amount_atomic,
                                    currency, status, requested_by, journal_id)
       SELECT $1, 'refund', $2, $3, 'eip155:8453', '0x01', 5000, 'USDC', 'confirmed', 'refund', j.id
         FROM ledger_journals j WHERE j.idempotency_key = $3 || ':refund'`,
      [newId('refund'), call.buyerId, refundSent.id],
    );
    await pool.query(
      `INSERT INTO reviews (id, listing_id, reviewer_id, gateway_request_id, rating) VALUES ($1, $2, $3, $4, 4)`,
      [newId('review'), call.listingId, call.buyerId, booked.id],
    );
  });
  afterAll(async () => {
    await plane?.stop();
  });

  it('gives old months their partitions, moving their rows out of the default partition', async () => {
    expect(await partitionOf(booked.id)).toBe('gateway_requests_default');
    expect((await maintain({ nowMs: inMonth(-8) })).created).toEqual([month(-8), month(-7), month(-6)]);
    expect((await maintain({ nowMs: inMonth(-5) })).created).toEqual([month(-5), month(-4), month(-3)]);
    expect(await partitionOf(booked.id)).toBe(month(-8));
    expect(await partitionOf(inFlight.id)).toBe(month(-7));
    expect(await partitionOf(unposted.id)).toBe(month(-6));
    expect(await partitionOf(refundOwed.id)).toBe(month(-5));
    expect(await partitionOf(recent.id)).toBe(month(0));
  });

  it('keeps everything when no retention is set', async () => {
    const before = await partitions();
    expect(await maintain()).toEqual({ created: [], dropped: [], held: [], deferred: [] });
    expect(await partitions()).toEqual(before);
  });

  it('drops a month past the retention whose money is done, and keeps those a money path still needs', async () => {
    const ledgerBefore = await ledgerTotals(pool);
    const report = await maintain({ retentionDays: 100 });
    expect(report.dropped).toEqual([month(-8)]);
    expect(report.held).toEqual([
      { partition: month(-7), reason: 'open', gateway_request_id: inFlight.id },
      { partition: month(-6), reason: 'unposted', gateway_request_id: unposted.id },
      { partition: month(-5), reason: 'refund_unsent', gateway_request_id: refundOwed.id },
    ]);
    const left = await partitions();
    expect(left).not.toContain(month(-8));
    for (const months of [-7, -6, -5, -4, -3, 0, 1, 2]) expect(left).toContain(month(months));
    expect(await partitionOf(booked.id)).toBeUndefined();
    expect(await partitionOf(recent.id)).toBe(month(0));
    // The ledger is kept forever, and so are reviews.
    expect(await ledgerTotals(pool)).toEqual(ledgerBefore);
    expect(await ledgerTotals(pool, [booked.id, refundSent.id])).toMatchObject({ payments: 2, refunds: 1 });
    expect((await pool.query('SELECT 1 FROM reviews WHERE gateway_request_id = $1', [booked.id])).rowCount).toBe(1);
    // The history of what is left reads as before.
    const history = await pool.query('SELECT id FROM gateway_requests WHERE buyer_id = $1 ORDER BY id DESC', [
      call.buyerId,
    ]);
    expect(history.rows.map((r) => r.id)).toEqual(
      [recent.id, refundOwed.id, unposted.id, inFlight.id].sort().reverse(),
    );
  });

  it('ignores late events of calls in a dropped month, and reconciliation expects no row for them', async () => {
    const dropped = await pool.query('SELECT from_id, to_id FROM gateway_requests_dropped');
    expect(dropped.rows).toEqual([
      { from_id: partitionBound(monthStartMs(nowMs, -8)), to_id: partitionBound(monthStartMs(nowMs, -7)) },
    ]);
    // A late duplicate of a dropped call's start and end (an outbox replayed after Redis lost its data, say) would
    // otherwise come back as a partial row in the default partition.
    const ledgerBefore = await ledgerTotals(pool);
    await apply(booked, paidEnd(booked), endEvent(free));
    expect(await partitionOf(booked.id)).toBeUndefined();
    expect(await partitionOf(free.id)).toBeUndefined();
    expect(await ledgerTotals(pool)).toEqual(ledgerBefore);
    // A paid call of that month never booked (a proxy whose clock was months behind): its events are written all the
    // same, to the default partition, and it is booked — money is never dropped silently.
    const skewed = paidStart(call, 3_000n, { id: idIn(-8), at: Date.now() });
    await apply(skewed, paidEnd(skewed));
    expect(await partitionOf(skewed.id)).toBe('gateway_requests_default');
    expect(await ledgerTotals(pool, [skewed.id])).toMatchObject({ payments: 1 });
    // A used proof whose request's month is gone is not a lost start.
    const keys = redisKeys(plane.config.redisPrefix);
    await plane.deps.redis.set(keys.paymentUsed(booked.payment!.proof_ids[0]!), booked.id);
    const report = await reconcile({ pool, redis: plane.deps.redis, keys, staleSeconds: 600, log: silent });
    expect(report.incomplete.filter((i) => i.gateway_request_id === booked.id)).toEqual([]);
  });

  it('checks a month without holding up the consumer writing the receipts of other months', async () => {
    const late = paidStart(call, 10_000n);
    await apply(late);
    const checking = await pool.connect();
    try {
      // What the job holds while it checks a month before dropping it.
      await checking.query('BEGIN');
      await checking.query(`LOCK TABLE ${month(-7)} IN SHARE MODE`);
      const written = apply(paidEnd(late, 'settled', { receipt: 'aaa.bbb.ccc' }));
      const waited = await Promise.race([
        written.then(() => false),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 3_000)),
      ]);
      expect(waited).toBe(false);
    } finally {
      await checking.query('COMMIT');
      checking.release();
    }
    const { rows } = await pool.query('SELECT receipt FROM gateway_requests WHERE id = $1', [late.id]);
    expect(rows[0].receipt).toBe('aaa.bbb.ccc');
  });

  it('drops the held months once their money is done, and then has nothing left to do', async () => {
    await apply(paidEnd(inFlight));
    const reconciled = await reconcile({
      pool,
      redis: plane.deps.redis,
      keys: redisKeys(plane.config.redisPrefix),
      staleSeconds: 600,
      log: silent,
    });
    expect(reconciled.mismatches).toEqual([]);
    // The unposted one's journal (posted by this run or the one of the test before).
    expect(await ledgerTotals(pool, [unposted.id])).toMatchObject({ payments: 1 });
    const { rows } = await pool.query("SELECT id FROM ledger_journals WHERE idempotency_key = $1 || ':refund'", [
      refundOwed.id,
    ]);
    await pool.query(
      `INSERT INTO money_transfers (id, kind, owner_id, gateway_request_id, network, to_address, amount_atomic,
                                    currency, status, requested_by, journal_id)
       VALUES ($1, 'refund', $2, $3, 'eip155:8453', '0x01', 5000, 'USDC', 'confirmed', 'refund', $4)`,
      [newId('refund'), call.buyerId, refundOwed.id, rows[0].id],
    );
    // While a long read holds the table, the drop waits for the next run instead of queueing writes behind it; a
    // month still held is found so without waiting for any lock.
    const reader = await pool.connect();
    try {
      await reader.query('BEGIN');
      await reader.query('SELECT count(*) FROM gateway_requests');
      expect(await maintain({ retentionDays: 100 })).toMatchObject({
        dropped: [],
        held: [{ partition: month(-7), reason: 'unbooked', gateway_request_id: startLost.id }],
        deferred: [month(-6), month(-5)],
      });
    } finally {
      await reader.query('COMMIT');
      reader.release();
    }
    let report = await maintain({ retentionDays: 100 });
    expect(report.held).toEqual([{ partition: month(-7), reason: 'unbooked', gateway_request_id: startLost.id }]);
    expect(report.dropped).toEqual([month(-6), month(-5)]);
    // A month dropped above a held one: the held one's events are still written. The lost start arrives (a replay):
    // the payment is booked, and its month can go.
    await apply(startLost);
    report = await maintain({ retentionDays: 100 });
    expect(report.held).toEqual([]);
    expect(report.dropped).toEqual([month(-7)]);
    // Each posted once before its month went.
    expect(await ledgerTotals(pool, [inFlight.id, unposted.id, refundOwed.id, startLost.id])).toMatchObject({
      payments: 4,
      refunds: 1,
    });
    expect(await maintain({ retentionDays: 100 })).toEqual({ created: [], dropped: [], held: [], deferred: [] });
  });
});
