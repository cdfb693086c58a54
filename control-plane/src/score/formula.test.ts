import { describe, expect, it } from 'vitest';
import { SCORE_EXAMPLES } from './examples.js';
import {
  bayesianRating,
  buyersFactor,
  evidenceCalls,
  latencyFactor,
  SCORE,
  type ScoreInputs,
  scoreListing,
  scoreSeller,
  wilsonLowerBound,
} from './formula.js';

const NOTHING: ScoreInputs = {
  paidCalls: 0,
  successes: 0,
  p95LatencyMs: null,
  paidCallsByBuyer: [],
  distinctBuyers: 0,
  ratingsByReviewer: [],
};

/** The best a listing can look with `n` paid calls: each from a new buyer, instant, answered, rated 5. */
const bestWith = (n: number): ScoreInputs => ({
  paidCalls: n,
  successes: n,
  p95LatencyMs: 0,
  paidCallsByBuyer: Array.from({ length: n }, () => 1),
  distinctBuyers: n,
  ratingsByReviewer: Array.from({ length: n }, () => 5),
});

describe('Crochet Score formula', () => {
  const score = (name: keyof typeof SCORE_EXAMPLES) => scoreListing(SCORE_EXAMPLES[name]);

  it('orders the four kinds of listing: solid above flaky and gamed, new short of 800', () => {
    const [solid, flaky, gamed, fresh] = [score('solid'), score('flaky'), score('gamed'), score('new')];
    expect(solid.value).toBeGreaterThan(flaky.value);
    expect(solid.value).toBeGreaterThan(gamed.value);
    expect(flaky.value).toBeGreaterThan(fresh.value);
    expect(gamed.value).toBeGreaterThan(fresh.value);
    expect(fresh.value).toBeLessThan(SCORE.verifiedMinScore);
    expect(gamed.value).toBeLessThan(SCORE.verifiedMinScore);
    expect([solid.verified, flaky.verified, gamed.verified, fresh.verified]).toEqual([true, false, false, false]);
    // Pinned, so that a change of the formula is a visible, deliberate change of these numbers (and of the docs).
    expect([solid.value, flaky.value, gamed.value, fresh.value]).toEqual([913, 709, 677, 511]);
  });

  it('scores gamed traffic below the same traffic from many buyers, and does not verify it', () => {
    const gamed = SCORE_EXAMPLES.gamed;
    const honest = { ...gamed, paidCallsByBuyer: Array.from({ length: 50 }, () => 10), distinctBuyers: 50 };
    expect(scoreListing(gamed).value).toBeLessThan(scoreListing(honest).value - 150);
    expect(scoreListing(honest).verified).toBe(true);
    // One buyer's calls past the cap add no evidence.
    expect(scoreListing({ ...gamed, paidCallsByBuyer: [5000, 5000] }).value).toBe(scoreListing(gamed).value);
    // Even a flawless 800+ score from too few buyers is not verified.
    const fewBuyers = { ...bestWith(200), paidCallsByBuyer: Array.from({ length: 9 }, () => 25), distinctBuyers: 9 };
    expect(scoreListing(fewBuyers).verified).toBe(false);
  });

  it('keeps a listing with a handful of calls well short of 800, whatever they were', () => {
    for (let n = 0; n <= 40; n++) expect(scoreListing(bestWith(n)).value, `${n} calls`).toBeLessThan(800);
    expect(scoreListing(bestWith(5)).value).toBeLessThan(650);
    // …and moves it with evidence, never past what its quality allows.
    const values = [0, 10, 50, 200, 1000].map((n) => scoreListing(bestWith(n)).value);
    expect(values).toEqual([...values].sort((a, b) => a - b));
  });

  it('scores zero calls at the prior, with components that say so', () => {
    const nothing = scoreListing(NOTHING);
    expect(nothing.value).toBe(Math.round(1000 * SCORE.prior));
    expect(nothing.verified).toBe(false);
    expect(nothing.components).toEqual({
      success_rate_lower_bound: 0,
      successes: 0,
      p95_latency_ms: null,
      latency_factor: 0,
      rating_bayesian: SCORE.ratingPriorMean,
      reviewers: 0,
      distinct_buyers: 0,
      buyers_factor: 0,
      paid_calls: 0,
      evidence_calls: 0,
      evidence_weight: 0,
      quality: 0.125,
    });
  });

  it('drives a listing whose calls all fail toward 0, and below one that never had a call', () => {
    const failing: ScoreInputs = {
      paidCalls: 300,
      successes: 0,
      p95LatencyMs: 30_000,
      paidCallsByBuyer: Array.from({ length: 30 }, () => 10),
      distinctBuyers: 0,
      ratingsByReviewer: [],
    };
    const result = scoreListing(failing);
    expect(result.components.success_rate_lower_bound).toBe(0);
    expect(result.components.latency_factor).toBe(0);
    expect(result.value).toBeLessThan(250);
    expect(result.value).toBeLessThan(scoreListing(NOTHING).value);
    expect(result.verified).toBe(false);
    // More failures, lower score.
    expect(scoreListing({ ...SCORE_EXAMPLES.solid, successes: 400 }).value).toBeLessThan(score('solid').value);
  });

  it('reports the components it computed from', () => {
    expect(score('solid').components).toEqual({
      success_rate_lower_bound: 0.9768,
      successes: 495,
      p95_latency_ms: 400,
      latency_factor: 0.8726,
      rating_bayesian: 4.3,
      reviewers: 20,
      distinct_buyers: 40,
      buyers_factor: 0.9933,
      paid_calls: 500,
      evidence_calls: 500,
      evidence_weight: 0.9524,
      quality: 0.9341,
    });
    // Successes cannot exceed the calls they are part of.
    expect(scoreListing({ ...NOTHING, successes: 3 }).components.successes).toBe(0);
  });

  it('computes each factor as published', () => {
    expect(wilsonLowerBound(0, 0)).toBe(0);
    expect(wilsonLowerBound(10, 10)).toBeCloseTo(0.7225, 4);
    expect(wilsonLowerBound(50, 100)).toBeCloseTo(0.4038, 4);
    expect(wilsonLowerBound(0, 10)).toBe(0);
    expect(wilsonLowerBound(1000, 1000)).toBeGreaterThan(0.996);

    expect(latencyFactor(null)).toBe(0);
    expect(latencyFactor(0)).toBe(1);
    expect(latencyFactor(SCORE.latencyFastMs)).toBe(1);
    expect(latencyFactor(Math.sqrt(SCORE.latencyFastMs * SCORE.latencySlowMs))).toBeCloseTo(0.5, 10);
    expect(latencyFactor(SCORE.latencySlowMs)).toBe(0);
    expect(latencyFactor(120_000)).toBe(0);

    expect(bayesianRating([])).toBe(SCORE.ratingPriorMean);
    expect(bayesianRating([5, 5, 5, 5, 5])).toBeCloseTo(
      (SCORE.ratingPriorWeight * SCORE.ratingPriorMean + 25) / (SCORE.ratingPriorWeight + 5),
      10,
    );
    expect(bayesianRating(Array.from({ length: 10_000 }, () => 1))).toBeCloseTo(1, 2);

    expect(buyersFactor(0)).toBe(0);
    expect(buyersFactor(SCORE.buyersScale)).toBeCloseTo(1 - Math.exp(-1), 10);
    expect(evidenceCalls([1, 5, 300, 0])).toBe(1 + 5 + SCORE.evidencePerBuyerCap);

    const { success, latency, rating, buyers } = SCORE.weights;
    expect(success + latency + rating + buyers).toBeCloseTo(1, 10);
  });

  it('verifies exactly at the published thresholds, each of which can be the one that decides', () => {
    const minCalls = SCORE.verifiedMinPaidCalls;
    const minBuyers = SCORE.verifiedMinDistinctBuyers;
    // Many small buyers: the paid calls decide.
    expect(scoreListing(bestWith(minCalls)).verified).toBe(true);
    const oneCallShort = scoreListing(bestWith(minCalls - 1));
    expect(oneCallShort.value).toBeGreaterThanOrEqual(SCORE.verifiedMinScore);
    expect(oneCallShort.verified).toBe(false);
    // Few heavy buyers: the distinct buyers decide.
    const heavy = (buyers: number): ScoreInputs => ({
      ...bestWith(buyers * SCORE.evidencePerBuyerCap),
      paidCallsByBuyer: Array.from({ length: buyers }, () => SCORE.evidencePerBuyerCap),
      distinctBuyers: buyers,
      ratingsByReviewer: Array.from({ length: buyers }, () => 5),
    });
    expect(scoreListing(heavy(minBuyers)).verified).toBe(true);
    const oneBuyerShort = scoreListing(heavy(minBuyers - 1));
    expect(oneBuyerShort.value).toBeGreaterThanOrEqual(SCORE.verifiedMinScore);
    expect(oneBuyerShort.verified).toBe(false);
    // Enough of both, but the score decides.
    const mediocre = scoreListing({ ...heavy(minBuyers), successes: Math.round(0.8 * minBuyers * 20) });
    expect(mediocre.value).toBeLessThan(SCORE.verifiedMinScore);
    expect(mediocre.verified).toBe(false);
  });

  it('weights a seller by paid calls, one more per listing on offer', () => {
    expect(scoreSeller([])).toBeNull();
    expect(scoreSeller([{ score: 700, paidCalls: 0, archived: true }])).toBeNull();
    expect(scoreSeller([{ score: 500, paidCalls: 0, archived: false }])).toBe(500);
    expect(
      scoreSeller([
        { score: 900, paidCalls: 99, archived: false },
        { score: 500, paidCalls: 0, archived: false },
      ]),
    ).toBe(Math.round((900 * 100 + 500) / 101));
    // Archiving a listing keeps its calls' weight: a bad record does not disappear with it.
    expect(
      scoreSeller([
        { score: 900, paidCalls: 10, archived: false },
        { score: 200, paidCalls: 90, archived: true },
      ]),
    ).toBe(Math.round((900 * 11 + 200 * 90) / 101));
  });
});
