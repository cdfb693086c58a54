import { createHash, type Hash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { isSsrfBlockedError } from '@crochet/plugins';
import { ApiError, type ErrorCode } from '@crochet/protocol';
import type { Dispatcher } from 'undici';
import { type Call, mark } from '../call.js';
import { buyerResponseHeaders, sellerRequestHeaders } from '../headers.js';
import { upstreamErrorKind } from '../metrics.js';
import { type FinalizeDeps, finalize, fullReceipt, refuse } from './finalize.js';

/**
 * The forward (DESIGN §3.3): the signed request to the seller over a keep-alive undici dispatcher (SSRF-guarded at
 * connect time, no redirects), and the seller's answer streamed back as it arrives, with backpressure both ways. Each
 * way it can end has its exit: answered (the last byte went out), the seller failed before answering (a gateway
 * error), the seller broke off mid-answer (the buyer's response is cut too), or the buyer left (the seller request is
 * aborted; gateway.ts ends the call). A request counts as forwarded once its connection is made and it is being
 * written: a seller that could not even be connected to was never reached (a direct transfer's proof is given back).
 */

export interface ForwardDeps extends FinalizeDeps {
  /** Connections to sellers: SSRF-guarded at connect time, no redirects. */
  upstream: Dispatcher;
}

const TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** Which registry code a failed forward gets; nothing of the seller's URL is in any of them. */
const upstreamErrorCode = (error: Error & { code?: string }): ErrorCode => {
  if (isSsrfBlockedError(error)) return 'UPSTREAM_FORBIDDEN';
  return TIMEOUTS.has(error.code ?? '') ? 'UPSTREAM_TIMEOUT' : 'UPSTREAM_UNAVAILABLE';
};

/**
 * A receipt goes with every paid answer, except a non-2xx one under `after_response`: that payment is released
 * (never charged) and may pay for another call, which would then be a second receipt for one payment.
 */
const receiptDue = (call: Call, status: number): boolean =>
  call.receipt !== null && (call.listing!.settlementPolicy !== 'after_response' || (status >= 200 && status < 300));

/**
 * The client accepts trailers (`TE: trailers`, RFC 9110 §10.1.4) and the answer has a body to put them after
 * (not HEAD, 204 or 304).
 */
const wantsTrailers = (call: Call, status: number): boolean =>
  /(^|,)\s*trailers\s*(,|;|$)/i.test(String(call.request.headers.te ?? '')) &&
  call.request.method !== 'HEAD' &&
  status !== 204 &&
  status !== 304;

/**
 * One forward in flight, as undici's handler: the seller's answer streamed to the buyer. A class, so that a call costs
 * one object here rather than a closure per callback.
 */
class Forwarding implements Dispatcher.DispatchHandler {
  /** SHA-256 of the answer as streamed, for a paid call's full receipt. */
  hash: Hash | null = null;
  /** The receipt goes in a trailer (the buyer accepts trailers). */
  trailers = false;
  /** The seller's headers went out to the buyer: from here a failure can only cut the answer. */
  streaming = false;

  constructor(
    readonly call: Call,
    readonly deps: ForwardDeps,
  ) {}

  onRequestStart(controller: Dispatcher.DispatchController): void {
    const call = this.call;
    // Connected, about to write the request: only now has the seller been reached. A buyer who left while the
    // connection was being made is not forwarded at all.
    if (call.finalized) {
      controller.abort(new Error('the buyer left'));
      return;
    }
    call.forwarded = true;
    call.upstream = controller;
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    upstreamHeaders: IncomingHttpHeaders,
  ): void {
    const call = this.call;
    if (call.finalized) {
      controller.abort(new Error('the buyer left'));
      return;
    }
    call.upstreamHeadersAt = performance.now();
    mark(call, 'upstream_headers');
    call.sellerStatus = statusCode;
    const out = buyerResponseHeaders(upstreamHeaders, call.limitHeaders, call.responseHeaders);
    out['x-crochet-request-id'] = call.id;
    const receipt = receiptDue(call, statusCode) ? call.receipt : null;
    if (receipt) {
      out['x-crochet-receipt'] = receipt.header;
      this.hash = createHash('sha256');
      if (wantsTrailers(call, statusCode)) {
        // The trailer is computed after the last chunk, when the body's hash is final. A Content-Length may not
        // go with trailers (RFC 9112 §6.3): Node switches to chunked coding without it.
        delete out['content-length'];
        out['trailer'] = 'x-crochet-receipt';
        this.trailers = true;
      }
    }
    try {
      call.res.writeHead(statusCode, out);
    } catch (error) {
      // A header value Node refuses to send (the seller's answer is malformed): nothing has gone out yet.
      controller.abort(error as Error);
      return;
    }
    this.streaming = true;
    // Back down in the finalizer, which every way a streamed answer ends goes through once.
    call.streaming = true;
    this.deps.metrics.openStreams.inc();
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const call = this.call;
    call.bytesOut += chunk.length;
    this.hash?.update(chunk);
    if (!call.res.write(chunk)) {
      controller.pause();
      call.res.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    const { call, deps } = this;
    if (call.finalized) return;
    if (call.receipt && this.hash) call.receipt.responseSha256 = this.hash.digest('hex');
    if (!this.trailers) {
      this.end();
      return;
    }
    fullReceipt(call, call.sellerStatus!, deps.receipts!.signer).then(
      (jws) => {
        call.res.addTrailers({ 'x-crochet-receipt': jws });
        this.end();
      },
      (error: unknown) => {
        call.request.log.error({ err: error }, 'full receipt not signed');
        this.end();
      },
    );
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error & { code?: string; cause?: unknown }): void {
    const { call, deps } = this;
    if (call.finalized) return; // the buyer left first: already ended as client_aborted
    const code = this.streaming ? 'UPSTREAM_UNAVAILABLE' : upstreamErrorCode(error);
    deps.metrics.upstreamErrors.inc({ kind: upstreamErrorKind(error, code === 'UPSTREAM_FORBIDDEN') });
    call.request.log.warn({ code, listing: call.listing!.id, err: error.cause ?? error }, 'upstream failed');
    if (!this.streaming) {
      refuse(call, new ApiError(code), deps, { kind: 'seller_failed', code });
      return;
    }
    // The seller's answer broke off after its headers went out: the buyer's response can only be cut as well.
    finalize(call, { kind: 'stream_aborted' }, deps);
    call.res.destroy();
  }

  private end(): void {
    this.call.res.end();
    finalize(this.call, { kind: 'answered' }, this.deps);
  }
}

export const forward = (call: Call, deps: ForwardDeps): void => {
  const { request, listing } = call;
  const method = request.method;
  const hasBody = method !== 'GET' && method !== 'HEAD';
  const headers = sellerRequestHeaders(request.headers, call.signed!);
  if (hasBody) headers['content-type'] = request.headers['content-type'] ?? 'application/octet-stream';
  const timeoutMs = listing!.timeoutMs;
  call.upstreamStartedAt = performance.now();
  deps.upstream.dispatch(
    {
      origin: listing!.upstreamOrigin,
      path: call.target,
      method,
      headers,
      body: hasBody ? call.body : null,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    },
    new Forwarding(call, deps),
  );
};
