import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { HeaderReceiptClaims, PaymentRail, VerifiedPayment } from '@crochet/plugins';
import type { AgentConfig, ErrorCode, GatewayExit, KeyConfig, PaymentOutcome } from '@crochet/protocol';
import type { FastifyBaseLogger } from 'fastify';
import type { GatewayListing } from './config-store.js';

/**
 * A gateway request as the pipeline reads it: what Node parsed, the route's two parameters, and the request's id and
 * logger. Built by the gateway's own dispatch (the common case, no router in between) or from a Fastify request (odd
 * request forms Fastify normalises first) — gateway.ts.
 */
export interface GatewayRequest {
  /** The request id (`X-Request-Id` when well-formed, else `req_…`): in error bodies and logs. */
  readonly id: string;
  readonly method: string;
  /** Origin-form target: `/api/v1/gateway/<listing id>[/<sub-path>][?<query>]`. */
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly listingId: string;
  /** The sub-path after the listing id, percent-decoded (the recorded path); '' when there is none. */
  readonly subPath: string;
  /** The request itself: its body is read from it. */
  readonly raw: IncomingMessage;
  readonly log: FastifyBaseLogger;
}

/**
 * What the gateway knows about one call, from arrival to its final state (protocol lifecycle.ts). Every step reads
 * and fills it; the finalizer (steps/finalize.ts) turns it into the completion event, the metrics and, for a paid
 * call, the payment's outcome.
 */
export interface Call {
  readonly request: GatewayRequest;
  /** The buyer's response: the gateway writes it itself (the seller's answer, streamed, or an error envelope). */
  readonly res: ServerResponse;
  /** The gateway request id (`gr_…`), given at admission. */
  id: string;
  readonly startedAt: number;
  /** Time per step, for the metrics: the names of the steps done and their milliseconds, side by side. */
  readonly stepNames: string[];
  readonly stepMs: number[];
  markAt: number;
  listing: GatewayListing | null;
  key: KeyConfig | null;
  buyer: AgentConfig | undefined;
  /** The seller URL the call goes to (sub-path applied). */
  target: string;
  /** A start record was appended (or may have been: an admission whose outcome is unknown). */
  admitted: boolean;
  /** The request body, read once (it is hashed for the signature). */
  body: Buffer | null;
  /** RateLimit-* headers of the admission. */
  limitHeaders: Record<string, string>;
  /** Other headers the gateway adds to its answer (PAYMENT-RESPONSE). */
  responseHeaders: Record<string, string>;
  /** Headers the gateway adds to the seller request (signature…). */
  signed: Record<string, string> | null;
  /** The buyer's connection closed before the answer was out. */
  gone: boolean;
  /** A request went out to the seller. */
  forwarded: boolean;
  /** The seller's answer started streaming to the buyer (counted in the open-streams gauge until the call ends). */
  streaming: boolean;
  upstreamStartedAt: number | null;
  upstreamHeadersAt: number | null;
  /** The seller's status, once its answer headers arrived. */
  sellerStatus: number | null;
  /** The request to the seller, once it is being written: aborted when the buyer leaves. */
  upstream: { abort(reason: Error): void } | null;
  bytesIn: number;
  bytesOut: number;
  /** The registry code the gateway answered with, if it answered with an error. */
  errorCode: ErrorCode | null;
  /** How the call ended; set once, by the step that ended it. */
  exit: GatewayExit | null;
  finalized: boolean;
  paid: PaidCall | null;
  /** A paid admission whose outcome stayed unknown: recorded refused, its proof given back (payments.ts). */
  abandoned: boolean;
  /** A 402's payment request id. */
  paymentRequestId: string | null;
  receipt: ReceiptState | null;
}

/** A paid call's payment, once admitted (payments.ts). */
export interface PaidCall {
  payment: VerifiedPayment;
  rail: PaymentRail;
  /** The id the proof was presented under. */
  proofId: string;
  /** The UTC day its spend was counted on. */
  day: string;
  /** The money already moved (direct transfer, Relay, or settled by the gateway). */
  moneyMoved: boolean;
  /** Set when the gateway knows what became of the payment before the end (settled before forwarding, pending…). */
  outcome: PaymentOutcome | null;
  /** Refused past the spend cap after its transfer was consumed: recorded for refund. */
  refundOnly?: boolean;
}

/** A paid call's receipt (plugins/src/receipts): signed before forwarding, completed when the body has streamed. */
export interface ReceiptState {
  claims: HeaderReceiptClaims;
  header: string;
  /** Hex SHA-256 of the response body, once it streamed to its end (hashed chunk by chunk, never held). */
  responseSha256: string | null;
  /** The full receipt, signed once (by the trailer or the record step, whichever asks first). */
  full: Promise<string> | null;
}

export const openCall = (request: GatewayRequest, res: ServerResponse, startedAt: number): Call => ({
  request,
  res,
  id: '',
  startedAt,
  stepNames: [],
  stepMs: [],
  markAt: startedAt,
  listing: null,
  key: null,
  buyer: undefined,
  target: '',
  admitted: false,
  body: null,
  limitHeaders: {},
  responseHeaders: {},
  signed: null,
  gone: false,
  forwarded: false,
  streaming: false,
  upstreamStartedAt: null,
  upstreamHeadersAt: null,
  sellerStatus: null,
  upstream: null,
  bytesIn: 0,
  bytesOut: 0,
  errorCode: null,
  exit: null,
  finalized: false,
  paid: null,
  abandoned: false,
  paymentRequestId: null,
  receipt: null,
});

/** Records the time since the previous mark under a step name. */
export const mark = (call: Call, step: string): void => {
  const now = performance.now();
  call.stepNames.push(step);
  call.stepMs.push(now - call.markAt);
  call.markAt = now;
};
