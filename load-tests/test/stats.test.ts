import { describe, expect, it } from 'vitest';
import { percentile, percentileOf } from '../src/stats.js';

describe('percentile (nearest rank)', () => {
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1);

  it('of 100 samples, p99 is the 99th and p50 the 50th, not the largest and the 51st', () => {
    expect(percentile(hundred, 99)).toBe(99);
    expect(percentile(hundred, 50)).toBe(50);
    expect(percentile(hundred, 100)).toBe(100);
    expect(percentile(hundred, 0)).toBe(1);
  });

  it('of 1000 samples, p99 leaves the ten largest above it', () => {
    const thousand = Array.from({ length: 1000 }, (_, i) => i + 1);
    expect(percentile(thousand, 99)).toBe(990);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
  });

  it('counts the rank exactly for integer and decimal p (no float rounding up past it)', () => {
    const big = Array.from({ length: 100_000 }, (_, i) => i + 1);
    expect(percentile(hundred, 7)).toBe(7);
    expect(percentile(big, 99.9)).toBe(99_900);
  });

  it('sorts a copy of values in any order, leaving them as they were', () => {
    const shuffled = [5, 1, 4, 2, 3];
    expect(percentileOf(shuffled, 50)).toBe(3);
    expect(percentileOf(shuffled, 80)).toBe(4);
    expect(shuffled).toEqual([5, 1, 4, 2, 3]);
  });
});
