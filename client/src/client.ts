import { createHash } from 'node:crypto';
import { decodePaymentRequiredHeader, decodePaymentResponseHeader } from '@x402/core/http';
import type { PaymentRequired } from '@x402/core/types';
import { CrochetApiError, CrochetClientError, type ErrorBody } from './errors.js';
import { type Budget, fromAtomic, toAtomic } from './money.js';
import { solveChallenge } from './pow.js';
import type { PaymentBody, PaymentProof, RailName, RelayOptions, Wallets } from './rails.js';
import { type ReceiptExpectations, type ReceiptVerdict, verifyReceiptWith } from './receipts.js';

/**
 * The buyer's side of Crochet (DESIGN §3): register with proof of work, discover listings, and call them — paying
 * when a listing answers 402, retrying with the same proof through pending and unavailable verifiers, and after a
 * dropped connection asking the buyer's history what became of the call instead of paying again. One payment per
 * call, whatever happens on the way.
 */

export interface CrochetOptions {
  /** The gateway's public base URL, e.g. https://crochet.example (no trailing /api/v1). */
  baseUrl: string;
  /** `am_k_…`; `register()` sets it. */
  apiKey?: string;
  /** The wallets calls are paid from; none → only free listings can be called. */
  wallets?: Wallets;
  /** Relay payments: the API to quote at (default: the 402's `relay.api_url`), an integrator key, the origin. */
  relay?: RelayOptions;
  fetch?: typeof fetch;
}

export type ProgressPhase =
  | 'payment_required'
  | 'paying'
  | 'paid'
  | 'waiting'
  | 'retrying'
  | 'recovering'
  | 'streaming';

export interface ProgressEvent {
  phase: ProgressPhase;
  message: string;
  rail?: RailName;
  amount?: string;
  proof?: PaymentProof;
  code?: string;
  retryAfterSeconds?: number;
}

export interface CallOptions {
  /** The most this call may cost (decimal USDC); a higher price is refused before paying. */
  maxPrice?: string;
  /** A budget shared across calls; the price is reserved before paying and refused when it does not fit. */
  budget?: Budget;
  /** Which rail pays: `auto` (default) takes the first option of the 402 a configured wallet can pay. */
  rail?: RailName | 'auto';
  signal?: AbortSignal;
  /** Resume a call already paid: retry with this proof (from an earlier error's `details.proof`), never pay again. */
  proof?: PaymentProof;
  method?: string;
  /** Appended to the gateway URL: /api/v1/gateway/:listingId<subPath>. */
  subPath?: string;
  headers?: Record<string, string>;
  /** How long the call keeps retrying pending payments and unavailable stores (default 120 s). */
  timeoutMs?: number;
  onProgress?: (event: ProgressEvent) => void;
}

/** A JSON object as the API returns it. */
// biome-ignore lint/suspicious/noExplicitAny: API payloads are read field by field by the caller.
export type Json = Record<string, any>;

/** A listing as GET /api/v1/listings returns it (DESIGN §3.2). */
export interface Listing extends Json {
  id: string;
  name: string;
  description: string;
  pricing_model: 'free' | 'per_call';
  price: { amount: string; currency: string; amount_atomic: string } | null;
  gateway_url: string;
  crochet_score: number | null;
  verified: boolean;
}

/** What registration returns; `api_key` is shown once. */
export interface Registered {
  agent: Json & { id: string; name: string };
  api_key: string;
  authorization_header: string;
}

export interface GatewayRequest {
  id: string;
  listing_id: string;
  status: string;
  http_status: number | null;
  error_code: string | null;
  price: { amount: string; currency: string; amount_atomic: string } | null;
  payment: { proof_ids?: string[]; tx?: string; outcome?: { status: string; tx: string | null } } | null;
  refund: 'refund_due' | 'refunded' | null;
  created_at: string;
  completed_at: string | null;
  [field: string]: unknown;
}

/** A seller's answer, streaming. Read it once: `body`, `text()` or `json()`. */
export interface CallResult {
  status: number;
  ok: boolean;
  headers: Headers;
  /** The gateway request id (X-Crochet-Request-Id). */
  requestId: string | null;
  /** The payment this call was made with (null for a free call). */
  payment: PaymentProof | null;
  /** Decimal price paid (null for a free call). */
  price: string | null;
  /** The x402 settlement (PAYMENT-RESPONSE), when the call was paid with x402. */
  settlement: { success: boolean; transaction: string; network: string; payer?: string } | null;
  /** The header receipt (X-Crochet-Receipt), when the call was paid. */
  headerReceipt: string | null;
  body: ReadableStream<Uint8Array>;
  text(): Promise<string>;
  json<T = unknown>(): Promise<T>;
  /**
   * The full receipt of a paid call, verified against the JWKS, once the answer has been read to its end: its
   * response hash must be the hash of the bytes this client received.
   */
  receipt(): Promise<ReceiptVerdict & { jws: string }>;
}

/** Gateway refusals that say: retry the same call, with the same proof if any, after Retry-After. */
const RETRY_SAME_PROOF = new Set([
  'PAYMENT_PENDING',
  'PAYMENT_UNCONFIRMED',
  'PAYMENT_VERIFIER_UNAVAILABLE',
  'STATE_UNAVAILABLE',
  'RATE_LIMITED',
]);
const WAIT_CAP_MS = 10_000;
/** How long history may lag behind the gateway (its events are recorded asynchronously). */
const HISTORY_GRACE_MS = 3_000;

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

const sha256Hex = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');

const retryAfterMs = (res: Response, fallbackMs = 1_000): number => {
  const value = Number(res.headers.get('retry-after'));
  return Number.isFinite(value) && value >= 0 ? Math.min(value * 1000, WAIT_CAP_MS) : fallbackMs;
};

export class Crochet {
  readonly baseUrl: string;
  apiKey: string | undefined;
  readonly wallets: Wallets;
  readonly relay: RelayOptions;
  readonly #fetch: typeof fetch;
  #jwks: { keys: object[] } | undefined;

  constructor(options: CrochetOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.apiKey = options.apiKey;
    this.wallets = options.wallets ?? {};
    this.relay = options.relay ?? {};
    this.#fetch = options.fetch ?? fetch;
  }

  // --- plain API ---------------------------------------------------------------------------------------------------

  /** A JSON API call; returns `data` (or the whole body for lists), throws CrochetApiError on an error envelope. */
  async request<T = { data: Json }>(
    method: string,
    path: string,
    options: { body?: unknown; query?: Record<string, string | number | undefined>; auth?: boolean } = {},
  ): Promise<T> {
    const url = new URL(`${this.baseUrl}${path}`);
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    const headers: Record<string, string> = { accept: 'application/json' };
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    if (options.auth !== false && this.apiKey) headers['authorization'] = `Bearer ${this.apiKey}`;
    const res = await this.#fetch(url, {
      method,
      headers,
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
    });
    const text = await res.text();
    let json: unknown = null;
    try {
      json = JSON.parse(text);
    } catch {}
    if (!res.ok) throw apiError(res.status, json, text);
    return json as T;
  }

  /**
   * Registers an agent (DESIGN §3.1): fetches a proof-of-work challenge, solves it, registers, and keeps the key.
   * The key is shown once: store `api_key`.
   */
  async register(input: {
    name: string;
    description?: string;
    wallet?: { chain: 'solana' | 'evm'; address: string };
  }): Promise<Registered> {
    const challenge = (await this.request('POST', '/api/v1/auth/challenge', { auth: false })).data as {
      challenge_id: string;
      salt: string;
      difficulty: number;
    };
    const nonce = solveChallenge(challenge.salt, challenge.difficulty);
    const { data } = await this.request<{ data: Registered }>('POST', '/api/v1/register', {
      auth: false,
      body: { challenge_id: challenge.challenge_id, nonce, ...input },
    });
    this.apiKey = data.api_key;
    return data;
  }

  readonly listings = {
    /** GET /api/v1/listings: `q`, `tag`, `pricing_model`, `sort` (score|newest|price), `limit`, `cursor`. */
    search: (
      query: {
        q?: string;
        tag?: string;
        pricing_model?: 'free' | 'per_call';
        sort?: 'score' | 'newest' | 'price';
        limit?: number;
        cursor?: string;
      } = {},
    ): Promise<{ data: Listing[]; next_cursor: string | null }> =>
      this.request('GET', '/api/v1/listings', { query: query as Record<string, string> }),
    get: async (id: string): Promise<Listing> =>
      (await this.request<{ data: Listing }>('GET', `/api/v1/listings/${encodeURIComponent(id)}`)).data,
  };

  readonly history = {
    /** GET /api/v1/gateway-requests: your calls, newest first. */
    list: (
      query: {
        role?: 'buyer' | 'seller';
        listing_id?: string;
        status?: string;
        payment_proof?: string;
        limit?: number;
        cursor?: string;
      } = {},
    ): Promise<{ data: GatewayRequest[]; next_cursor: string | null }> =>
      this.request('GET', '/api/v1/gateway-requests', { query }),
    get: async (id: string): Promise<GatewayRequest> =>
      (await this.request<{ data: GatewayRequest }>('GET', `/api/v1/gateway-requests/${encodeURIComponent(id)}`)).data,
    /** The full receipt of a paid call (404 RECEIPT_NOT_AVAILABLE until a moment after its answer finished). */
    receipt: async (id: string): Promise<{ receipt: string; claims: unknown; jwks_url: string }> =>
      (
        await this.request<{ data: { receipt: string; claims: unknown; jwks_url: string } }>(
          'GET',
          `/api/v1/gateway-requests/${encodeURIComponent(id)}/receipt`,
        )
      ).data,
  };

  readonly ledger = {
    /** GET /api/v1/ledger: your entries (buyer debits; as seller, credits). */
    list: (
      query: { role?: string; gateway_request_id?: string; since?: string; limit?: number; cursor?: string } = {},
    ): Promise<{ data: Json[]; next_cursor: string | null }> => this.request('GET', '/api/v1/ledger', { query }),
  };

  readonly receipts = {
    /** The gateway's receipt keys (/.well-known/jwks.json), fetched once. */
    jwks: async (refresh = false): Promise<{ keys: object[] }> => {
      if (!this.#jwks || refresh)
        this.#jwks = await this.request<{ keys: object[] }>('GET', '/.well-known/jwks.json', { auth: false });
      return this.#jwks!;
    },
    /** Verifies a receipt (compact JWS) against the JWKS; refetches the keys once for an unknown `kid`. */
    verify: async (jws: string, expect: ReceiptExpectations = {}): Promise<ReceiptVerdict> => {
      const verdict = await verifyReceiptWith(jws, await this.receipts.jwks(), expect);
      if (!verdict.valid && verdict.reason === 'ERR_JWKS_NO_MATCHING_KEY') {
        return verifyReceiptWith(jws, await this.receipts.jwks(true), expect);
      }
      return verdict;
    },
  };

  // --- the gateway call ----------------------------------------------------------------------------------------

  /**
   * Calls a listing through the gateway: POST /api/v1/gateway/:listingId with `body` (JSON unless a string or bytes).
   * A 402 is paid once, within `maxPrice` and `budget`, on the first rail of the 402 a wallet can pay; every retry
   * carries the same proof. Resolves when the seller's answer starts; its body streams.
   */
  async call(listingId: string, body: unknown, options: CallOptions = {}): Promise<CallResult> {
    const deadline = Date.now() + (options.timeoutMs ?? 120_000);
    const progress = options.onProgress ?? (() => {});
    const payload =
      typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body === undefined ? {} : body);
    let proof: PaymentProof | null = options.proof ?? null;
    let price: string | null = null;
    let reserved = 0n;
    const fail = (error: Error): never => {
      // A reservation whose payment was never made goes back to the budget.
      if (!proof && reserved > 0n) options.budget?.release(reserved);
      throw error;
    };

    for (let attempt = 0; ; attempt++) {
      let res: Response;
      try {
        res = await this.#fetch(
          `${this.baseUrl}/api/v1/gateway/${encodeURIComponent(listingId)}${options.subPath ?? ''}`,
          {
            method: options.method ?? 'POST',
            headers: {
              'content-type': 'application/json',
              ...(this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {}),
              ...options.headers,
              ...proof?.headers,
            },
            body: payload,
            ...(options.signal ? { signal: options.signal } : {}),
          },
        );
      } catch (error) {
        if (options.signal?.aborted) {
          return fail(new CrochetClientError('ABORTED', 'The call was aborted.', proof ? { proof } : {}));
        }
        if (!proof) throw error;
        // A dropped connection on a paid call: the history says whether the proof was spent.
        progress({ phase: 'recovering', message: 'Connection lost; checking the call in your history', proof });
        const verdict = await this.#recover(listingId, proof, null, options.signal);
        if (verdict.kind === 'retry' && Date.now() < deadline && attempt < 20) continue;
        return fail(interrupted(verdict, proof, error));
      }

      if (res.ok) return this.#result(res, proof, price, payload, listingId, options.signal);
      // Error answers are small: read them to tell the gateway's own (the registry envelope, linking its docs) from
      // the seller's, which is passed on as the answer.
      const text = await res.text();
      let envelope: { error?: ErrorBody; payment?: PaymentBody } | null = null;
      try {
        envelope = JSON.parse(text);
      } catch {}
      if (typeof envelope?.error?.docs !== 'string' || !envelope.error.docs.startsWith('/docs/errors#')) {
        const copy = new Response(text, { status: res.status, headers: res.headers });
        return this.#result(copy, proof, price, payload, listingId, options.signal);
      }
      const code = envelope?.error?.code;

      if (code === 'PAYMENT_REQUIRED' && envelope?.payment && !proof) {
        const payment = envelope.payment;
        const amountAtomic = BigInt(payment.amount_atomic);
        price = payment.amount;
        progress({ phase: 'payment_required', message: `Price ${payment.amount} ${payment.currency}`, amount: price });
        if (options.maxPrice !== undefined && amountAtomic > toAtomic(options.maxPrice)) {
          throw new CrochetClientError(
            'MAX_PRICE_EXCEEDED',
            `The price ${payment.amount} is above maxPrice ${options.maxPrice}; nothing was paid.`,
            { price: payment.amount },
          );
        }
        const chosen = await this.#choose(payment, options.rail ?? 'auto');
        if (!chosen) {
          throw new CrochetClientError('NO_PAYMENT_RAIL', 'No configured wallet can pay any option of this 402.', {
            accepts: payment.accepts.map((a) => a.network),
          });
        }
        if (options.budget) {
          if (!options.budget.reserve(amountAtomic)) {
            throw new CrochetClientError(
              'BUDGET_EXCEEDED',
              `The price ${payment.amount} is above what is left of the budget (${fromAtomic(options.budget.remainingAtomic)}); nothing was paid.`,
              { price: payment.amount, remaining: fromAtomic(options.budget.remainingAtomic) },
            );
          }
          reserved = amountAtomic;
        }
        progress({
          phase: 'paying',
          message: `Paying ${payment.amount} USDC with ${chosen.rail.name}`,
          rail: chosen.rail.name,
          amount: price,
        });
        const required = paymentRequiredOf(res);
        try {
          proof = await chosen.rail.pay(payment, chosen.option, required);
        } catch (error) {
          return fail(error as Error);
        }
        progress({
          phase: 'paid',
          message: `Paid; retrying the call with the proof`,
          rail: proof.rail,
          proof,
          amount: price,
        });
        continue;
      }

      if (code && RETRY_SAME_PROOF.has(code) && Date.now() < deadline) {
        const waitMs = retryAfterMs(res);
        progress({
          phase: 'waiting',
          message: proof
            ? `${code}: retrying with the same payment in ${Math.ceil(waitMs / 1000)} s`
            : `${code}: retrying in ${Math.ceil(waitMs / 1000)} s`,
          code,
          retryAfterSeconds: Math.ceil(waitMs / 1000),
          ...(proof ? { proof } : {}),
        });
        try {
          await sleep(waitMs, options.signal);
        } catch {
          return fail(new CrochetClientError('ABORTED', 'The call was aborted.', proof ? { proof } : {}));
        }
        continue;
      }
      if (code && RETRY_SAME_PROOF.has(code) && proof) {
        throw new CrochetClientError(
          'PAYMENT_STILL_PENDING',
          'The payment is still pending; retry later with the same proof (details.proof), do not pay again.',
          { proof, code },
        );
      }

      if (code === 'PAYMENT_ALREADY_USED' && proof && typeof envelope?.error?.['gateway_request_id'] === 'string') {
        // Our own proof paid an earlier attempt whose answer we lost: that request is the call.
        const verdict = await this.#recover(listingId, proof, envelope.error['gateway_request_id'], options.signal);
        return fail(interrupted(verdict, proof, null));
      }
      return fail(apiError(res.status, envelope, ''));
    }
  }

  /**
   * The first option of the 402 (its order is the gateway's preference) a configured rail can pay; then Relay, which
   * is not among the x402 options but in the 402's `relay` section.
   */
  async #choose(payment: PaymentBody, wanted: RailName | 'auto') {
    // The chain libraries load only when a call has to pay: free calls and the CLI's other commands start faster.
    const { railsFor } = await import('./rails.js');
    const rails = railsFor(this.wallets, this.relay).filter((rail) => wanted === 'auto' || rail.name === wanted);
    for (const accept of payment.accepts) {
      for (const rail of rails) if (rail.option(payment) === accept) return { rail, option: accept };
    }
    for (const rail of rails) {
      const option = rail.option(payment);
      if (option && !payment.accepts.includes(option)) return { rail, option };
    }
    return null;
  }

  /**
   * What became of a paid call whose answer was lost (DESIGN §3.5): waits until the history shows its final state.
   * Not there at all (after the history's lag) or given back (`released`, or refused before forwarding): the proof
   * is unspent, retry with it. Otherwise the proof paid for that request: never pay again.
   */
  async #recover(
    listingId: string,
    proof: PaymentProof,
    requestId: string | null,
    signal: AbortSignal | undefined,
  ): Promise<Verdict> {
    const started = Date.now();
    for (;;) {
      let found: GatewayRequest[] = [];
      try {
        found = requestId
          ? [await this.history.get(requestId)]
          : (await this.history.list({ payment_proof: proof.proofId, listing_id: listingId })).data;
      } catch (error) {
        if (!(error instanceof CrochetApiError) || error.status >= 500) {
          if (Date.now() - started > 60_000) throw error;
        } else if (error.code !== 'GATEWAY_REQUEST_NOT_FOUND') {
          throw error;
        }
      }
      const attempts = found.filter((r) => r.status !== 'payment_pending' && r.status !== 'payment_required');
      const open = attempts.find((r) => r.status === 'forwarded');
      const spent = attempts.find((r) => r.status !== 'forwarded' && !isGivenBack(r));
      if (spent) return { kind: spent.refund ? 'refunded' : 'paid', request: spent };
      if (!open && (attempts.length > 0 || Date.now() - started > HISTORY_GRACE_MS)) {
        return { kind: 'retry', request: attempts[0] ?? null };
      }
      await sleep(250, signal);
    }
  }

  /** Wraps the seller's answer: hashes it as it streams, and on a broken stream asks the history what happened. */
  #result(
    res: Response,
    payment: PaymentProof | null,
    price: string | null,
    sent: string | Uint8Array,
    listingId: string,
    signal: AbortSignal | undefined,
  ): CallResult {
    const requestId = res.headers.get('x-crochet-request-id');
    const hash = createHash('sha256');
    let received: string | null = null;
    const reader = res.body?.getReader();
    const body = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        if (!reader) {
          received = hash.digest('hex');
          return controller.close();
        }
        try {
          const { done, value } = await reader.read();
          if (done) {
            received = hash.digest('hex');
            return controller.close();
          }
          hash.update(value);
          controller.enqueue(value);
        } catch (error) {
          if (!payment || signal?.aborted) return controller.error(error);
          const verdict = await this.#recover(listingId, payment, requestId, signal).catch(() => null);
          controller.error(
            verdict
              ? interrupted(verdict, payment, error)
              : new CrochetClientError('CALL_INTERRUPTED', 'The answer broke off.', { proof: payment, cause: error }),
          );
        }
      },
      cancel: (reason) => reader?.cancel(reason),
    });
    const settlementHeader = res.headers.get('payment-response');
    const readAll = async () => Buffer.from(await new Response(body).arrayBuffer());
    return {
      status: res.status,
      ok: res.ok,
      headers: res.headers,
      requestId,
      payment,
      price,
      settlement: settlementHeader ? (decodePaymentResponseHeader(settlementHeader) as CallResult['settlement']) : null,
      headerReceipt: res.headers.get('x-crochet-receipt'),
      body,
      text: async () => (await readAll()).toString('utf8'),
      json: async () => JSON.parse((await readAll()).toString('utf8')),
      receipt: async () => {
        if (!requestId || !payment) throw new CrochetClientError('UNEXPECTED_RESPONSE', 'A free call has no receipt.');
        let jws: string | undefined;
        for (let i = 0; !jws; i++) {
          try {
            jws = (await this.history.receipt(requestId)).receipt;
          } catch (error) {
            // The gateway records the call (and its receipt) a moment after the answer ended: until then the
            // request may not be in the history at all.
            const recording =
              error instanceof CrochetApiError &&
              (error.code === 'RECEIPT_NOT_AVAILABLE' || error.code === 'GATEWAY_REQUEST_NOT_FOUND');
            if (!recording || i > 40) throw error;
            await sleep(250, signal);
          }
        }
        const verdict = await this.receipts.verify(jws, {
          requestId,
          requestBodySha256: sha256Hex(sent),
          ...(received ? { responseBodySha256: received } : {}),
        });
        return { ...verdict, jws };
      },
    };
  }
}

type Verdict = { kind: 'retry' | 'paid' | 'refunded'; request: GatewayRequest | null };

/** A request whose payment came back unspent: the same proof pays the next attempt. */
const isGivenBack = (r: GatewayRequest): boolean =>
  r.payment?.outcome?.status === 'released' || (r.status === 'refused' && !r.refund);

const interrupted = (verdict: Verdict, proof: PaymentProof, cause: unknown): CrochetClientError => {
  const request = verdict.request;
  const what =
    verdict.kind === 'paid'
      ? `it was paid and the seller answered (${request?.status}, HTTP ${request?.http_status}), but the answer did not reach you`
      : verdict.kind === 'refunded'
        ? `the seller did not serve it; its price is being refunded (${request?.refund})`
        : 'it could not be completed; retry later with the same proof (details.proof)';
  return new CrochetClientError('CALL_INTERRUPTED', `The connection dropped: ${what}. Do not pay again.`, {
    outcome: verdict.kind,
    gatewayRequest: request,
    proof,
    ...(cause ? { cause: String((cause as Error).message ?? cause) } : {}),
  });
};

const apiError = (status: number, json: unknown, text: string): Error =>
  typeof (json as { error?: ErrorBody } | null)?.error?.code === 'string'
    ? new CrochetApiError(status, (json as { error: ErrorBody }).error)
    : new CrochetClientError('UNEXPECTED_RESPONSE', `HTTP ${status}: ${text.slice(0, 200)}`, { status });

const paymentRequiredOf = (res: Response): PaymentRequired => {
  const header = res.headers.get('payment-required');
  if (!header) throw new CrochetClientError('UNEXPECTED_RESPONSE', 'A 402 without a PAYMENT-REQUIRED header.');
  return decodePaymentRequiredHeader(header);
};
