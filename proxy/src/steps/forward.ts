import { createHash, type Hash } from 'node:crypto';
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

export const forward = (call: Call, deps: ForwardDeps): void => {
  const { request, listing } = call;
  const res = call.res;
  const method = request.method;
  const hasBody = method !== 'GET' && method !== 'HEAD';
  const headers = sellerRequestHeaders(request.headers, call.signed!);
  if (hasBody) headers['content-type'] = request.headers['content-type'] ?? 'application/octet-stream';
  const timeoutMs = listing!.timeoutMs;
  let hash: Hash | null = null;
  let trailers = false;
  let streaming = false;
  call.upstreamStartedAt = performance.now();

  const failed = (error: Error & { code?: string; cause?: unknown }) => {
    if (call.finalized) return; // the buyer left first: already ended as client_aborted
    const code = streaming ? 'UPSTREAM_UNAVAILABLE' : upstreamErrorCode(error);
    deps.metrics.upstreamErrors.inc({ kind: upstreamErrorKind(error, code === 'UPSTREAM_FORBIDDEN') });
    request.log.warn({ code, listing: listing!.id, err: error.cause ?? error }, 'upstream failed');
    if (!streaming) return refuse(call, new ApiError(code), deps, { kind: 'seller_failed', code });
    // The seller's answer broke off after its headers went out: the buyer's response can only be cut as well.
    finalize(call, { kind: 'stream_aborted' }, deps);
    res.destroy();
  };

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
    {
      onRequestStart(controller) {
        // Connected, about to write the request: only now has the seller been reached. A buyer who left while the
        // connection was being made is not forwarded at all.
        if (call.finalized) return controller.abort(new Error('the buyer left'));
        call.forwarded = true;
        call.abortUpstream = (reason) => controller.abort(reason);
      },
      onResponseStart(controller, statusCode, upstreamHeaders) {
        if (call.finalized) return controller.abort(new Error('the buyer left'));
        call.upstreamHeadersAt = performance.now();
        mark(call, 'upstream_headers');
        call.sellerStatus = statusCode;
        const out = buyerResponseHeaders(upstreamHeaders, call.limitHeaders, call.responseHeaders);
        out['x-crochet-request-id'] = call.id;
        const receipt = receiptDue(call, statusCode) ? call.receipt : null;
        if (receipt) {
          out['x-crochet-receipt'] = receipt.header;
          hash = createHash('sha256');
          if (wantsTrailers(call, statusCode)) {
            // The trailer is computed after the last chunk, when the body's hash is final. A Content-Length may not
            // go with trailers (RFC 9112 §6.3): Node switches to chunked coding without it.
            delete out['content-length'];
            out['trailer'] = 'x-crochet-receipt';
            trailers = true;
          }
        }
        try {
          res.writeHead(statusCode, out);
        } catch (error) {
          // A header value Node refuses to send (the seller's answer is malformed): nothing has gone out yet.
          controller.abort(error as Error);
          return;
        }
        streaming = true;
        // Back down in the finalizer, which every way a streamed answer ends goes through once.
        call.streaming = true;
        deps.metrics.openStreams.inc();
      },
      onResponseData(controller, chunk) {
        call.bytesOut += chunk.length;
        hash?.update(chunk);
        if (!res.write(chunk)) {
          controller.pause();
          res.once('drain', () => controller.resume());
        }
      },
      onResponseEnd() {
        if (call.finalized) return;
        if (call.receipt && hash) call.receipt.responseSha256 = hash.digest('hex');
        const end = () => {
          res.end();
          finalize(call, { kind: 'answered' }, deps);
        };
        if (!trailers) return end();
        fullReceipt(call, call.sellerStatus!, deps.receipts!.signer).then(
          (jws) => {
            res.addTrailers({ 'x-crochet-receipt': jws });
            end();
          },
          (error: unknown) => {
            request.log.error({ err: error }, 'full receipt not signed');
            end();
          },
        );
      },
      onResponseError(_controller, error) {
        failed(error);
      },
    },
  );
};
