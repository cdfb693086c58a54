import { describe, expect, it } from 'vitest';
import { renderCrochetScoreDoc, renderLlmsTxt, renderSkill, SCORE_TEXT } from '../docs/render.js';
import { SCORE_EXAMPLES } from './examples.js';
import { SCORE, type ScoreInputs, scoreListing } from './formula.js';

/**
 * The published formula (/docs/crochet-score and the skill text) states the constants the code computes with, and
 * the formula as written there, evaluated on its own, gives the scores the code gives.
 */
const doc = renderCrochetScoreDoc({ baseUrl: 'https://crochet.example' });
const number = (pattern: RegExp): number => {
  const match = pattern.exec(doc);
  expect(match, String(pattern)).not.toBeNull();
  return Number(match![1]);
};

describe('the published Crochet Score', () => {
  it('states every constant of the code', () => {
    const published = {
      windowDays: number(/gateway history of the last (\d+) days/),
      wilsonZ: number(/Wilson score interval lower bound \(z = ([\d.]+)/),
      latencyFastMs: number(/is at most (\d+) ms/),
      latencySlowMs: number(/0 at (\d+) ms or more/),
      ratingPriorMean: number(/R \(`rating_bayesian`\) = \(\d+ × ([\d.]+) \+/),
      ratingPriorWeight: number(/R \(`rating_bayesian`\) = \((\d+) ×/),
      buyersScale: number(/buyers\*\* = 1 − exp\(−B \/ ([\d.]+)\)/),
      weights: {
        success: number(/quality {2}= ([\d.]+) × success/),
        latency: number(/\+ ([\d.]+) × latency/),
        rating: number(/\+ ([\d.]+) × rating/),
        buyers: number(/\+ ([\d.]+) × buyers/),
      },
      evidencePerBuyerCap: number(/min\(their paid calls, (\d+)\)/),
      evidenceHalfWeight: number(/weight {3}= evidence \/ \(evidence \+ (\d+)\)/),
      prior: number(/\(1 − weight\) × ([\d.]+)\)\)/),
      verifiedMinScore: number(/`verified` = score ≥ (\d+)/),
      verifiedMinPaidCalls: number(/at least (\d+) paid calls/),
      verifiedMinDistinctBuyers: number(/at least (\d+) distinct buyers/),
    };
    expect(published).toEqual(SCORE);
  });

  it('gives, as written, the scores the code gives, and its examples are the code’s', () => {
    const c = SCORE; // read back above; the doc's own expressions are re-implemented here from its text
    const fromDoc = (x: ScoreInputs): number => {
      const p = x.paidCalls === 0 ? 0 : x.successes / x.paidCalls;
      const z = c.wilsonZ;
      const n = x.paidCalls;
      const success =
        n === 0
          ? 0
          : (p + (z * z) / (2 * n) - z * Math.sqrt((p * (1 - p) + (z * z) / (4 * n)) / n)) / (1 + (z * z) / n);
      const l = x.p95LatencyMs;
      const latency =
        l === null
          ? 0
          : l <= c.latencyFastMs
            ? 1
            : l >= c.latencySlowMs
              ? 0
              : 1 - Math.log(l / c.latencyFastMs) / Math.log(c.latencySlowMs / c.latencyFastMs);
      const r =
        (c.ratingPriorWeight * c.ratingPriorMean + x.ratingsByReviewer.reduce((a, b) => a + b, 0)) /
        (c.ratingPriorWeight + x.ratingsByReviewer.length);
      const rating = (r - 1) / 4;
      const buyers = 1 - Math.exp(-x.distinctBuyers / c.buyersScale);
      const quality =
        c.weights.success * Math.max(0, success) +
        c.weights.latency * latency +
        c.weights.rating * rating +
        c.weights.buyers * buyers;
      const evidence = x.paidCallsByBuyer.reduce((a, b) => a + Math.min(b, c.evidencePerBuyerCap), 0);
      const weight = evidence / (evidence + c.evidenceHalfWeight);
      return Math.round(1000 * (weight * quality + (1 - weight) * c.prior));
    };
    const rows = new Map(
      [...doc.matchAll(/^\| (\w+) \|.*\| \*\*(\d+)\*\* \| (yes|no) \|$/gm)].map((m) => [m[1], [Number(m[2]), m[3]]]),
    );
    expect([...rows.keys()]).toEqual(Object.keys(SCORE_EXAMPLES));
    for (const [name, inputs] of Object.entries(SCORE_EXAMPLES)) {
      const code = scoreListing(inputs);
      expect(fromDoc(inputs), name).toBe(code.value);
      expect(rows.get(name), name).toEqual([code.value, code.verified ? 'yes' : 'no']);
    }
    for (const extra of [
      { ...SCORE_EXAMPLES.solid, successes: 0 },
      { ...SCORE_EXAMPLES.flaky, p95LatencyMs: null },
      { ...SCORE_EXAMPLES.new, paidCalls: 0, successes: 0, paidCallsByBuyer: [], distinctBuyers: 0 },
    ]) {
      expect(fromDoc(extra)).toBe(scoreListing(extra).value);
    }
  });

  it('is summed up with the same constants in llms.txt and the agent skill', () => {
    const site = { baseUrl: 'https://crochet.example', version: '0.0.0', feeBps: 500, payoutNetworks: [] };
    const text = SCORE_TEXT.join('\n');
    for (const fragment of [
      `last\n  ${SCORE.windowDays} days`,
      `${SCORE.weights.success}·success`,
      `z = ${SCORE.wilsonZ}`,
      `${SCORE.weights.latency}·latency (p95 ≤ ${SCORE.latencyFastMs} ms → 1, ≥ ${SCORE.latencySlowMs} ms → 0)`,
      `${SCORE.weights.rating}·rating (Bayesian average, ${SCORE.ratingPriorWeight} prior reviews of ${SCORE.ratingPriorMean}`,
      `${SCORE.weights.buyers}·buyers (1 − exp(−distinct paying buyers / ${SCORE.buyersScale}))`,
      `(1 − w)·${SCORE.prior}`,
      `evidence + ${SCORE.evidenceHalfWeight}`,
      `counted up to ${SCORE.evidencePerBuyerCap}`,
      `verified = score ≥ ${SCORE.verifiedMinScore} and ≥ ${SCORE.verifiedMinPaidCalls} paid calls and ≥ ${SCORE.verifiedMinDistinctBuyers} distinct buyers`,
    ]) {
      expect(text).toContain(fragment);
    }
    expect(renderSkill([], site)).toContain(text);
    expect(renderLlmsTxt([], site)).toContain(text);
    expect(renderLlmsTxt([], site)).toContain('https://crochet.example/docs/crochet-score');
  });
});
