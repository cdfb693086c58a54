import { Type } from 'typebox';
import type { ScoreComponents } from './formula.js';

/** The `score` object of a listing in the API: its schema, the SQL that reads it, and the view. */

const Ratio = (description: string) => Type.Number({ minimum: 0, maximum: 1, description });
const Count = (description: string) => Type.Integer({ minimum: 0, description });

export const ScoreComponentsSchema = Type.Object({
  success_rate_lower_bound: Ratio('Wilson 95 % lower bound of successes / paid_calls'),
  successes: Count('paid calls the seller answered 2xx and whose payment settled'),
  p95_latency_ms: Type.Union([Type.Integer(), Type.Null()], {
    description: "95th percentile of the seller's time to answer over paid_calls; null without any",
  }),
  latency_factor: Ratio('p95_latency_ms mapped onto 0..1 (see /docs/crochet-score)'),
  rating_bayesian: Type.Number({
    minimum: 1,
    maximum: 5,
    description: 'Bayesian average rating, one vote per reviewer',
  }),
  reviewers: Count('distinct reviewers'),
  distinct_buyers: Count('distinct buyers with at least one success'),
  buyers_factor: Ratio('1 − exp(−distinct_buyers / scale)'),
  paid_calls: Count('paid calls judged success or failure in the window'),
  evidence_calls: Count('paid calls with each buyer counted up to a cap'),
  evidence_weight: Ratio('evidence_calls / (evidence_calls + half weight): how far the score has left the prior'),
  quality: Ratio('the weighted sum of the four factors'),
});

export const CrochetScoreSchema = Type.Object(
  {
    value: Type.Union([Type.Integer({ minimum: 0, maximum: 1000 }), Type.Null()], {
      description: 'Crochet Score 0–1000 (= crochet_score); null until the score job first ran after publication',
    }),
    verified: Type.Boolean({ description: 'value ≥ 800 with enough paid calls and distinct buyers (= verified)' }),
    seller_score: Type.Union([Type.Integer({ minimum: 0, maximum: 1000 }), Type.Null()], {
      description: "the seller's score: its listings' scores weighted by paid calls",
    }),
    components: Type.Union([ScoreComponentsSchema, Type.Null()], { description: 'what value was computed from' }),
    computed_at: Type.Union([Type.Unsafe<Date | string>({ type: 'string', format: 'date-time' }), Type.Null()]),
  },
  { description: 'How the score was made: /docs/crochet-score publishes the formula and its constants' },
);

/**
 * The components and seller score beside a listing row, as one column. Correlated on `listings.id`, so it goes in a
 * statement over the `listings` table under its own name (SELECT … FROM listings, UPDATE listings … RETURNING).
 */
export const LISTING_SCORE_COLUMN = `(
  SELECT jsonb_build_object(
           'components', s.components, 'computed_at', s.computed_at,
           'seller_score', (SELECT ss.score FROM seller_scores ss WHERE ss.seller_id = listings.seller_id))
    FROM listing_scores s WHERE s.listing_id = listings.id) AS score_detail`;

export interface ScoreDetail {
  components: ScoreComponents;
  computed_at: string;
  seller_score: number | null;
}

/** The score object from a listing's crochet_score and verified (what sort and filters read) and its detail. */
export const scoreView = (value: number | null, verified: boolean, detail: ScoreDetail | null | undefined) => ({
  value,
  verified,
  seller_score: detail?.seller_score ?? null,
  components: detail?.components ?? null,
  computed_at: detail ? new Date(detail.computed_at) : null,
});
