import { newId, ulid } from '@crochet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, migrate, type Pool, transaction } from '../src/db.js';
import { applyEvents } from '../src/events-consumer.js';
import { monthStartMs, partitionBound, partitionName } from '../src/history-partitions.js';
import { type Call, endEvent, startEvent } from './events-support.js';
import { createTestDatabase } from './helpers.js';
import { insertListing, ledgerTotals, paidEnd, paidStart } from './ledger-support.js';

/**
 * Migration 020 on a database that already has history (recorded by the events consumer, as in production): every
 * row, column and journal is kept, each row lands in its month's partition, and the consumer's writes go on.
 */
describe('gateway_requests partitioned by month (migration 020)', () => {
  const call: Call = { listingId: newId('listing'), sellerId: newId('agent'), buyerId: newId('agent') };
  const nowMs = Date.now();
  const threeMonthsAgo = monthStartMs(nowMs, -3) + 5 * 86_400_000;
  const idAt = (ms: number) => `gr_${ulid(ms)}`;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let pool: Pool;
  let before: unknown[];
  const open = startEvent(call, { id: idAt(nowMs - 1000), at: nowMs - 1000 });
  const old = paidStart(call, 20_000n, { id: idAt(threeMonthsAgo), at: threeMonthsAgo });
  const refunded = paidStart(call, 7_000n);
  const free = startEvent(call, { price_atomic: '0' });
  // Made by a proxy whose clock was a month behind the one that stamped its start: the oldest id is in a month before
  // the oldest created_at, and still gets its month's partition.
  const fourMonthsAgo = monthStartMs(nowMs, -4) + 5 * 86_400_000;
  const skewed = startEvent(call, { id: idAt(fourMonthsAgo), at: threeMonthsAgo, price_atomic: '0' });

  const rows = async () =>
    (await pool.query('SELECT row_to_json(g)::text AS r FROM gateway_requests g ORDER BY id')).rows.map((r) => r.r);
  const where = async (id: string) =>
    (await pool.query('SELECT tableoid::regclass::text AS p FROM gateway_requests WHERE id = $1', [id])).rows[0]?.p;

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, 3);
    await migrate(pool, { through: 19 });
    await insertListing(pool, call);
    // This release's consumer reads the months retention dropped (a table of 020): empty here, as before 020.
    await pool.query('CREATE TABLE gateway_requests_dropped (from_id text, to_id text)');
    await transaction(pool, (client) =>
      applyEvents(client, [
        open,
        old,
        paidEnd(old),
        refunded,
        paidEnd(refunded, 'refund_due'),
        free,
        endEvent(free),
        skewed,
        endEvent(skewed),
      ]),
    );
    await pool.query('DROP TABLE gateway_requests_dropped');
    await pool.query(
      `INSERT INTO reviews (id, listing_id, reviewer_id, gateway_request_id, rating) VALUES ($1, $2, $3, $4, 5)`,
      [newId('review'), call.listingId, call.buyerId, old.id],
    );
    before = await rows();
    expect(before).toHaveLength(5);
    expect(await migrate(pool, { through: 20 })).toEqual([
      { version: 20, name: '020_gateway_requests_partitions.sql' },
    ]);
  });
  afterAll(async () => {
    await pool?.end();
    await db?.drop();
  });

  it('keeps every row as it was, each in the partition of its month', async () => {
    expect(await rows()).toEqual(before);
    const { rows: kind } = await pool.query("SELECT relkind FROM pg_class WHERE relname = 'gateway_requests'");
    expect(kind[0].relkind).toBe('p');
    expect(await where(old.id)).toBe(partitionName(monthStartMs(threeMonthsAgo)));
    expect(await where(skewed.id)).toBe(partitionName(monthStartMs(fourMonthsAgo)));
    expect(await where(open.id)).toBe(partitionName(monthStartMs(nowMs)));
    // The months ahead exist already: inserts never wait for the job.
    const { rows: names } = await pool.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'gateway_requests'::regclass`,
    );
    for (const months of [-4, -3, -2, -1, 0, 1, 2]) {
      expect(names.map((n) => n.name)).toContain(partitionName(monthStartMs(nowMs, months)));
    }
    expect(names.map((n) => n.name)).toContain('gateway_requests_default');
    expect(names).toHaveLength(8); // from the oldest id's month on, no earlier
    expect(await ledgerTotals(pool)).toMatchObject({ payments: 2, refunds: 1, total: '0' });
  });

  it('keeps the primary key, the checks and the indexes', async () => {
    const { rows: indexes } = await pool.query<{ indexname: string }>(
      "SELECT indexname FROM pg_indexes WHERE tablename = 'gateway_requests' ORDER BY indexname",
    );
    expect(indexes.map((i) => i.indexname)).toEqual([
      'gateway_requests_buyer_idx',
      'gateway_requests_forwarded_idx',
      'gateway_requests_listing_idx',
      'gateway_requests_paid_by_buyer_idx',
      'gateway_requests_pkey',
      'gateway_requests_seller_idx',
    ]);
    const insert = (id: string, status: string, price: number) =>
      pool.query(
        `INSERT INTO gateway_requests (id, listing_id, status, price_atomic, created_at) VALUES ($1, 'lst', $2, $3, now())`,
        [id, status, price],
      );
    await expect(insert(open.id, 'completed', 1)).rejects.toMatchObject({ code: '23505' });
    await expect(insert(newId('gatewayRequest'), 'lost', 1)).rejects.toMatchObject({ code: '23514' });
    await expect(insert(newId('gatewayRequest'), 'completed', -1)).rejects.toMatchObject({ code: '23514' });
    // An id outside every month (not a time-ordered ULID) has a place too.
    await insert('gr_not_a_ulid', 'refused', 0);
    expect(await where('gr_not_a_ulid')).toBe('gateway_requests_default');
    await pool.query("DELETE FROM gateway_requests WHERE id = 'gr_not_a_ulid'");
  });

  it('lets reviews outlive the calls they are about (no foreign key into the history)', async () => {
    const { rows: fks } = await pool.query(
      "SELECT conname FROM pg_constraint WHERE conrelid = 'reviews'::regclass AND contype = 'f' ORDER BY conname",
    );
    expect(fks.map((f) => f.conname)).toEqual(['reviews_listing_id_fkey', 'reviews_reviewer_id_fkey']);
    expect((await pool.query('SELECT 1 FROM reviews WHERE gateway_request_id = $1', [old.id])).rowCount).toBe(1);
  });

  it('bounds months in SQL exactly as protocol ids are made', async () => {
    const times = [0, 1, 31, 32, 1_733_280_000_000, Date.UTC(9999, 11, 31, 23, 59, 59, 999), nowMs];
    for (let year = 2020; year <= 2040; year += 4) {
      for (const month of [0, 1, 2, 5, 11]) {
        const start = Date.UTC(year, month, 1);
        times.push(start, start - 1, start + 1);
      }
    }
    const { rows: bounds } = await pool.query<{ bound: string }>(
      'SELECT gateway_request_id_bound(t) AS bound FROM unnest($1::timestamptz[]) WITH ORDINALITY AS u (t, n) ORDER BY n',
      [times.map((t) => new Date(t).toISOString())],
    );
    expect(bounds.map((b) => b.bound)).toEqual(times.map(partitionBound));
    for (const t of times) expect(partitionBound(t)).toBe(`gr_${ulid(t).slice(0, 10)}`);
    await expect(pool.query("SELECT gateway_request_id_bound('1969-12-31T23:59:59Z')")).rejects.toMatchObject({
      code: '22003',
    });
  });

  it('goes on recording events: an end for a migrated row, new calls posted once', async () => {
    const later = paidStart(call, 3_000n);
    await transaction(pool, (client) => applyEvents(client, [endEvent(open), later, paidEnd(later)]));
    // Delivered again: ON CONFLICT (id) on the partitioned table, nothing posted twice.
    await transaction(pool, (client) => applyEvents(client, [later, paidEnd(later)]));
    const { rows: ended } = await pool.query('SELECT status, http_status FROM gateway_requests WHERE id = $1', [
      open.id,
    ]);
    expect(ended[0]).toEqual({ status: 'completed', http_status: 200 });
    expect(await where(later.id)).toBe(partitionName(monthStartMs(nowMs)));
    expect(await ledgerTotals(pool)).toMatchObject({ payments: 3, refunds: 1, total: '0' });
  });
});
