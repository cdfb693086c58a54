/**
 * The p-th percentile of values sorted ascending, by nearest rank: the smallest value that at least p % of the values
 * are at or below (the ⌈p/100 · n⌉-th). Of 100 samples, p99 is the 99th and p50 the 50th — not the largest and the
 * 51st, which rounding the rank down gives. NaN when there is none.
 */
export const percentile = (sorted: readonly number[], p: number): number =>
  sorted.length === 0
    ? Number.NaN
    : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p * sorted.length) / 100) - 1))]!;

/** The same of values in any order (a sorted copy). */
export const percentileOf = (values: readonly number[], p: number): number =>
  percentile(
    [...values].sort((a, b) => a - b),
    p,
  );
