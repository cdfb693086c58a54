import { randomBytes } from 'node:crypto';
import { newId, type RedisKeys, redisKeys, ulid } from '@crochet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transaction } from '../src/db.js';
import { applyEvents } from '../src/events-consumer.js';
import {
  RECONCILE_LOCK,
  type ReconcileOptions,
  reconcile,
  reconcileStats,
  startReconciler,
} from '../src/ledger/reconcile.js';
import type { Call } from './events-support.js';
import { startTestControlPlane, type TestPlane } from './helpers.js';
import { ledgerTotals, paidEnd, paidStart, unbalancedJournals } from './ledger-support.js';

/** §3.5 reconciliation: settled payments ↔ journals, lost completion events, lost start records. */
describe('ledger reconciliation', () => {
  const call: Call = { listingId: newId('listing'), sellerId: newId('agent'), buyerId: newId('agent') };
  const silent = { info: () => {}, warn: () => {}, error: () => {} };
  let plane: TestPlane;
  let keys: RedisKeys;
  let options: ReconcileOptions;

  /** A paid request's row as the events consumer would have recorded it, but without posting its journal. */
  const insertPaidRow = async (fields: {
    id?: string;
    status?: string;
    outcome?: 'settled' | 'refund_due' | null;
    priceAtomic?: bigint;
    ageSeconds?: number;
  }): Promise<{ id: string; tx: string }> => {
    const id = fields.id ?? newId('gatewayRequest');
    const tx = `0x${randomBytes(32).toString('hex')}`;
    const price = (fields.priceAtomic ?? 10_000n).toString();
    const outcome = fields.outcome === undefined ? 'settled' : fields.outcome;
    const payment = {
      rail: 'evm-transfer',
      network: 'eip155:8453',
      payer: '0x0000000000000000000000000000000000000001',
      amount_atomic: price,
      asset: '0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913',
      tx,
      proof_ids: [`evm:${tx}`],
      ...(outcome ? { outcome: { status: outcome, tx } } : {}),
    };
    const status = fields.status ?? (outcome === 'refund_due' ? 'upstream_error' : 'completed');
    await plane.deps.pool.query(
      `INSERT INTO gateway_requests (id, listing_id, seller_id, buyer_id, key_id, method, path, status, http_status,
                                     price_atomic, currency, payment, created_at, completed_at)
       VALUES ($1, $2, $3, $4, $5, 'POST', '/echo', $6, $7, $8, 'USDC', $9,
               now() - $10 * interval '1 second', CASE WHEN $6 = 'forwarded' THEN NULL ELSE now() END)`,
      [
        id,
        call.listingId,
        call.sellerId,
        call.buyerId,
        newId('key'),
        status,
        status === 'forwarded' ? null : status === 'completed' ? 200 : 502,
        price,
        JSON.stringify(payment),
        fields.ageSeconds ?? 1,
      ],
    );
    return { id, tx };
  };

  const alarms = async (key: string) =>
    (await plane.deps.pool.query('SELECT reason, journal_id FROM ledger_alarms WHERE idempotency_key = $1', [key]))
      .rows;

  beforeAll(async () => {
    plane = await startTestControlPlane();
    keys = redisKeys(plane.config.redisPrefix);
    options = { pool: plane.deps.pool, redis: plane.deps.redis, keys, staleSeconds: 600, log: silent };
  });
  afterAll(async () => {
    await plane?.stop();
  });

  it('posts a settled request whose journal is missing, exactly once', async () => {
    const settled = await insertPaidRow({ outcome: 'settled', priceAtomic: 10_000n });
    const refunded = await insertPaidRow({ outcome: 'refund_due', priceAtomic: 777n });
    expect(await ledgerTotals(plane.deps.pool, [settled.id, refunded.id])).toMatchObject({ payments: 0, refunds: 0 });

    const first = await reconcile(options);
    expect(first.reposted).toBe(3); // the settled payment, the refunded payment and its reversal
    expect(first.checked).toBeGreaterThanOrEqual(2);
    expect(first.mismatches).toEqual([]);
    expect(await ledgerTotals(plane.deps.pool, [settled.id])).toEqual({
      payments: 1,
      refunds: 0,
      entries: 3,
      total: '0',
    });
    expect(await ledgerTotals(plane.deps.pool, [refunded.id])).toEqual({
      payments: 1,
      refunds: 1,
      entries: 6,
      total: '0',
    });
    const { rows } = await plane.deps.pool.query(
      'SELECT amount_atomic::text, tx FROM ledger_journals WHERE idempotency_key = $1',
      [`${settled.id}:payment`],
    );
    expect(rows).toEqual([{ amount_atomic: '10000', tx: settled.tx }]);

    const second = await reconcile(options);
    expect(second.reposted).toBe(0);
    expect(await ledgerTotals(plane.deps.pool, [settled.id, refunded.id])).toMatchObject({ payments: 2, refunds: 1 });
    expect(await unbalancedJournals(plane.deps.pool)).toEqual([]);
    expect(reconcileStats().runs).toBeGreaterThanOrEqual(2);
  });

  it('posts only the missing reversal of a refunded request whose payment is booked', async () => {
    const start = paidStart(call, 5_000n);
    await transaction(plane.deps.pool, (client) => applyEvents(client, [start, paidEnd(start, 'settled')]));
    // The refund decision is recorded, but (as if that event's posting were lost) without its reversal.
    await plane.deps.pool.query(
      `UPDATE gateway_requests SET status = 'upstream_error',
              payment = jsonb_set(payment, '{outcome,status}', '"refund_due"') WHERE id = $1`,
      [start.id],
    );
    const report = await reconcile(options);
    expect(report.reposted).toBe(1);
    expect(await ledgerTotals(plane.deps.pool, [start.id])).toEqual({
      payments: 1,
      refunds: 1,
      entries: 6,
      total: '0',
    });
    expect((await reconcile(options)).reposted).toBe(0);
  });

  it('reports and alarms (once) a journal whose amount or settlement differs from its request', async () => {
    const a = paidStart(call, 10_000n);
    const b = paidStart(call, 10_000n);
    await transaction(plane.deps.pool, (client) => applyEvents(client, [a, paidEnd(a), b, paidEnd(b)]));
    // The journals are append-only; the requests are not: make them disagree.
    await plane.deps.pool.query(`UPDATE gateway_requests SET price_atomic = 12000 WHERE id = $1`, [a.id]);
    const otherTx = `0x${randomBytes(32).toString('hex')}`;
    await plane.deps.pool.query(
      `UPDATE gateway_requests SET payment = jsonb_set(payment, '{outcome,tx}', to_jsonb($2::text)) WHERE id = $1`,
      [b.id, otherTx],
    );
    for (let run = 0; run < 2; run++) {
      const report = await reconcile(options);
      expect(report.mismatches.filter((m) => m.gateway_request_id === a.id)).toEqual([
        { kind: 'journal_amount_mismatch', gateway_request_id: a.id, detail: expect.stringContaining('12000') },
      ]);
      expect(report.mismatches.filter((m) => m.gateway_request_id === b.id)).toEqual([
        { kind: 'journal_settlement_mismatch', gateway_request_id: b.id, detail: expect.stringContaining(otherTx) },
      ]);
      expect(report.reposted).toBe(0);
    }
    expect(await alarms(`${a.id}:payment`)).toEqual([
      { reason: 'journal_amount_mismatch', journal_id: expect.any(String) },
    ]);
    expect(await alarms(`${b.id}:payment`)).toEqual([
      { reason: 'journal_settlement_mismatch', journal_id: expect.any(String) },
    ]);
    expect(await ledgerTotals(plane.deps.pool, [a.id, b.id])).toMatchObject({ payments: 2, refunds: 0 });
  });

  it('reports a paid request still forwarded past the stale bound as incomplete', async () => {
    const stale = await insertPaidRow({ status: 'forwarded', outcome: null, ageSeconds: 3600 });
    const fresh = await insertPaidRow({ status: 'forwarded', outcome: null, ageSeconds: 5 });
    const report = await reconcile(options);
    const ids = report.incomplete.map((i) => i.gateway_request_id);
    expect(report.incomplete.find((i) => i.gateway_request_id === stale.id)).toMatchObject({ kind: 'end_missing' });
    expect(ids).not.toContain(fresh.id);
    expect(await ledgerTotals(plane.deps.pool, [stale.id])).toMatchObject({ payments: 0 });
  });

  it('reports a used proof whose gateway request has no row as incomplete', async () => {
    const lost = `gr_${ulid(Date.now() - 3_600_000)}`;
    const recent = `gr_${ulid(Date.now())}`;
    const recorded = await insertPaidRow({ id: `gr_${ulid(Date.now() - 3_600_000)}` });
    await plane.deps.redis.set(keys.paymentUsed('evm:0xlost'), lost);
    await plane.deps.redis.set(keys.paymentUsed('evm:0xrecent'), recent);
    await plane.deps.redis.set(keys.paymentUsed('evm:0xrecorded'), recorded.id);
    // Small pages, so the scan goes over several; the Redis is shared with other test files, whose keys the scan
    // walks too, so the call bound is not what is tested here.
    const report = await reconcile({ ...options, scanCount: 10, maxScanCalls: 1_000_000 });
    const found = report.incomplete.filter((i) => i.kind === 'start_missing');
    expect(found).toEqual([
      { kind: 'start_missing', gateway_request_id: lost, detail: expect.stringContaining('evm:0xlost') },
    ]);
    expect(report.proofs_scanned).toBe(3);
    expect(report.next_scan_cursor).toBe('0');
  });

  it('never runs two reconciliations at once, in one process or across control planes', async () => {
    // In one process: the second call while the first is running is skipped.
    const both = await Promise.all([plane.reconciler.runOnce(), plane.reconciler.runOnce()]);
    expect(both.filter((r) => r !== null)).toHaveLength(1);

    // Across control planes: another holds the advisory lock → this one skips; once released it runs again.
    const other = startReconciler({ ...options, intervalMs: 0 });
    const holder = await plane.deps.pool.connect();
    try {
      const before = reconcileStats().skipped;
      await holder.query('SELECT pg_advisory_lock($1)', [RECONCILE_LOCK]);
      expect(await other.runOnce()).toBeNull();
      expect(await plane.reconciler.runOnce()).toBeNull();
      expect(reconcileStats().skipped).toBe(before + 2);
      await holder.query('SELECT pg_advisory_unlock($1)', [RECONCILE_LOCK]);
      expect(await other.runOnce()).not.toBeNull();
    } finally {
      holder.release();
      await other.stop();
    }
  });

  it('runs periodically and stops cleanly', async () => {
    const runs = reconcileStats().runs;
    const periodic = startReconciler({ ...options, intervalMs: 50 });
    await expect.poll(() => reconcileStats().runs, { timeout: 5_000 }).toBeGreaterThanOrEqual(runs + 2);
    await periodic.stop();
    const after = reconcileStats().runs;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(reconcileStats().runs).toBe(after);
  });
});
