import type { GatewayEvent } from '@crochet/protocol';
import { newId } from '@crochet/protocol';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../src/db.js';
import { type EventsConsumer, startEventsConsumer } from '../src/events-consumer.js';
import { feeAtomic } from '../src/ledger/posting.js';
import { type Call, publish } from './events-support.js';
import { type ConsumerServices, closeConsumerServices, openConsumerServices } from './helpers.js';
import { ledgerTotals, paidEnd, paidStart, unbalancedJournals } from './ledger-support.js';

/**
 * 10 000 mixed events (paid, refunded, released, free; duplicated; shuffled so ends often precede starts) through
 * two consumers at once with small batches: every journal balances, all entries sum to zero, and the counts and the
 * fee revenue are exactly what the calls make due.
 */
describe('ledger after a randomized run', () => {
  const silent = { info: () => {}, warn: () => {}, error: () => {} };
  let services: ConsumerServices | undefined;
  let pool: Pool;
  let redis: Redis;
  let prefix: string;
  const consumers: EventsConsumer[] = [];

  beforeAll(async () => {
    services = await openConsumerServices();
    ({ pool, redis, prefix } = services);
  });
  afterAll(async () => {
    await Promise.all(consumers.map((c) => c.stop()));
    await closeConsumerServices(services);
  });

  it('balances every journal and posts exactly what is due', async () => {
    // A seeded generator: a failure can be replayed.
    let seed = 20_260_501;
    const random = (): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const calls: Call[] = Array.from({ length: 20 }, () => ({
      listingId: newId('listing'),
      sellerId: newId('agent'),
      buyerId: newId('agent'),
    }));
    const events: GatewayEvent[] = [];
    let payments = 0;
    let refunds = 0;
    let feeRevenue = 0n;
    while (events.length < 10_000) {
      const call = calls[Math.floor(random() * calls.length)]!;
      const price = BigInt(1 + Math.floor(random() * 5_000_000));
      const kind = random();
      const start = kind < 0.1 ? paidStart(call, price, { payment: undefined }) : paidStart(call, price);
      const outcome = kind < 0.1 ? 'settled' : kind < 0.6 ? 'settled' : kind < 0.8 ? 'refund_due' : 'released';
      const end = kind < 0.1 ? paidEnd(start, 'settled', { payment_outcome: undefined }) : paidEnd(start, outcome);
      if (kind >= 0.1 && outcome !== 'released') {
        payments++;
        if (outcome === 'refund_due') refunds++;
        else feeRevenue += feeAtomic(price, 500);
      }
      events.push(start, end);
      if (random() < 0.3) events.push(random() < 0.5 ? start : end); // duplicated delivery
    }
    for (let i = events.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [events[i], events[j]] = [events[j]!, events[i]!];
    }
    for (const [i, name] of ['cp-1', 'cp-2'].entries()) {
      consumers.push(
        await startEventsConsumer({
          pool,
          redis,
          prefix,
          consumerName: name,
          batchSize: 50 + i * 37,
          blockMs: 50,
          log: silent,
        }),
      );
    }
    for (let i = 0; i < events.length; i += 500) await publish(redis, prefix, ...events.slice(i, i + 500));
    await consumers[0]!.drain({ timeoutMs: 60_000 });

    expect(await unbalancedJournals(pool)).toEqual([]);
    const totals = await ledgerTotals(pool);
    expect(totals.total).toBe('0');
    expect({ payments: totals.payments, refunds: totals.refunds }).toEqual({ payments, refunds });
    const { rows } = await pool.query(
      `SELECT coalesce(sum(e.amount_atomic), 0)::text AS fee FROM ledger_entries e
         JOIN ledger_accounts a ON a.id = e.account_id WHERE a.role = 'marketplace_fee'`,
    );
    expect(rows[0].fee).toBe(feeRevenue.toString());
    const { rows: alarms } = await pool.query('SELECT count(*)::int AS n FROM ledger_alarms');
    expect(alarms[0].n).toBe(0);
    expect(consumers.reduce((n, c) => n + c.stats().deadLettered, 0)).toBe(0);
  });
});
