import type { OutgoingHttpHeaders } from 'node:http';
import type { EventOutbox, ReceiptSigner } from '@crochet/plugins';
import { statusClass } from '@crochet/plugins';
import {
  type ApiError,
  errorBody,
  finalState,
  type GatewayEndEvent,
  type GatewayExit,
  type GatewayState,
} from '@crochet/protocol';
import type { Call } from '../call.js';
import type { ConfigStore } from '../config-store.js';
import type { GatewayOutcome, ProxyMetrics } from '../metrics.js';
import type { Payments } from '../payments.js';

/**
 * The one finalizer (DESIGN §2 lifecycle rule): every way a call ends — answered, refused, the seller failed or
 * broke off, the buyer went away — comes here exactly once, with its exit. It records the metrics of every call, and
 * for an admitted one resolves the payment's outcome (book, settle, release or refund) and appends the completion
 * event; a call refused before admission leaves no record.
 */

export interface FinalizeDeps {
  store: ConfigStore;
  outbox: EventOutbox;
  metrics: ProxyMetrics;
  payments: Payments | undefined;
  receipts: { signer: ReceiptSigner; issuer: string } | undefined;
}

/** nginx's convention for "the client closed the request before an answer": nothing was sent. */
const CLIENT_CLOSED = 499;

/** The metrics `outcome` label of a final state (kept as the dashboards know it). */
const OUTCOME: Record<GatewayState, GatewayOutcome> = {
  forwarded: 'forwarded',
  completed: 'forwarded',
  upstream_error: 'upstream_error',
  client_aborted: 'client_aborted',
  refused: 'denied',
  payment_required: 'payment_required',
  payment_pending: 'denied',
};

export const finalize = (call: Call, exit: GatewayExit, deps: FinalizeDeps): void => {
  if (call.finalized) return;
  call.finalized = true;
  call.exit = exit;
  if (call.streaming) deps.metrics.openStreams.dec();
  const endedAt = performance.now();
  const state = finalState(exit);
  const res = call.res;
  const status = res.headersSent ? res.statusCode : CLIENT_CLOSED;
  if (call.admitted) {
    const push = deps.outbox.promise();
    record(call, state, status, endedAt, deps, push).catch((error: unknown) =>
      call.request.log.error({ err: error, id: call.id }, 'completion not recorded'),
    );
  }
  // After the record is on its way: a fault in the metrics never costs a call its completion event.
  try {
    recordMetrics(call, state, status, endedAt, deps);
  } catch (error) {
    call.request.log.error({ err: error, id: call.id }, 'call metrics not recorded');
  }
};

/** Answers a registry error (the envelope, DESIGN §3) and ends the call with it. */
export const refuse = (call: Call, error: ApiError, deps: FinalizeDeps, exit?: GatewayExit): void => {
  call.errorCode = error.code;
  // A 402 carries its payment requirements beside the error (DESIGN §3.4), not inside it.
  const { payment, ...details } = error.details ?? {};
  // Object.assign, not spreads: a literal starting with a spread takes V8's slow path (see payments.ts).
  const body = errorBody(error.code, call.admitted ? call.id : call.request.id, {
    message: error.message,
    hint: error.hint,
    details,
  });
  const text = JSON.stringify(payment === undefined ? body : Object.assign(body, { payment }));
  const res = call.res;
  if (!res.headersSent && !res.destroyed) {
    const headers: OutgoingHttpHeaders = call.admitted ? { 'x-crochet-request-id': call.id } : {};
    Object.assign(headers, call.responseHeaders, error.headers);
    headers['content-type'] = 'application/json; charset=utf-8';
    headers['content-length'] = Buffer.byteLength(text);
    res.writeHead(error.status, headers);
    res.end(text);
  }
  finalize(call, exit ?? { kind: 'refused', code: error.code }, deps);
};

/** The completion event (after the payment's outcome is known), into the outbox. */
const record = async (
  call: Call,
  state: GatewayState,
  status: number,
  endedAt: number,
  deps: FinalizeDeps,
  push: (event: GatewayEndEvent) => void,
): Promise<void> => {
  const event: GatewayEndEvent = {
    type: 'gateway.end',
    v: 1,
    id: call.id,
    listing_id: call.listing!.id,
    status: state,
    http_status: status,
    error_code: call.errorCode,
    latency_ms: Math.round(endedAt - call.startedAt),
    upstream_latency_ms:
      call.upstreamStartedAt === null ? null : Math.round((call.upstreamHeadersAt ?? endedAt) - call.upstreamStartedAt),
    bytes_in: call.bytesIn,
    bytes_out: call.bytesOut,
    at: 0,
  };
  if (call.paymentRequestId) event.payment_request_id = call.paymentRequestId;
  try {
    // Only for an answer that streamed to its end: a cut body has no hash worth signing.
    if (call.receipt?.responseSha256 && deps.receipts)
      event.receipt = await fullReceipt(call, status, deps.receipts.signer);
  } catch (error) {
    call.request.log.error({ err: error }, 'full receipt not signed');
  }
  if (call.paid && deps.payments) {
    event.payment_outcome = await deps.payments.afterResponse(call, state);
  } else if (call.abandoned) {
    // Never forwarded: whatever it consumed is given back (the control plane releases it again when it records this).
    event.payment_outcome = { status: 'released', tx: null };
  }
  event.at = Date.now();
  push(event);
};

/**
 * The full receipt: the header receipt's claims plus the answer as streamed. Signed once; the trailer and the
 * completion event carry the same JWS.
 */
export const fullReceipt = (call: Call, status: number, signer: ReceiptSigner): Promise<string> => {
  const receipt = call.receipt!;
  receipt.full ??= signer.signFullReceipt(
    Object.assign({}, receipt.claims, {
      status,
      response_body_sha256: receipt.responseSha256!,
      response_bytes: call.bytesOut,
    }),
  );
  return receipt.full;
};

/** Every gateway answer into the metrics: one place, from what the call already holds. */
const recordMetrics = (call: Call, state: GatewayState, status: number, endedAt: number, deps: FinalizeDeps) => {
  const { metrics, store } = deps;
  // Only ids of listings in the config: a made-up id in the URL must not become a label value.
  const listingId = call.listing?.id ?? call.request.listingId;
  const listing = call.listing || store.listing(listingId) ? listingId : 'unknown';
  const labels = { listing, method: call.request.method, status_class: statusClass(status), outcome: OUTCOME[state] };
  const total = (endedAt - call.startedAt) / 1000;
  metrics.requests.inc(labels);
  metrics.requestDuration.observe(labels, total);
  if (call.errorCode) metrics.errors.inc({ code: call.errorCode, status: String(status) });
  for (let i = 0; i < call.stepNames.length; i++) {
    metrics.stepDuration.series({ step: call.stepNames[i]! }).observe(call.stepMs[i]! / 1000);
  }
  // Proxy-added is what happened before the forward: from then on the seller sets the pace (a streamed body
  // arrives as fast as the seller writes it), so the whole exchange with the seller is not the gateway's time.
  let withSeller = 0;
  if (call.upstreamStartedAt !== null) {
    metrics.upstreamDuration.observe(
      { listing },
      ((call.upstreamHeadersAt ?? endedAt) - call.upstreamStartedAt) / 1000,
    );
    withSeller = (endedAt - call.upstreamStartedAt) / 1000;
  }
  metrics.proxyAdded.observe({}, Math.max(0, total - withSeller));
  metrics.bytes.inc({ direction: 'in' }, call.bytesIn);
  metrics.bytes.inc({ direction: 'out' }, call.bytesOut);
};
