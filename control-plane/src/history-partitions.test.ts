import { isId, newId } from '@crochet/protocol';
import { describe, expect, it } from 'vitest';
import { minimumRetentionDays, monthStartMs, partitionBound, partitionName } from './history-partitions.js';
import { idTimeMs } from './ledger/reconcile.js';

describe('history partitions', () => {
  it('bound a month by the id of its first millisecond, as protocol ids are made', () => {
    const start = Date.UTC(2026, 11, 1);
    const bound = partitionBound(start);
    expect(bound).toMatch(/^gr_[0-9A-HJKMNP-TV-Z]{10}$/);
    expect(idTimeMs(`${bound}${'0'.repeat(16)}`)).toBe(start);
    // Every id made in the month sorts at or after its bound, every id of the millisecond before sorts before it.
    const id = newId('gatewayRequest');
    expect(isId('gatewayRequest', id)).toBe(true);
    const now = idTimeMs(id)!;
    expect(id >= partitionBound(now) && id < partitionBound(now + 1)).toBe(true);
    expect(id >= partitionBound(monthStartMs(now)) && id < partitionBound(monthStartMs(now, 1))).toBe(true);
    expect(id < partitionBound(monthStartMs(now, 1))).toBe(true);
  });

  it('count months in UTC and name them by year and month', () => {
    expect(monthStartMs(Date.UTC(2026, 11, 31, 23, 59, 59, 999))).toBe(Date.UTC(2026, 11, 1));
    expect(monthStartMs(Date.UTC(2026, 11, 4), 1)).toBe(Date.UTC(2027, 0, 1));
    expect(monthStartMs(Date.UTC(2026, 0, 31), -1)).toBe(Date.UTC(2025, 11, 1));
    expect(partitionName(Date.UTC(2027, 0, 1))).toBe('gateway_requests_p2027_01');
  });

  it('keep at least the history every reader needs', () => {
    expect(minimumRetentionDays({ reconcileStaleSeconds: 600, acceptWindowSeconds: 3600 })).toBe(90);
    expect(minimumRetentionDays({ reconcileStaleSeconds: 100 * 86_400 + 1, acceptWindowSeconds: 3600 })).toBe(101);
  });
});
