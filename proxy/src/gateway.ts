import type { ServerResponse } from 'node:http';
import type { EventOutbox, GatewayScripts, LocalAdmission, ReceiptSigner } from '@crochet/plugins';
import { ApiError, type GatewayExit } from '@crochet/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Dispatcher } from 'undici';
import { type Call, type GatewayRequest, mark, openCall } from './call.js';
import type { ConfigStore } from './config-store.js';
import { createProxyMetrics, type ProxyMetrics } from './metrics.js';
import type { Payments } from './payments.js';
import type { RedisHealth } from './redis-state.js';
import { admit } from './steps/admit.js';
import { finalize, refuse } from './steps/finalize.js';
import { forward } from './steps/forward.js';
import { readBody } from './steps/read-body.js';
import { authenticate, checkRequest, resolveListing } from './steps/resolve.js';
import { sign } from './steps/sign.js';

/**
 * The gateway call (DESIGN §3.3), from arrival to the last streamed byte:
 *
 *   resolve listing → authenticate key → check the request → admit (limits, payment, start record: one Redis round
 *   trip) → read body → settle (paid, before_forward) → sign → forward and stream back → finalize
 *
 * Each step is a function in `steps/` (payments in `payments.ts`) that fills the call and returns a refusal as a
 * value (a registry error) or null to go on; only bugs throw. Each step's time is recorded for the metrics. Every way
 * the call can end goes through the one finalizer (`steps/finalize.ts`), exactly once — including the buyer leaving
 * mid-step, which the pipeline notices when the step in hand returns (nothing a step started is left half done).
 */

export interface GatewayDeps {
  store: ConfigStore;
  scripts: GatewayScripts;
  /** Per-process limits used when Redis cannot be reached (free listings only). */
  localAdmission: LocalAdmission;
  outbox: EventOutbox;
  health: RedisHealth;
  /** Connections to sellers: SSRF-guarded at connect time, no redirects. */
  upstream: Dispatcher;
  keyRateLimitPerMinute: number;
  listingRateLimitPerMinute: number;
  /** Absent when no payment rail is configured: per_call listings then answer PAYMENT_RAILS_UNAVAILABLE. */
  payments?: Payments;
  /** Absent when no receipt key is configured: paid answers then carry no receipt. */
  receipts?: { signer: ReceiptSigner; issuer: string };
  /** The proxy's metrics (proxy/src/metrics.ts); one registry per proxy. */
  metrics?: ProxyMetrics;
}

/** The call a buyer's response belongs to, for the response's 'close' listener. */
const CALL = Symbol('crochet.call');
type CallResponse = ServerResponse & { [CALL]?: Call };

type Step = readonly [name: string, run: (call: Call) => ApiError | null | Promise<ApiError | null>];

/** The methods the gateway forwards; any other method is Fastify's (405-style errors in the envelope). */
export const GATEWAY_METHODS = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'] as const;

/** Runs one gateway call to its end; it writes `res` itself and never rejects. */
export type GatewayHandler = (request: GatewayRequest, res: ServerResponse) => Promise<void>;

export const createGateway = (deps: GatewayDeps): GatewayHandler => {
  const { store, payments, receipts } = deps;
  const ends = {
    store,
    outbox: deps.outbox,
    metrics: deps.metrics ?? createProxyMetrics(store),
    payments,
    receipts,
    upstream: deps.upstream,
  };

  const steps: readonly Step[] = [
    ['resolve', (call) => resolveListing(call, store)],
    ['authenticate', (call) => authenticate(call, store)],
    ['check', checkRequest],
    ['admit', (call) => admit(call, deps)],
    ['read_body', readBody],
    ['settle', (call) => (call.paid && payments ? payments.beforeForward(call) : null)],
    ['sign', (call) => sign(call, receipts)],
  ];

  /**
   * The steps before the forward; a refusal, or null when the call goes to the seller (or the buyer left). A step
   * that finished at once (most do, from memory) goes on in the same turn: only a step that waits is awaited.
   */
  const pipeline = async (call: Call): Promise<ApiError | null> => {
    for (const [name, run] of steps) {
      const result = run(call);
      const refusal = result instanceof Promise ? await result : result;
      mark(call, name);
      if (refusal || call.gone) return refusal;
    }
    return null;
  };

  /**
   * The buyer's connection closed before the answer was out. While the seller is being called, the call ends here
   * (and the seller request is aborted); between steps, the pipeline ends it when the step in hand returns.
   */
  function onClose(this: CallResponse): void {
    const call = this[CALL]!;
    if (call.finalized || call.res.writableFinished) return;
    call.gone = true;
    if (call.upstreamStartedAt === null) return;
    finalize(call, { kind: 'client_gone' }, ends);
    call.upstream?.abort(new Error('the buyer closed the connection'));
  }

  return async (request, res) => {
    const call = openCall(request, res, performance.now());
    // One listener function for every call (no closure per call); 'close' is emitted once.
    (res as CallResponse)[CALL] = call;
    res.on('close', onClose);
    let refusal: ApiError | null;
    try {
      refusal = await pipeline(call);
    } catch (error) {
      request.log.error({ err: error }, 'gateway step failed');
      refusal = new ApiError('INTERNAL_ERROR');
    }
    try {
      if (call.gone) return finalize(call, { kind: 'client_gone' }, ends);
      if (refusal) return refuse(call, refusal, ends);
      forward(call, ends);
    } catch (error) {
      // A bug past the steps (the refusal or the forward threw): logged, the call still ended once (the finalizer
      // does nothing for a call that already ended), the connection cut — as Fastify does for a hijacked route —
      // never an unhandled rejection.
      request.log.error({ err: error }, 'gateway call failed');
      try {
        if (!call.finalized) {
          if (!call.streaming) call.errorCode = 'INTERNAL_ERROR';
          finalize(call, brokenExit(call), ends);
        }
        call.upstream?.abort(new Error('the gateway failed'));
      } catch (again) {
        request.log.error({ err: again }, 'gateway call not ended');
      } finally {
        res.destroy();
      }
    }
  };
};

/**
 * How a call ends when the gateway itself failed past its steps, by how far it got: a seller that never received
 * the request did not fail (refused, whatever the forward had begun), and an answer already streaming is cut.
 */
const brokenExit = (call: Call): GatewayExit => {
  if (call.streaming) return { kind: 'stream_aborted' };
  return call.forwarded
    ? { kind: 'seller_failed', code: 'INTERNAL_ERROR' }
    : { kind: 'refused', code: 'INTERNAL_ERROR' };
};

/**
 * The gateway's routes in Fastify, for what the server's own dispatch (app.ts) leaves to Fastify: targets in
 * absolute form, listing ids outside the usual alphabet, and the like — Fastify normalises them first.
 */
export const gatewayRoutes = async (app: FastifyInstance, deps: { handle: GatewayHandler }): Promise<void> => {
  const handler = (
    request: FastifyRequest<{ Params: { listingId: string; '*'?: string } }>,
    reply: FastifyReply,
  ): Promise<void> => {
    // The gateway writes its answers itself (the seller's, streamed, or an error envelope).
    reply.hijack();
    return deps.handle(
      {
        id: request.id,
        method: request.method,
        url: request.url,
        headers: request.headers,
        listingId: request.params.listingId,
        subPath: request.params['*'] ?? '',
        raw: request.raw,
        log: request.log,
      },
      reply.raw,
    );
  };

  // The body is read by the pipeline itself, after the caller is authenticated and admitted.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
  app.route({ method: [...GATEWAY_METHODS], url: '/api/v1/gateway/:listingId', handler });
  app.route({ method: [...GATEWAY_METHODS], url: '/api/v1/gateway/:listingId/*', handler });
};
