/**
 * Reviews (DESIGN §3.6): who may review which gateway request, and what a comment may hold. A review is the
 * buyer's word on one paid call that completed, so it is tied to that call and made once per call.
 */

import { cleanText } from './text.js';

/** The longest comment, in characters (code points), before and after cleaning. */
export const REVIEW_COMMENT_MAX = 1000;

/** A comment as stored and served (`cleanText`, line breaks kept); null when nothing is left. */
export const cleanComment = (raw: string | undefined): string | null =>
  raw === undefined ? null : cleanText(raw, { multiline: true }) || null;

/** What the review check reads of a gateway request (gateway_requests, see migrations 002 and 004). */
export interface ReviewedCall {
  id: string;
  listing_id: string;
  buyer_id: string | null;
  status: string;
  http_status: number | null;
  price_atomic: string | null;
  /** True when the call carried a verified payment (payment has a rail). */
  paid: boolean;
  /** payment.outcome.status: settled, pending, released, refund_due or unpaid. */
  outcome: string | null;
}

export const REVIEWED_CALL_SQL = `
  SELECT id, listing_id, buyer_id, status, http_status, price_atomic::text AS price_atomic,
         coalesce(payment ? 'rail', false) AS paid, payment -> 'outcome' ->> 'status' AS outcome
    FROM gateway_requests WHERE id = $1`;

export type ReviewDecision = { ok: true } | { ok: false; reason: string };

/**
 * May `agentId` review `call` on `listingId`? Only the buyer of a paid call to that listing that completed: the
 * seller answered 2xx and the payment settled. The reason names what is missing; a call of someone else is reported
 * exactly like one that does not exist.
 */
export const mayReview = (
  call: ReviewedCall | undefined,
  listingId: string,
  agentId: string,
  /** The server's history retention in days when the request id is older than it (its row may be gone), else null. */
  pastHistoryDays: number | null = null,
): ReviewDecision => {
  if (!call || call.buyer_id !== agentId) {
    return {
      ok: false,
      reason:
        pastHistoryDays === null
          ? 'this gateway request is not a call you made.'
          : 'this gateway request is not a call you made, or it is older than the call history this server keeps ' +
            `(${pastHistoryDays} days): calls are reviewed while their history is kept.`,
    };
  }
  if (call.listing_id !== listingId) {
    return { ok: false, reason: `this gateway request was a call to another listing (${call.listing_id}).` };
  }
  if (call.price_atomic === null || call.price_atomic === '0' || !call.paid) {
    return {
      ok: false,
      reason:
        call.status === 'payment_required'
          ? 'this gateway request was not paid (it was answered 402).'
          : 'this gateway request was not a paid call; only paid calls can be reviewed.',
    };
  }
  if (call.status === 'forwarded') {
    return { ok: false, reason: 'this gateway request has not finished yet; retry once it shows completed.' };
  }
  if (call.status !== 'completed' || call.http_status === null || call.http_status < 200 || call.http_status > 299) {
    return {
      ok: false,
      reason:
        `this gateway request did not complete (status ${call.status}, HTTP ${call.http_status ?? 'none'}); ` +
        'only calls the seller answered 2xx can be reviewed.',
    };
  }
  if (call.outcome !== 'settled') {
    return {
      ok: false,
      reason: `the payment of this gateway request did not settle (${call.outcome ?? 'no outcome'}).`,
    };
  }
  return { ok: true };
};

export interface ReviewRow {
  id: string;
  listing_id: string;
  reviewer_id: string;
  gateway_request_id: string;
  rating: number;
  comment: string | null;
  created_at: Date;
}

export const REVIEW_COLUMNS = 'id, listing_id, reviewer_id, gateway_request_id, rating, comment, created_at';

export const reviewView = (row: ReviewRow) => ({
  id: row.id,
  rating: row.rating,
  comment: row.comment,
  reviewer_id: row.reviewer_id,
  gateway_request_id: row.gateway_request_id,
  created_at: row.created_at,
});
