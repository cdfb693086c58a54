import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import {
  type Admission,
  type AdmissionRequest,
  type EventWriter,
  type HeaderReceiptClaims,
  hasPaymentProof,
  isSsrfBlockedError,
  type LocalAdmission,
  type PaymentRail,
  type ReceiptSigner,
  rateLimitHeaders,
  type SettleResult,
  statusClass,
  type VerifiedPayment,
} from '@crochet/plugins';
import {
  ApiError,
  bearerToken,
  canonicalString,
  currentUtcDay,
  type ErrorCode,
  type GatewayEndEvent,
  type GatewayStartEvent,
  newId,
  type PaymentOutcome,
  type RedisKeys,
  SIGNATURE_HEADERS,
  signatureHeader,
} from '@crochet/protocol';
import replyFrom from '@fastify/reply-from';
import { encodePaymentResponseHeader } from '@x402/core/http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Dispatcher } from 'undici';
import type { ConfigStore, GatewayListing } from './config-store.js';
import { buyerResponseHeaders, sellerRequestHeaders } from './headers.js';
import { createProxyMetrics, type GatewayOutcome, type ProxyMetrics, upstreamErrorKind } from './metrics.js';
import {
  consumeSettlementTx,
  type PaymentDecision,
  type PaymentDeps,
  payForCall,
  releaseProof,
  type SpendHold,
} from './payment-step.js';

/**
 * The gateway call (DESIGN §3.3), from arrival to the last streamed byte, in pipeline order:
 *
 *   resolve listing → authenticate key → payment → admit (limits + start record: one Redis round trip) →
 *   read body → sign → forward → stream back → record
 *
 * Each step returns a decision as a value; a denial is answered with its registry code. Each step's duration is
 * kept on the request (`state.steps`) for the metrics. Only bugs throw.
 */

export interface GatewayDeps {
  store: ConfigStore;
  keys: RedisKeys;
  /** Limits and start record in one Redis round trip. */
  admit: (request: AdmissionRequest) => Promise<Admission>;
  /** Per-process limits used when Redis cannot be reached (free listings only). */
  localAdmission: LocalAdmission;
  events: EventWriter;
  /** Connections to sellers: SSRF-guarded at connect time, no redirects. */
  upstream: Dispatcher;
  keyRateLimitPerMinute: number;
  listingRateLimitPerMinute: number;
  /** Absent when no payment rail is configured: per_call listings then answer PAYMENT_RAILS_UNAVAILABLE. */
  payments?: PaymentDeps;
  /** Absent when no receipt key is configured: paid answers then carry no receipt. */
  receipts?: { signer: ReceiptSigner; issuer: string };
  /** The proxy's metrics (proxy/src/metrics.ts); one registry per proxy. */
  metrics?: ProxyMetrics;
}

/** A paid call's receipt (plugins/src/receipts): signed before forwarding, completed when the body has streamed. */
interface ReceiptState {
  claims: HeaderReceiptClaims;
  header: string;
  /** Hex SHA-256 of the response body, once it streamed to its end (hashed chunk by chunk, never held). */
  responseSha256: string | null;
  /** The full receipt, signed once (by the trailer or the record step, whichever asks first). */
  full: Promise<string> | null;
}

/** What the gateway knows about one call; `record` turns it into the completion event. */
interface CallState {
  id: string;
  listing: GatewayListing;
  startedAt: number;
  bytesIn: number;
  bytesOut: number;
  upstreamStartedAt: number | null;
  upstreamHeadersAt: number | null;
  errorCode: ErrorCode | null;
  steps: [string, number][];
  /** Paid calls: the verified payment and its rail, and the buyer's spend counter it was added to. */
  paid: { payment: VerifiedPayment; rail: PaymentRail; spend: SpendHold } | null;
  paymentOutcome: PaymentOutcome | null;
  receipt: ReceiptState | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    gateway: CallState | null;
    /** For the metrics of every gateway answer, including denials before a call state exists. */
    gatewayError: ErrorCode | null;
    gatewaySteps: [string, number][] | null;
  }
}

type Step<T> = { ok: true; value: T } | { ok: false; error: ApiError };
const pass = <T>(value: T): Step<T> => ({ ok: true, value });
const deny = (code: ErrorCode, options?: ConstructorParameters<typeof ApiError>[1]): Step<never> => ({
  ok: false,
  error: new ApiError(code, options),
});

/** A request body read once, with the listing's limit applied while reading. */
const readBody = (stream: IncomingMessage, limitBytes: number): Promise<Step<Buffer>> =>
  new Promise((resolve) => {
    const declared = Number(stream.headers['content-length'] ?? -1);
    const tooLarge = () =>
      deny('PAYLOAD_TOO_LARGE', {
        message: `The request body is larger than this listing accepts (${limitBytes} bytes).`,
        details: { limit_bytes: limitBytes },
      });
    if (declared > limitBytes) return resolve(tooLarge());
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limitBytes) {
        stream.removeAllListeners('data');
        stream.resume();
        resolve(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    stream.once('end', () => resolve(pass(Buffer.concat(chunks, size))));
    stream.once('error', () => resolve(deny('VALIDATION_FAILED', { message: 'The request body was cut short.' })));
  });

/**
 * The sub-path exactly as the buyer sent it, still percent-encoded. Route params are decoded, and a decoded `%3F`,
 * `%23` or `%2F` put back into a URL would start a query, cut the path, or add a segment the check never saw.
 */
const rawSubPath = (url: string): string | undefined => {
  // '', 'api', 'v1', 'gateway', '<listing id>', then the sub-path's segments.
  const segments = url.split('?', 1)[0]!.split('/');
  return segments.length > 5 ? segments.slice(5).join('/') : undefined;
};

/** `/api/v1/gateway/:listingId/<sub-path>` → the seller's URL; dot segments may not climb out of its path. */
const upstreamUrl = (listing: GatewayListing, subPath: string | undefined): Step<string> => {
  const base = listing.upstream;
  if (!subPath) return pass(base.href);
  for (const segment of subPath.split('/')) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      return deny('VALIDATION_FAILED', { message: 'The gateway sub-path is not valid percent-encoding.' });
    }
    if (decoded === '.' || decoded === '..' || decoded.includes('/') || decoded.includes('\\')) {
      return deny('VALIDATION_FAILED', {
        message: 'The gateway sub-path may not contain dot segments or encoded slashes.',
      });
    }
  }
  const path = `${base.pathname.replace(/\/+$/, '')}/${subPath}`;
  return pass(`${base.origin}${path}${base.search}`);
};

const UPSTREAM_ERRORS: Record<string, ErrorCode> = {
  FST_REPLY_FROM_GATEWAY_TIMEOUT: 'UPSTREAM_TIMEOUT',
};

/** Which registry code a failed forward gets; nothing of the seller's URL is in any of them. */
const upstreamErrorCode = (error: Error & { code?: string }): ErrorCode => {
  if (isSsrfBlockedError(error)) return 'UPSTREAM_FORBIDDEN';
  return UPSTREAM_ERRORS[error.code ?? ''] ?? 'UPSTREAM_UNAVAILABLE';
};

const sha256Hex = (body: Buffer): string => createHash('sha256').update(body).digest('hex');

/**
 * A receipt goes with every paid answer, except a non-2xx one under `after_response`: that payment is released
 * (never charged) and may pay for another call, which would then be a second receipt for one payment.
 */
const receiptDue = (state: CallState, status: number): boolean =>
  state.receipt !== null && (state.listing.settlementPolicy !== 'after_response' || (status >= 200 && status < 300));

/**
 * The client accepts trailers (`TE: trailers`, RFC 9110 §10.1.4) and the answer has a body to put them after
 * (not HEAD, 204 or 304).
 */
const wantsTrailers = (request: FastifyRequest, status: number): boolean =>
  /(^|,)\s*trailers\s*(,|;|$)/i.test(String(request.headers.te ?? '')) &&
  request.method !== 'HEAD' &&
  status !== 204 &&
  status !== 304;

export const gatewayRoutes = async (app: FastifyInstance, deps: GatewayDeps): Promise<void> => {
  const { store, keys, events } = deps;
  const metrics = deps.metrics ?? createProxyMetrics(store);

  // The body is read by the pipeline itself, after the caller is authenticated and admitted.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
  app.decorateRequest('gateway', null);
  app.decorateRequest('gatewayError', null);
  app.decorateRequest('gatewaySteps', null);
  await app.register(replyFrom, { undici: deps.upstream, disableRequestLogging: true });

  const send = (reply: FastifyReply, error: ApiError, state?: CallState) => {
    if (state) state.errorCode = error.code;
    reply.request.gatewayError = error.code;
    if (error.headers) reply.headers(error.headers);
    // A 402 carries its payment requirements beside the error (DESIGN §3.4), not inside it.
    const { payment, ...details } = error.details ?? {};
    return reply
      .code(error.status)
      .type('application/json; charset=utf-8')
      .send({
        error: {
          code: error.code,
          message: error.message,
          request_id: state?.id ?? reply.request.id,
          hint: error.hint,
          docs: `/docs/errors#${error.code}`,
          ...details,
        },
        ...(payment === undefined ? {} : { payment }),
      });
  };

  const handler = async (
    request: FastifyRequest<{ Params: { listingId: string; '*'?: string } }>,
    reply: FastifyReply,
  ) => {
    const startedAt = performance.now();
    const steps: [string, number][] = [];
    request.gatewaySteps = steps;
    let mark = startedAt;
    const step = (name: string) => {
      const now = performance.now();
      steps.push([name, now - mark]);
      mark = now;
    };

    // --- resolve listing ------------------------------------------------------------------------------------------
    if (!store.loaded) return send(reply, new ApiError('STATE_UNAVAILABLE', { headers: { 'retry-after': '1' } }));
    const listing = store.listing(request.params.listingId);
    if (!listing) return send(reply, new ApiError('LISTING_NOT_FOUND'));
    if (listing.status === 'archived') return send(reply, new ApiError('LISTING_ARCHIVED'));
    if (listing.status === 'paused') return send(reply, new ApiError('LISTING_PAUSED'));
    step('resolve');

    // --- authenticate (memory; one Redis lookup only for a key not seen yet) --------------------------------------
    const token = bearerToken(request.headers.authorization);
    if (token === undefined) return send(reply, new ApiError('AUTH_REQUIRED'));
    const hash = store.keyHash(token);
    if (hash === null) return send(reply, new ApiError('API_KEY_MALFORMED'));
    const key = store.key(hash) ?? (await store.fetchKey(hash));
    if (!key) return send(reply, new ApiError('API_KEY_INVALID'));
    if (key.status === 'revoked') return send(reply, new ApiError('API_KEY_REVOKED'));
    const buyer = store.agent(key.agent_id);
    if (buyer?.status === 'paused') return send(reply, new ApiError('AGENT_PAUSED'));
    step('authenticate');

    // A body declared larger than the listing accepts is refused before anything is paid or counted.
    const declaredBytes = Number(request.headers['content-length'] ?? 0);
    if (declaredBytes > listing.bodyLimitBytes) {
      reply.header('connection', 'close');
      return send(
        reply,
        new ApiError('PAYLOAD_TOO_LARGE', {
          message: `The request body is larger than this listing accepts (${listing.bodyLimitBytes} bytes).`,
          details: { limit_bytes: listing.bodyLimitBytes },
        }),
      );
    }

    // --- admit (free) or pay and admit (per_call): limits, proof consumption and the start record, one script ------
    const sub = upstreamUrl(listing, rawSubPath(request.url));
    if (!sub.ok) return send(reply, sub.error);
    const state: CallState = {
      id: newId('gatewayRequest'),
      listing,
      startedAt,
      bytesIn: 0,
      bytesOut: 0,
      upstreamStartedAt: null,
      upstreamHeadersAt: null,
      errorCode: null,
      steps,
      paid: null,
      paymentOutcome: null,
      receipt: null,
    };
    const admissionRequest: AdmissionRequest = {
      keyStateKey: keys.rateKey(key.key_id),
      listingStateKey: keys.rateListing(listing.id),
      keyLimitPerMinute: buyer?.rate_limit_per_minute ?? deps.keyRateLimitPerMinute,
      listingLimitPerMinute: listing.rateLimitPerMinute ?? deps.listingRateLimitPerMinute,
      startEvent: JSON.stringify({
        type: 'gateway.start',
        v: 1,
        id: state.id,
        listing_id: listing.id,
        seller_id: listing.sellerId,
        buyer_id: key.agent_id,
        key_id: key.key_id,
        method: request.method,
        path: `/${request.params['*'] ?? ''}`,
        price_atomic: listing.priceAtomic.toString(),
        currency: listing.currency,
        at: Date.now(),
      } satisfies GatewayStartEvent),
    };
    let admission: Admission;
    if (listing.pricingModel === 'free') {
      try {
        admission = await deps.admit(admissionRequest);
      } catch {
        // Redis unreachable: free listings fall back to this proxy's own limits; the start record waits in memory.
        admission = deps.localAdmission.admit(admissionRequest);
        if (admission.allowed) events.pushJson(admissionRequest.startEvent);
      }
    } else {
      if (!deps.payments) return send(reply, new ApiError('PAYMENT_RAILS_UNAVAILABLE'));
      // An unpaid call counts against the limits and is recorded (status payment_required) like any other call:
      // each 402 writes a payment request, so an agent cannot issue them without bound.
      if (!hasPaymentProof(request.headers)) {
        let unpaid: Admission;
        try {
          unpaid = await deps.admit(admissionRequest);
        } catch {
          return send(reply, new ApiError('STATE_UNAVAILABLE', { headers: { 'retry-after': '2' } }));
        }
        if (!unpaid.allowed) {
          return send(
            reply,
            new ApiError('RATE_LIMITED', {
              message: `Rate limit of ${unpaid.limit} calls per minute reached.`,
              headers: rateLimitHeaders(unpaid),
            }),
          );
        }
        request.gateway = state;
        reply.header('x-crochet-request-id', state.id);
      }
      const spendKey = keys.spend(key.agent_id, currentUtcDay());
      let decision: PaymentDecision;
      try {
        decision = await payForCall(deps.payments, {
          listing,
          buyerId: key.agent_id,
          buyerEvmWallets: buyer?.evm_wallets ?? [],
          headers: request.headers,
          gatewayRequestId: state.id,
          admission: {
            ...admissionRequest,
            gatewayRequestId: state.id,
            listingId: listing.id,
            buyerId: key.agent_id,
            spendKey,
            spendCapAtomic: buyer?.daily_spend_cap_atomic ?? null,
            priceAtomic: listing.priceAtomic.toString(),
          },
        });
      } catch (error) {
        // Paid calls fail closed: without Redis nothing is consumed, so nothing is forwarded unpaid.
        request.log.warn({ err: error }, 'payment step could not reach its state');
        return send(reply, new ApiError('STATE_UNAVAILABLE', { headers: { 'retry-after': '2' } }));
      }
      if (!decision.ok) {
        if (decision.refund) {
          // Refused after its transfer was consumed (the cap): recorded with the payment, marked for refund.
          state.paid = {
            ...decision.refund,
            spend: { key: spendKey, amountAtomic: listing.priceAtomic.toString(), verifiedKey: '' },
          };
          state.paymentOutcome = { status: 'refund_due', tx: decision.refund.payment.tx };
          request.gateway = state;
          reply.header('x-crochet-request-id', state.id);
        }
        return send(reply, decision.error, request.gateway ?? undefined);
      }
      admission = decision.admission;
      state.paid = {
        payment: decision.payment,
        rail: decision.rail,
        spend: { key: spendKey, amountAtomic: listing.priceAtomic.toString(), verifiedKey: decision.verifiedKey },
      };
    }
    const limitHeaders = rateLimitHeaders(admission);
    if (!admission.allowed) {
      return send(
        reply,
        new ApiError('RATE_LIMITED', {
          message: `Rate limit of ${admission.limit} calls per minute reached.`,
          headers: limitHeaders,
        }),
      );
    }
    request.gateway = state;
    reply.header('x-crochet-request-id', state.id);
    step('admit');

    // --- settle before forwarding (the default policy; direct transfers and Relay are settled already) ----------
    if (state.paid) {
      const { payment, rail } = state.paid;
      if (rail.settle && listing.settlementPolicy === 'before_forward') {
        // A settlement that throws (RPC down mid-way) may or may not have been broadcast: treat it as pending.
        const settled = await rail.settle(payment).catch((error: unknown) => {
          request.log.warn({ err: error }, 'settlement failed to complete');
          return { ok: false, pending: true, tx: null } as SettleResult;
        });
        if (settled.pending) {
          // Broadcast, not confirmed in time. The buyer is told to retry with the same payment, so give the proof
          // back: the retry is admitted from the verification already made and settles by waiting for this same
          // transaction (the facilitator remembers it in Redis), never by paying twice.
          await releaseProof(deps.payments!, payment, state.id, state.paid!.spend, 'hold').catch((error: unknown) =>
            request.log.error({ err: error }, 'could not release a pending proof'),
          );
          state.paymentOutcome = { status: 'pending', tx: settled.tx };
          return send(reply, new ApiError('PAYMENT_PENDING', { headers: { 'retry-after': '2' } }), state);
        }
        if (!settled.ok) {
          await releaseProof(deps.payments!, payment, state.id, state.paid!.spend).catch((error: unknown) =>
            request.log.error({ err: error }, 'could not release an unsettled proof'),
          );
          state.paymentOutcome = { status: 'released', tx: null };
          return send(
            reply,
            new ApiError(
              'PAYMENT_SETTLEMENT_FAILED',
              settled.message ? { message: `Settlement failed: ${settled.message}.` } : {},
            ),
            state,
          );
        }
        state.paymentOutcome = { status: 'settled', tx: settled.tx };
        // Settled: the call goes ahead even if Redis hiccups here (the own-settler check keeps the tx from paying again).
        await consumeSettlementTx(deps.payments!, payment, settled.tx, state.id).catch((error: unknown) =>
          request.log.error({ err: error }, 'could not mark the settlement transaction used'),
        );
        reply.header(
          'payment-response',
          encodePaymentResponseHeader({
            success: true,
            transaction: settled.tx ?? '',
            network: payment.network as never,
            payer: payment.payer,
          }),
        );
      } else if (!rail.settle) {
        state.paymentOutcome = { status: 'settled', tx: payment.tx };
      }
      step('settle');
    }

    // --- read body (once: it is hashed for the signature) ---------------------------------------------------------
    const body = request.body
      ? await readBody(request.body as IncomingMessage, listing.bodyLimitBytes)
      : pass(Buffer.alloc(0));
    if (!body.ok) {
      reply.header('connection', 'close');
      return send(reply, body.error, state);
    }
    state.bytesIn = body.value.length;
    step('read_body');

    // --- sign (§3.3: one v1= entry per secret valid now) ----------------------------------------------------------
    const now = Date.now();
    const secrets = listing.secrets.filter((s) => s.expiresAtMs === null || s.expiresAtMs > now).map((s) => s.secret);
    const timestamp = Math.floor(now / 1000);
    const bodySha256 = sha256Hex(body.value);
    const signed: Record<string, string> = {
      [SIGNATURE_HEADERS.requestId]: state.id,
      [SIGNATURE_HEADERS.listingId]: listing.id,
      [SIGNATURE_HEADERS.timestamp]: String(timestamp),
      [SIGNATURE_HEADERS.bodySha256]: bodySha256,
      [SIGNATURE_HEADERS.signature]: signatureHeader(
        secrets,
        canonicalString(timestamp, state.id, listing.id, bodySha256),
      ),
    };
    // Paid calls: the header receipt, over what is known before the seller answers (§3.4).
    if (state.paid && deps.receipts) {
      const { payment } = state.paid;
      const claims: HeaderReceiptClaims = {
        iss: deps.receipts.issuer,
        sub: state.id,
        listing_id: listing.id,
        amount: payment.amountAtomic,
        asset: payment.asset,
        network: payment.network,
        payment_proof: {
          rail: payment.rail,
          payer: payment.payer,
          tx: state.paymentOutcome?.tx ?? payment.tx,
          proof_ids: payment.proofIds,
        },
        request_body_sha256: bodySha256,
      };
      const header = await deps.receipts.signer.signHeaderReceipt(claims);
      state.receipt = { claims, header, responseSha256: null, full: null };
    }
    step('sign');

    // --- forward and stream back ----------------------------------------------------------------------------------
    const hasBody = request.method !== 'GET' && request.method !== 'HEAD';
    state.upstreamStartedAt = performance.now();
    return reply.from(sub.value, {
      ...(hasBody
        ? { body: body.value, contentType: request.headers['content-type'] ?? 'application/octet-stream' }
        : {}),
      timeout: listing.timeoutMs,
      rewriteRequestHeaders: (_req, headers) => sellerRequestHeaders(headers, signed),
      rewriteHeaders: (headers) => {
        state.upstreamHeadersAt = performance.now();
        step('upstream_headers');
        return buyerResponseHeaders(headers, { ...limitHeaders, 'x-crochet-request-id': state.id });
      },
      // Counting (and, for a receipt, hashing) chunks as they stream is the only way to know the size and hash of a
      // chunked or SSE answer without holding it.
      onResponse: (_req, upstreamReply, res) => {
        const receipt = receiptDue(state, upstreamReply.statusCode) ? state.receipt : null;
        const hash = receipt ? createHash('sha256') : null;
        if (receipt && hash) {
          upstreamReply.header('x-crochet-receipt', receipt.header);
          if (wantsTrailers(request, upstreamReply.statusCode)) {
            // Fastify declares `Trailer` and switches to chunked coding; a Content-Length may not go with it
            // (RFC 9112 §6.3). The trailer is computed after the last chunk: the body's hash is final by then.
            upstreamReply.removeHeader('content-length');
            upstreamReply.trailer('x-crochet-receipt', () => fullReceipt(state, upstreamReply.statusCode));
          }
          res.stream.once('end', () => {
            receipt.responseSha256 = hash.digest('hex');
          });
        }
        res.stream.on('data', (chunk: Buffer) => {
          state.bytesOut += chunk.length;
          hash?.update(chunk);
        });
        metrics.openStreams.inc();
        upstreamReply.raw.once('close', () => metrics.openStreams.dec());
        upstreamReply.send(res.stream);
      },
      onError: (errorReply, { error }) => {
        const code = upstreamErrorCode(error as Error & { code?: string });
        metrics.upstreamErrors.inc({ kind: upstreamErrorKind(error, code === 'UPSTREAM_FORBIDDEN') });
        errorReply.request.log.warn({ code, listing: listing.id, err: error.cause ?? error }, 'upstream failed');
        send(errorReply as FastifyReply, new ApiError(code), state);
      },
    });
  };

  app.route({
    method: ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'],
    url: '/api/v1/gateway/:listingId',
    handler,
  });
  app.route({
    method: ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'],
    url: '/api/v1/gateway/:listingId/*',
    handler,
  });

  // --- record: the completion event, after the last byte (or the connection closed), batched ---------------------
  app.addHook('onResponse', async (request, reply) => {
    const state = request.gateway;
    const endedAt = performance.now();
    const status = reply.statusCode;
    recordMetrics(request as FastifyRequest<{ Params: { listingId: string } }>, state, status, endedAt, reply);
    if (!state) return;
    const event: GatewayEndEvent = {
      type: 'gateway.end',
      v: 1,
      id: state.id,
      listing_id: state.listing.id,
      status:
        state.errorCode && state.upstreamStartedAt !== null
          ? 'upstream_error'
          : state.errorCode === 'PAYMENT_REQUIRED'
            ? 'payment_required'
            : state.errorCode
              ? 'denied'
              : 'completed',
      http_status: status,
      error_code: state.errorCode,
      latency_ms: Math.round(endedAt - state.startedAt),
      upstream_latency_ms:
        state.upstreamStartedAt === null
          ? null
          : Math.round((state.upstreamHeadersAt ?? endedAt) - state.upstreamStartedAt),
      bytes_in: state.bytesIn,
      bytes_out: state.bytesOut,
      at: Date.now(),
    };
    if (state.receipt?.responseSha256) {
      // Only for an answer that streamed to its end: a cut body has no hash worth signing.
      const receipt = await fullReceipt(state, status).catch((error: unknown) => {
        request.log.error({ err: error }, 'full receipt not signed');
        return null;
      });
      if (receipt) event.receipt = receipt;
    }
    if (state.paid) {
      const outcome = await settleAfterResponse(state, status);
      if (outcome) event.payment_outcome = outcome;
    }
    events.push(event);
  });

  /** Every gateway answer into the metrics: one place, from what the call state already holds. */
  const recordMetrics = (
    request: FastifyRequest<{ Params: { listingId: string } }>,
    state: CallState | null,
    status: number,
    endedAt: number,
    reply: FastifyReply,
  ) => {
    const errorCode = state?.errorCode ?? request.gatewayError;
    const outcome: GatewayOutcome =
      errorCode && state?.upstreamStartedAt != null
        ? 'upstream_error'
        : errorCode === 'PAYMENT_REQUIRED'
          ? 'payment_required'
          : errorCode
            ? 'denied'
            : 'forwarded';
    // Only ids of listings in the config: a made-up id in the URL must not become a label value.
    const listingId = state?.listing.id ?? request.params.listingId;
    const listing = state || store.listing(listingId) ? listingId : 'unknown';
    const labels = { listing, method: request.method, status_class: statusClass(status), outcome };
    const total = (state ? endedAt - state.startedAt : reply.elapsedTime) / 1000;
    metrics.requests.inc(labels);
    metrics.requestDuration.observe(labels, total);
    if (errorCode) metrics.errors.inc({ code: errorCode, status: String(status) });
    for (const [name, ms] of request.gatewaySteps ?? []) metrics.stepDuration.observe({ step: name }, ms / 1000);
    // Proxy-added is what happened before the forward: from then on the seller sets the pace (a streamed body
    // arrives as fast as the seller writes it), so the whole exchange with the seller is not the gateway's time.
    let withSeller = 0;
    if (state?.upstreamStartedAt != null) {
      metrics.upstreamDuration.observe(
        { listing },
        ((state.upstreamHeadersAt ?? endedAt) - state.upstreamStartedAt) / 1000,
      );
      withSeller = (endedAt - state.upstreamStartedAt) / 1000;
    }
    metrics.proxyAdded.observe(Math.max(0, total - withSeller));
    if (state) {
      metrics.bytes.inc({ direction: 'in' }, state.bytesIn);
      metrics.bytes.inc({ direction: 'out' }, state.bytesOut);
    }
  };

  /**
   * The full receipt: the header receipt's claims plus the answer as streamed. Signed once; the trailer and the
   * completion event carry the same JWS.
   */
  const fullReceipt = (state: CallState, status: number): Promise<string> => {
    const receipt = state.receipt!;
    receipt.full ??= deps.receipts!.signer.signFullReceipt({
      ...receipt.claims,
      status,
      response_body_sha256: receipt.responseSha256!,
      response_bytes: state.bytesOut,
    });
    return receipt.full;
  };

  /**
   * What became of a paid call's payment once the answer is out. `after_response`: settle only when the seller
   * answered 2xx, otherwise give the proof back (nothing was charged). `before_forward`: the payment settled before
   * forwarding, so a seller failure marks it for refund (the ledger books the reversal).
   */
  const settleAfterResponse = async (state: CallState, status: number): Promise<PaymentOutcome | null> => {
    const { payment, rail } = state.paid!;
    const sellerOk = status >= 200 && status < 300 && state.errorCode === null;
    if (state.paymentOutcome?.status === 'settled') {
      return sellerOk ? state.paymentOutcome : { status: 'refund_due', tx: state.paymentOutcome.tx };
    }
    if (state.paymentOutcome) return state.paymentOutcome;
    if (!rail.settle) return { status: 'settled', tx: payment.tx };
    if (!sellerOk) {
      await releaseProof(deps.payments!, payment, state.id, state.paid!.spend).catch(() => {});
      return { status: 'released', tx: null };
    }
    try {
      const settled = await rail.settle(payment);
      if (settled.ok) {
        await consumeSettlementTx(deps.payments!, payment, settled.tx, state.id);
        return { status: 'settled', tx: settled.tx };
      }
      // The seller has served; a settlement refused now leaves the call unpaid (the ledger and operators see it).
      return { status: settled.pending ? 'pending' : 'unpaid', tx: settled.tx };
    } catch {
      return { status: 'pending', tx: null };
    }
  };
};
