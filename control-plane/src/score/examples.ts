import type { ScoreInputs } from './formula.js';

/**
 * Four kinds of listing, as the published formula page shows them and the formula's tests check them: the page's
 * worked examples are computed, never typed in.
 */

/** `buyers` buyers sharing `calls` paid calls as evenly as possible. */
const spread = (calls: number, buyers: number): number[] =>
  Array.from({ length: buyers }, (_, i) => Math.floor(calls / buyers) + (i < calls % buyers ? 1 : 0));

export const SCORE_EXAMPLES = {
  /** Five good calls from one buyer: promising, not proven. */
  new: {
    paidCalls: 5,
    successes: 5,
    p95LatencyMs: 180,
    paidCallsByBuyer: [5],
    distinctBuyers: 1,
    ratingsByReviewer: [5],
  },
  /** 500 calls from 40 buyers, 99 % answered, p95 400 ms, rated 4.5 by 20 of them. */
  solid: {
    paidCalls: 500,
    successes: 495,
    p95LatencyMs: 400,
    paidCallsByBuyer: spread(500, 40),
    distinctBuyers: 40,
    ratingsByReviewer: Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? 5 : 4)),
  },
  /** The same traffic, 85 % answered, p95 3 s, rated 3. */
  flaky: {
    paidCalls: 500,
    successes: 425,
    p95LatencyMs: 3000,
    paidCallsByBuyer: spread(500, 40),
    distinctBuyers: 40,
    ratingsByReviewer: Array.from({ length: 20 }, () => 3),
  },
  /** 500 flawless, fast calls from two buyers who rate it 5: what a seller paying itself would produce. */
  gamed: {
    paidCalls: 500,
    successes: 500,
    p95LatencyMs: 50,
    paidCallsByBuyer: [250, 250],
    distinctBuyers: 2,
    ratingsByReviewer: [5, 5],
  },
} satisfies Record<string, ScoreInputs>;
