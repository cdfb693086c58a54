/**
 * The Crochet Score (DESIGN §3.6): 0–1000 per listing, from how the listing behaved on paid gateway calls and what
 * its buyers said. Pure functions over aggregates the job (job.ts) reads from PostgreSQL; the published formula
 * (/docs/crochet-score, docs/render.ts) is written from these very constants, and a test holds the two together.
 *
 *   quality  = Σ weights[f] · f over the factors success, latency, rating, buyers              (each in 0..1)
 *   evidence = Σ over buyers of min(their paid calls, evidencePerBuyerCap)
 *   weight   = evidence / (evidence + evidenceHalfWeight)
 *   score    = round(1000 · (weight · quality + (1 − weight) · prior))
 *
 * The shrink toward the prior is what keeps a new listing from reaching 800 on a handful of calls; capping each
 * buyer's share of the evidence (and counting buyers as a factor) is what keeps many calls from one or two buyers —
 * a seller paying itself through a second agent — below many calls from many buyers.
 */

/** Every constant of the formula, as published. */
export const SCORE = Object.freeze({
  /** Gateway calls older than this many days no longer count (reviews always do). */
  windowDays: 90,
  /** z for a 95 % two-sided interval: the success factor is the Wilson lower bound at this z. */
  wilsonZ: 1.96,
  /** p95 seller latency at or under fastMs scores 1, at or over slowMs scores 0, log-linear between. */
  latencyFastMs: 250,
  latencySlowMs: 10_000,
  /** Bayesian average of ratings: ratingPriorWeight virtual reviewers rating ratingPriorMean. */
  ratingPriorMean: 3.5,
  ratingPriorWeight: 5,
  /** The buyers factor is 1 − exp(−distinct paying buyers / buyersScale). */
  buyersScale: 8,
  /** Weights of the four factors in quality; they sum to 1. */
  weights: Object.freeze({ success: 0.45, latency: 0.15, rating: 0.2, buyers: 0.2 }),
  /** One buyer's paid calls count as evidence up to this many. */
  evidencePerBuyerCap: 20,
  /** Evidence at which the score is half the listing's quality and half the prior. */
  evidenceHalfWeight: 25,
  /** Where a listing without evidence stands (quality 0.5 = a score of 500). */
  prior: 0.5,
  /** verified = score ≥ verifiedMinScore and at least these many paid calls and distinct paying buyers. */
  verifiedMinScore: 800,
  verifiedMinPaidCalls: 50,
  verifiedMinDistinctBuyers: 10,
});

/**
 * What the job aggregates per listing over the window. A paid call is one that carried a verified payment, reached
 * the seller, and came from a buyer other than the seller; it is a success when the seller answered 2xx and the
 * payment settled, a failure when the seller failed (5xx, 408, 429, timeout, unreachable). Other answers — the
 * buyer's own mistakes (4xx), 1xx/3xx, a 2xx whose payment never settled — and calls that never reached the seller
 * (unpaid 402s, refusals) are not counted at all (job.ts holds the SQL).
 */
export interface ScoreInputs {
  /** Paid calls that were a success or a failure. */
  paidCalls: number;
  /** Of those, the successes. */
  successes: number;
  /** 95th percentile of the seller's latency (to response headers) over the paid calls; null without any. */
  p95LatencyMs: number | null;
  /** Paid calls per buyer, one entry per buyer: what the evidence is counted from. */
  paidCallsByBuyer: readonly number[];
  /** Buyers with at least one success: buyers who paid and got an answer. */
  distinctBuyers: number;
  /** The mean rating of each distinct reviewer (a reviewer counts once, however many calls they reviewed). */
  ratingsByReviewer: readonly number[];
}

/** What a score was made of: published with the listing. Ratios are rounded to 4 decimals, ratings to 3. */
export interface ScoreComponents {
  success_rate_lower_bound: number;
  successes: number;
  p95_latency_ms: number | null;
  latency_factor: number;
  rating_bayesian: number;
  reviewers: number;
  distinct_buyers: number;
  buyers_factor: number;
  paid_calls: number;
  evidence_calls: number;
  evidence_weight: number;
  quality: number;
}

export interface ListingScore {
  value: number;
  verified: boolean;
  components: ScoreComponents;
}

const clamp01 = (x: number): number => Math.min(1, Math.max(0, x));
const round = (x: number, decimals: number): number => Math.round(x * 10 ** decimals) / 10 ** decimals;

/** Wilson score interval lower bound of `successes` out of `trials` at `z`; 0 without trials. */
export const wilsonLowerBound = (successes: number, trials: number, z: number = SCORE.wilsonZ): number => {
  if (trials <= 0) return 0;
  const p = successes / trials;
  const z2 = z * z;
  const centre = p + z2 / (2 * trials);
  const margin = z * Math.sqrt((p * (1 - p)) / trials + z2 / (4 * trials * trials));
  return clamp01((centre - margin) / (1 + z2 / trials));
};

/** 1 at or under SCORE.latencyFastMs, 0 at or over SCORE.latencySlowMs, linear in log(latency) between; 0 if unknown. */
export const latencyFactor = (p95Ms: number | null): number => {
  if (p95Ms === null) return 0;
  if (p95Ms <= SCORE.latencyFastMs) return 1;
  if (p95Ms >= SCORE.latencySlowMs) return 0;
  return 1 - Math.log(p95Ms / SCORE.latencyFastMs) / Math.log(SCORE.latencySlowMs / SCORE.latencyFastMs);
};

/** The Bayesian average of the reviewers' ratings (1..5), pulled toward the prior mean by the prior weight. */
export const bayesianRating = (ratingsByReviewer: readonly number[]): number => {
  const sum = ratingsByReviewer.reduce((total, rating) => total + rating, 0);
  return (SCORE.ratingPriorWeight * SCORE.ratingPriorMean + sum) / (SCORE.ratingPriorWeight + ratingsByReviewer.length);
};

/** 1 − exp(−buyers / SCORE.buyersScale): the first buyers matter most, and it never quite reaches 1. */
export const buyersFactor = (distinctBuyers: number): number => 1 - Math.exp(-distinctBuyers / SCORE.buyersScale);

/** Σ min(calls, cap) over buyers: no single buyer vouches for more than the cap. */
export const evidenceCalls = (paidCallsByBuyer: readonly number[]): number =>
  paidCallsByBuyer.reduce((total, calls) => total + Math.min(Math.max(calls, 0), SCORE.evidencePerBuyerCap), 0);

/** The score of one listing from its aggregates. */
export const scoreListing = (inputs: ScoreInputs): ListingScore => {
  const successes = Math.min(inputs.successes, inputs.paidCalls);
  const success = wilsonLowerBound(successes, inputs.paidCalls);
  const latency = latencyFactor(inputs.p95LatencyMs);
  const ratingMean = bayesianRating(inputs.ratingsByReviewer);
  const rating = clamp01((ratingMean - 1) / 4);
  const buyers = buyersFactor(inputs.distinctBuyers);
  const { weights } = SCORE;
  const quality =
    weights.success * success + weights.latency * latency + weights.rating * rating + weights.buyers * buyers;
  const evidence = evidenceCalls(inputs.paidCallsByBuyer);
  const weight = evidence / (evidence + SCORE.evidenceHalfWeight);
  const value = Math.round(1000 * clamp01(weight * quality + (1 - weight) * SCORE.prior));
  return {
    value,
    verified: isVerified(value, inputs.paidCalls, inputs.distinctBuyers),
    components: {
      success_rate_lower_bound: round(success, 4),
      successes,
      p95_latency_ms: inputs.p95LatencyMs,
      latency_factor: round(latency, 4),
      rating_bayesian: round(ratingMean, 3),
      reviewers: inputs.ratingsByReviewer.length,
      distinct_buyers: inputs.distinctBuyers,
      buyers_factor: round(buyers, 4),
      paid_calls: inputs.paidCalls,
      evidence_calls: evidence,
      evidence_weight: round(weight, 4),
      quality: round(quality, 4),
    },
  };
};

/** The verified checkmark: a high score backed by enough paid calls from enough distinct buyers. */
export const isVerified = (score: number, paidCalls: number, distinctBuyers: number): boolean =>
  score >= SCORE.verifiedMinScore &&
  paidCalls >= SCORE.verifiedMinPaidCalls &&
  distinctBuyers >= SCORE.verifiedMinDistinctBuyers;

/**
 * A seller's score: the mean of its listings' scores weighted by paid calls, plus one for each listing still on
 * offer (so a seller without calls stands where its listings stand). Archived listings keep their calls' weight, so
 * archiving a listing does not erase how it behaved. Null when nothing has weight.
 */
export const scoreSeller = (
  listings: readonly { score: number; paidCalls: number; archived: boolean }[],
): number | null => {
  let total = 0;
  let weights = 0;
  for (const listing of listings) {
    const weight = listing.paidCalls + (listing.archived ? 0 : 1);
    total += listing.score * weight;
    weights += weight;
  }
  return weights === 0 ? null : Math.round(total / weights);
};
