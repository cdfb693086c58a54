import {
  buildAccepts,
  buildPaymentBody,
  buildPaymentRequired,
  type EventFields,
  type EventOutbox,
  type GatewayScripts,
  type PaidAdmission,
  type PaidAdmissionRequest,
  type PaymentCall,
  type PaymentRail,
  type PaymentRequestRecord,
  type PaymentsConfig,
  parseProof,
  proofKeyId,
  rateLimitHeaders,
  txProofId,
  type VerifiedPayment,
  VerifierUnavailableError,
} from '@crochet/plugins';
import {
  ApiError,
  currentUtcDay,
  EVENT_FIELD,
  EVENT_PAYMENT_FIELD,
  fromAtomic,
  type GatewayEvent,
  type GatewayState,
  type PaymentOutcome,
  type PaymentRecord,
  type PaymentRequestIds,
  paymentAction,
  type RedisKeys,
} from '@crochet/protocol';
import { encodePaymentRequiredHeader, encodePaymentResponseHeader } from '@x402/core/http';
import type { Redis } from 'ioredis';
import type { Call, PaidCall } from './call.js';
import type { ProxyMetrics, VerificationOutcome } from './metrics.js';
import type { RedisState } from './redis-state.js';
import { limitsOf, rateLimited, startEvent } from './steps/admit.js';

/**
 * The payment step of the gateway (DESIGN §3.4) for `per_call` listings: one object, three phases.
 *
 *   admit            no proof → 402 with the payment requirements; a proof → admitted (limits, exactly-once
 *                    consumption, spend cap and the start record in one Redis script), or a precise refusal. A proof
 *                    not verified yet is verified on its rail once, and the verification is recorded by the same
 *                    script that admits.
 *   beforeForward    `before_forward` listings settle an x402 payment before the seller is called.
 *   afterResponse    at the call's final state: book, settle, release or refund (protocol lifecycle.ts).
 *
 * An admission whose outcome is unknown (Redis did not answer in time) is resolved before the buyer is told
 * anything: the script is idempotent by gateway request id and carries a deadline in Redis's clock, so once that
 * deadline has passed one more run tells the truth. If Redis stays silent past the resolve budget, the buyer is told
 * to retry with the same proof, and the call is abandoned in the background: it is recorded refused and, if it had
 * consumed the proof, the proof is given back — so the retry (a new gateway request) pays with it, once.
 *
 * Giving a proof back is an effect that must happen: the proxy tries for a minute, and the control plane does it
 * again (idempotently) when it records the call's end — whatever the proxy managed.
 */

export interface PaymentsOptions {
  config: PaymentsConfig;
  rails: PaymentRail[];
  scripts: GatewayScripts;
  redis: Redis;
  keys: RedisKeys;
  outbox: EventOutbox;
  state: RedisState;
  requestIds: PaymentRequestIds;
  solanaFeePayer: string | undefined;
  publicBaseUrl: string;
  keyRateLimitPerMinute: number;
  listingRateLimitPerMinute: number;
  /** How long a Redis command may take before its outcome counts as unknown (the hot-path command timeout). */
  commandTimeoutMs: number;
  /** How long an unknown admission is resolved before the buyer is answered. */
  resolveMs: number;
  metrics?: ProxyMetrics;
  log: { warn(details: object, message: string): void; error(details: object, message: string): void };
}

/** Verified-but-unconsumed proofs are remembered this long (a retry after a timeout does not hit the chain again). */
const VERIFIED_TTL_SECONDS = 24 * 3600;
/** A payment request id as gateways issued them before they proved themselves (protocol payment-request.ts). */
const LEGACY_REQUEST_ID = /^pay_[0-9A-HJKMNP-TV-Z]{26}$/;
/** ioredis's refusal of a command it never sent (no connection, and no offline queue). */
const NOT_SENT = /isn't writeable|Connection is closed/i;
/** Margin for the difference between the proxy's estimate of Redis's clock and the real one. */
const CLOCK_MARGIN_MS = 1_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const toRecord = (p: VerifiedPayment): PaymentRecord => ({
  rail: p.rail,
  network: p.network,
  payer: p.payer,
  amount_atomic: p.amountAtomic,
  asset: p.asset,
  tx: p.tx,
  proof_ids: p.proofIds,
  ...(p.paymentRequestId ? { payment_request_id: p.paymentRequestId } : {}),
});

const fromRecord = (json: string, settlement: string): VerifiedPayment => {
  const record = JSON.parse(json) as PaymentRecord;
  return {
    rail: record.rail,
    network: record.network,
    payer: record.payer,
    amountAtomic: record.amount_atomic,
    asset: record.asset,
    tx: record.tx,
    proofIds: record.proof_ids,
    ...(record.payment_request_id ? { paymentRequestId: record.payment_request_id } : {}),
    ...(settlement ? { settlement: JSON.parse(settlement) as unknown } : {}),
  };
};

/**
 * 503 PAYMENT_VERIFIER_UNAVAILABLE naming the rail and, where the rail said (`VerifierUnavailableError`), the service
 * that failed and how, in the rail's own words.
 */
const verifierUnavailable = (rail: string, failure: unknown, timeoutMs?: number) => {
  const known = failure instanceof VerifierUnavailableError ? failure : null;
  const what =
    timeoutMs !== undefined
      ? `its verifier did not answer within ${timeoutMs} ms`
      : (known?.message ?? 'its verifier failed');
  return new ApiError('PAYMENT_VERIFIER_UNAVAILABLE', {
    message: `The ${rail} payment could not be checked: ${what}. The payment may well be fine; retry with the same proof.`,
    details: { rail, ...(known ? { verifier: known.verifier } : {}) },
    headers: { 'retry-after': String(known?.retryAfterSeconds ?? 2) },
  });
};

const unavailable = (message?: string, seconds = 2) =>
  new ApiError('STATE_UNAVAILABLE', { ...(message ? { message } : {}), headers: { 'retry-after': String(seconds) } });

export class Payments {
  readonly #o: PaymentsOptions;

  constructor(options: PaymentsOptions) {
    this.#o = options;
    for (const command of ['admit_paid', 'release']) options.metrics?.paymentAmbiguous.inc({ command }, 0);
  }

  // --- admit -------------------------------------------------------------------------------------------------------

  async admit(call: Call): Promise<ApiError | null> {
    const parsed = parseProof(call.request.headers);
    if (!parsed.ok) return new ApiError('PAYMENT_INVALID', { message: parsed.message });
    const listing = call.listing!;
    const buyerId = call.key!.agent_id;
    // The requests below are built with Object.assign: a literal that starts with a spread and adds properties
    // takes V8's slow path (about 5 µs each on Node 20, against 0.2) and gives an object with slow properties.
    const base = Object.assign(limitsOf(call, this.#o), {
      startEvent: startEvent(call),
      buyerId,
      day: currentUtcDay(),
      spendCapAtomic: call.buyer?.daily_spend_cap_atomic ?? null,
      priceAtomic: listing.priceAtomic.toString(),
    });
    if (!parsed.proof) return this.#requirePayment(call, base);

    const proof = parsed.proof;
    const rail = this.#o.rails.find((r) => r.accepts(proof));
    if (!rail) return new ApiError('PAYMENT_NETWORK_UNSUPPORTED');
    const proofId = proofKeyId(proof);
    if (!proofId) return new ApiError('PAYMENT_INVALID');
    if (this.#o.state.restoring) {
      void this.#o.state.check();
      return unavailable('Payment state is being restored after a Redis restart; nothing was charged.', 1);
    }
    const request: Omit<PaidAdmissionRequest, 'gatewayRequestId' | 'epoch' | 'deadlineMs'> = Object.assign({}, base, {
      proofId,
      alreadySettled: rail.settle === undefined,
    });

    let outcome = await this.#admitPaid(call, request);
    const holder =
      typeof outcome === 'object' && outcome?.outcome === 'used'
        ? this.#abandoned.get(outcome.gatewayRequestId)
        : undefined;
    if (holder) {
      // The proof is held by a call this proxy abandoned and is still giving back: give it back now, then admit.
      await holder().catch(() => {});
      outcome = await this.#admitPaid(call, request);
    }
    if (outcome === 'unavailable') return unavailable();
    if (outcome?.outcome === 'unverified') {
      const verdict = await this.#verify(rail, proof, call);
      if (verdict instanceof ApiError) return verdict;
      outcome = await this.#admitPaid(
        call,
        Object.assign({}, request, {
          verified: {
            payment: JSON.stringify(toRecord(verdict)),
            settlement: verdict.settlement === undefined ? '' : JSON.stringify(verdict.settlement),
            ttlSeconds: VERIFIED_TTL_SECONDS,
          },
        }),
      );
    }
    if (outcome === null) return this.#abandon(call, request);
    if (outcome === 'unavailable') return unavailable();
    return this.#decide(call, outcome, rail, request);
  }

  #decide(
    call: Call,
    outcome: PaidAdmission,
    rail: PaymentRail,
    request: Omit<PaidAdmissionRequest, 'gatewayRequestId' | 'epoch' | 'deadlineMs'>,
  ): ApiError | null {
    const paid = (payment: string, settlement: string, streamId: string): PaidCall => {
      const fields = [EVENT_FIELD, request.startEvent, EVENT_PAYMENT_FIELD, payment];
      // Admitted again after an unknown outcome: the first run's entry id is not known, so the start goes out once
      // more (a duplicate start record changes nothing) and the outbox keeps it until it is committed.
      if (streamId) this.#o.outbox.sent(fields, streamId);
      else this.#o.outbox.pushFields(fields);
      call.admitted = true;
      const verified = fromRecord(payment, settlement);
      return {
        payment: verified,
        rail,
        proofId: request.proofId,
        day: request.day,
        moneyMoved: rail.settle === undefined,
        outcome: null,
      };
    };
    switch (outcome.outcome) {
      case 'admitted':
        call.paid = paid(outcome.payment, outcome.settlement, outcome.streamId);
        call.limitHeaders = rateLimitHeaders(outcome);
        return null;
      case 'spend_cap_refund': {
        // Refused past the cap after its transfer was consumed (money already moved): recorded, to be refunded.
        call.paid = { ...paid(outcome.payment, '', outcome.streamId), refundOnly: true };
        const cap = request.spendCapAtomic ?? '0';
        return spendCapExceeded(cap, outcome.spentAtomic, BigInt(request.priceAtomic), { refunded: call.id });
      }
      case 'used':
        return new ApiError('PAYMENT_ALREADY_USED', {
          message: `This payment proof already paid for gateway request ${outcome.gatewayRequestId}.`,
          details: { gateway_request_id: outcome.gatewayRequestId },
        });
      case 'spend_cap':
        return spendCapExceeded(request.spendCapAtomic ?? '0', outcome.spentAtomic, BigInt(request.priceAtomic));
      case 'mismatch':
        return new ApiError('PAYMENT_ALREADY_USED', {
          message: 'This payment proof is bound to another listing or agent.',
        });
      case 'rate_limited':
        // As on free listings (DESIGN §3.3): Retry-After and RateLimit-*. The proof stays verified and unconsumed.
        return rateLimited(outcome.limit, rateLimitHeaders(outcome), '; the payment was not used');
      case 'epoch':
        void this.#o.state.check();
        return unavailable('Payment state is being restored after a Redis restart; nothing was charged.', 1);
      default:
        // unverified twice (the record expired between two runs), or late: nothing happened.
        return new ApiError('PAYMENT_PENDING', { headers: { 'retry-after': '1' } });
    }
  }

  /**
   * A 402: limits, start record and, under a daily cap, the price reserved for the payment request it issues until
   * that expires — in one script. The payment request id proves itself.
   */
  async #requirePayment(
    call: Call,
    request: Omit<Parameters<GatewayScripts['admitUnpaid']>[0], 'paymentRequestId' | 'reserveMs'>,
  ): Promise<ApiError | null> {
    const listing = call.listing!;
    const { config } = this.#o;
    if (request.spendCapAtomic !== null && this.#o.state.restoring) {
      // A Redis that came back empty has no spend counted yet: a reservation now would be made against nothing spent.
      void this.#o.state.check();
      return unavailable('Spend state is being restored after a Redis restart; nothing was charged.', 1);
    }
    let admission: Awaited<ReturnType<GatewayScripts['admitUnpaid']>>;
    const id = this.#o.requestIds.issue(listing.id, request.buyerId);
    call.admitted = true; // even unanswered, the script may have appended the start: the end closes it
    try {
      admission = await this.#o.scripts.admitUnpaid(
        Object.assign({}, request, { paymentRequestId: id, reserveMs: reservationMs(config.requestTtlSeconds) }),
      );
    } catch {
      return unavailable();
    }
    if (admission.streamId) this.#o.outbox.sent([EVENT_FIELD, request.startEvent], admission.streamId);
    else call.admitted = false;
    call.limitHeaders = rateLimitHeaders(admission);
    if (admission.outcome === 'rate_limited') return rateLimited(admission.limit, call.limitHeaders);
    if (admission.outcome === 'spend_cap') {
      return spendCapExceeded(request.spendCapAtomic ?? '0', admission.spentAtomic, listing.priceAtomic, {
        reservedAtomic: admission.reservedAtomic,
      });
    }
    call.paymentRequestId = id;
    const input = {
      paymentRequestId: id,
      listingId: listing.id,
      priceAtomic: listing.priceAtomic,
      currency: 'USDC' as const,
      resourceUrl: `${this.#o.publicBaseUrl}/api/v1/gateway/${listing.id}`,
      expiresAtMs: Date.now() + config.requestTtlSeconds * 1000,
      solanaFeePayer: this.#o.solanaFeePayer,
    };
    const accepts = buildAccepts(config, input);
    const message = 'This listing is paid per call; the call was not paid.';
    return new ApiError('PAYMENT_REQUIRED', {
      message,
      headers: Object.assign({}, call.limitHeaders, {
        'payment-required': encodePaymentRequiredHeader(buildPaymentRequired(accepts, input, message) as never),
      }),
      details: { payment: buildPaymentBody(config, accepts, input) },
    });
  }

  /**
   * Runs the paid admission until its outcome is known: a timeout or a dropped connection leaves it unknown, so the
   * script is run again (idempotent by gateway request id) once the first run's deadline has passed in Redis's
   * clock — from then on the first run can do nothing, and the new answer is the truth. Null when the outcome stays
   * unknown: Redis silent for the whole resolve budget, or, after a run that may have happened, a Redis on another
   * epoch (which cannot say what that run did: its proofs may come back with the restore).
   */
  async #admitPaid(
    call: Call,
    request: Omit<PaidAdmissionRequest, 'gatewayRequestId' | 'epoch' | 'deadlineMs'>,
  ): Promise<PaidAdmission | 'unavailable' | null> {
    const { scripts, state, commandTimeoutMs, resolveMs } = this.#o;
    const giveUpAt = performance.now() + resolveMs;
    let uncertain = false;
    for (;;) {
      if (state.restoring) {
        void state.check();
        return uncertain ? null : { outcome: 'epoch' };
      }
      const deadlineMs = state.redisNow() + commandTimeoutMs + CLOCK_MARGIN_MS;
      try {
        const outcome = await scripts.admitPaid(
          Object.assign({}, request, { gatewayRequestId: call.id, epoch: state.epoch ?? '', deadlineMs }),
        );
        if (outcome.outcome === 'epoch' && uncertain) return null;
        if (outcome.outcome !== 'late') return outcome;
      } catch (error) {
        // Never sent (no connection): nothing happened. Sent and unanswered: it may have run (and consumed the
        // proof for this call), so the call counts as admitted until resolved.
        if (!uncertain && NOT_SENT.test((error as Error).message)) return 'unavailable';
        uncertain = true;
        call.admitted = true;
        this.#o.metrics?.paymentAmbiguous.inc({ command: 'admit_paid' });
      }
      // Asked again only once the earlier run's deadline has surely passed in Redis's clock.
      const waitMs = Math.max(50, deadlineMs - state.redisNow() + CLOCK_MARGIN_MS / 4);
      if (performance.now() + waitMs > giveUpAt) return null;
      await sleep(waitMs);
    }
  }

  /**
   * Redis could not say what became of the admission: the buyer is told to retry with the same proof. The call is
   * recorded refused with its proof given back — at once in the record (the control plane then releases it in Redis,
   * idempotently, whatever this proxy manages), and by this proxy as soon as Redis answers, so that the retry pays
   * with it.
   */
  #abandon(call: Call, request: Omit<PaidAdmissionRequest, 'gatewayRequestId' | 'epoch' | 'deadlineMs'>): ApiError {
    call.admitted = true;
    call.abandoned = true;
    const release = () =>
      this.#o.scripts.release({
        gatewayRequestId: call.id,
        proofIds: [request.proofId],
        proofId: request.proofId,
        buyerId: request.buyerId,
        day: request.day,
        priceAtomic: request.priceAtomic,
        mode: 'give',
      });
    this.#abandoned.set(call.id, release);
    void this.#retry('release', release).finally(() => this.#abandoned.delete(call.id));
    return unavailable(
      'The payment state did not answer in time; this call was not forwarded and its payment was not used. ' +
        'Retry the same call with the same proof: it will not pay twice.',
    );
  }

  /** Calls this proxy abandoned, whose proofs are being given back: a retry that meets one gives it back first. */
  readonly #abandoned = new Map<string, () => Promise<number>>();

  async #verify(rail: PaymentRail, proof: Parameters<PaymentRail['verify']>[0], call: Call) {
    const { config, requestIds } = this.#o;
    const listing = call.listing!;
    const paymentCall: PaymentCall = {
      listingId: listing.id,
      buyerId: call.key!.agent_id,
      buyerEvmWallets: call.buyer?.evm_wallets ?? [],
      priceAtomic: listing.priceAtomic,
      paymentRequest: async (id) => {
        const claims = requestIds.check(id, listing.id, call.key!.agent_id);
        if (!claims && LEGACY_REQUEST_ID.test(id)) {
          // Issued before ids proved themselves, during an upgrade: the record the older gateway kept in Redis.
          const json = await this.#o.redis.get(this.#o.keys.paymentRequestLegacy(id));
          return json ? (JSON.parse(json) as PaymentRequestRecord) : null;
        }
        return claims
          ? {
              id,
              listing_id: claims.listingId,
              buyer_id: claims.buyerId,
              amount_atomic: listing.priceAtomic.toString(),
              currency: listing.currency,
              expires_at: claims.issuedAtMs + config.requestTtlSeconds * 1000,
            }
          : null;
      },
    };
    const started = performance.now();
    let outcome: VerificationOutcome = 'error';
    try {
      let failure: unknown;
      const verdict = await withDeadline(rail.verify(proof, paymentCall), config.verifyTimeoutMs).catch(
        (error: unknown) => {
          // The chain's RPC or Relay failed (not our stores): the payment may be fine, so it is pending.
          this.#o.log.warn({ err: error, rail: rail.name }, 'payment verifier failed');
          failure = error;
          return 'failed' as const;
        },
      );
      if (verdict === 'failed' || verdict === 'timeout') {
        if (verdict === 'timeout') outcome = 'timeout';
        // The rail's verifier (an RPC, Relay) failed or did not answer in time: 503 naming the rail, never our stores.
        return verifierUnavailable(rail.name, failure, verdict === 'timeout' ? config.verifyTimeoutMs : undefined);
      }
      if (verdict.ok === 'pending') {
        outcome = 'pending';
        return new ApiError(verdict.code, {
          ...(verdict.message ? { message: verdict.message } : {}),
          headers: { 'retry-after': String(verdict.retryAfterSeconds) },
        });
      }
      if (verdict.ok === false) {
        outcome = 'rejected';
        return new ApiError(verdict.code, verdict.message ? { message: verdict.message } : {});
      }
      // A proof presented past the window is refused: consumed proofs are remembered (in PostgreSQL too) that long.
      const paidAtMs = verdict.payment.paidAtMs;
      if (paidAtMs !== undefined && Date.now() - paidAtMs > config.acceptWindowSeconds * 1000) {
        outcome = 'rejected';
        return new ApiError('PAYMENT_PROOF_EXPIRED');
      }
      outcome = 'verified';
      return verdict.payment;
    } finally {
      const labels = { rail: rail.name, outcome };
      this.#o.metrics?.verifications.inc(labels);
      this.#o.metrics?.verificationDuration.observe(labels, (performance.now() - started) / 1000);
    }
  }

  // --- before forward ----------------------------------------------------------------------------------------------

  /** `before_forward` (the default): settle an x402 payment before the seller is called. */
  async beforeForward(call: Call): Promise<ApiError | null> {
    const paid = call.paid;
    if (!paid?.rail.settle || paid.moneyMoved || call.listing!.settlementPolicy !== 'before_forward') return null;
    const { payment, rail } = paid;
    const settled = await rail.settle!(payment).catch((error: unknown) => {
      // A settlement that throws (RPC down mid-way) may or may not have been broadcast: treat it as pending.
      this.#o.log.warn({ err: error }, 'settlement failed to complete');
      return { ok: false, pending: true, tx: null };
    });
    if (settled.pending) {
      // Broadcast, not confirmed in time. The buyer is told to retry with the same payment, so the proof is given
      // back first: the retry is admitted from the verification already made and settles by waiting for this same
      // transaction (the facilitator remembers it in Redis), never by paying twice.
      paid.outcome = { status: 'pending', tx: settled.tx };
      await this.#briefly(this.#release(call, 'hold'));
      return new ApiError('PAYMENT_PENDING', { headers: { 'retry-after': '2' } });
    }
    if (!settled.ok) {
      paid.outcome = { status: 'released', tx: null };
      await this.#briefly(this.#release(call, 'give'));
      // Nothing was broadcast because the chain did not answer: the same payment is retried, it did not fail.
      if ('unavailable' in settled && settled.unavailable) return verifierUnavailable(rail.name, settled.unavailable);
      return new ApiError(
        'PAYMENT_SETTLEMENT_FAILED',
        'message' in settled && settled.message ? { message: `Settlement failed: ${settled.message}.` } : {},
      );
    }
    paid.moneyMoved = true;
    paid.outcome = { status: 'settled', tx: settled.tx };
    call.responseHeaders['payment-response'] = encodePaymentResponseHeader({
      success: true,
      transaction: settled.tx ?? '',
      network: payment.network as never,
      payer: payment.payer,
    });
    // Settled: the call goes ahead even if Redis hiccups here (the own-settler check keeps the tx from paying again).
    this.#consumeTx(call, settled.tx);
    return null;
  }

  // --- after response ----------------------------------------------------------------------------------------------

  /** What became of a paid call's payment at its final state (protocol `paymentAction`). Never throws. */
  async afterResponse(call: Call, state: GatewayState): Promise<PaymentOutcome> {
    const paid = call.paid!;
    const tx = paid.outcome?.tx ?? paid.payment.tx;
    if (paid.refundOnly) return { status: 'refund_due', tx };
    if (paid.outcome && paid.outcome.status !== 'settled') return paid.outcome; // released or pending before forward
    const action = paymentAction({
      forwarded: call.forwarded,
      sellerStatus: call.sellerStatus,
      state,
      moneyMoved: paid.moneyMoved,
      reusable: paid.rail.settle === undefined,
    });
    switch (action) {
      case 'book':
        return { status: 'settled', tx };
      case 'refund':
        // The money is due back to the buyer: it does not count against its daily cap.
        await this.#returnSpend(call);
        return { status: 'refund_due', tx };
      case 'release':
        await this.#release(call, 'give');
        return { status: 'released', tx: null };
      case 'settle':
        try {
          const settled = await paid.rail.settle!(paid.payment);
          if (settled.ok) {
            this.#consumeTx(call, settled.tx);
            return { status: 'settled', tx: settled.tx };
          }
          // The seller has served; a settlement refused now leaves the call unpaid (the ledger and operators see it).
          return { status: settled.pending ? 'pending' : 'unpaid', tx: settled.tx };
        } catch {
          return { status: 'pending', tx: null };
        }
    }
  }

  // --- Redis effects that must happen ------------------------------------------------------------------------------

  /** Gives the call's proof back; retried until Redis answers (idempotent). */
  #release(call: Call, mode: 'give' | 'hold'): Promise<void> {
    const paid = call.paid!;
    return this.#retry('release', () =>
      this.#o.scripts.release({
        gatewayRequestId: call.id,
        proofIds: paid.payment.proofIds,
        proofId: paid.proofId,
        buyerId: call.key!.agent_id,
        day: paid.day,
        priceAtomic: call.listing!.priceAtomic.toString(),
        mode,
      }),
    ).then(() => undefined);
  }

  /** Gives a refunded call's spend back; retried until Redis answers (idempotent). */
  #returnSpend(call: Call): Promise<void> {
    const paid = call.paid!;
    return this.#retry('return_spend', () =>
      this.#o.scripts.returnSpend({
        gatewayRequestId: call.id,
        proofId: paid.proofId,
        buyerId: call.key!.agent_id,
        day: paid.day,
        priceAtomic: call.listing!.priceAtomic.toString(),
      }),
    ).then(() => undefined);
  }

  /**
   * Marks the transaction that settled an x402 payment as used by the request it paid: the same transaction
   * presented afterwards as `X-Crochet-Payment-Tx` (its sender is the buyer, on Solana its memo is the buyer's
   * payment request) would otherwise pay for a second call.
   */
  #consumeTx(call: Call, tx: string | null): void {
    if (!tx) return;
    const network = call.paid!.payment.network;
    void this.#retry('consume', () => this.#o.scripts.consume(txProofId(network, tx), call.id));
  }

  /** Waits for an effect before answering the buyer, but no longer than the resolve budget (it goes on after). */
  #briefly(effect: Promise<unknown>): Promise<unknown> {
    return Promise.race([effect, sleep(this.#o.resolveMs)]);
  }

  /**
   * An idempotent Redis effect, tried until it succeeds: at once, then with a backoff up to 5 s, for a minute. Past
   * that it is logged and left to the control plane, which gives proofs back again when it records a call's end.
   */
  async #retry<T>(command: string, effect: () => Promise<T>): Promise<T | null> {
    const giveUpAt = Date.now() + 60_000;
    for (let attempt = 0; ; attempt++) {
      try {
        return await effect();
      } catch (error) {
        if (attempt === 0) this.#o.metrics?.paymentAmbiguous.inc({ command });
        if (Date.now() > giveUpAt) {
          this.#o.log.error({ err: error, command }, 'a payment state change could not be written to Redis');
          return null;
        }
        await sleep(Math.min(5_000, 50 * 2 ** attempt));
      }
    }
  }

  /**
   * A new Redis epoch: marks again the proofs that events this proxy had not seen committed consumed (a paid start's
   * proof ids, an x402 settlement's transaction), unless the same events show the proof given back.
   */
  async reassert(entries: EventFields[]): Promise<void> {
    const held = new Map<string, { network: string; proofIds: string[] }>();
    for (const fields of entries) {
      const json = fields[fields.indexOf(EVENT_FIELD) + 1];
      if (!json) continue;
      const event = JSON.parse(json) as GatewayEvent;
      const paymentAt = fields.indexOf(EVENT_PAYMENT_FIELD);
      if (event.type === 'gateway.start' && paymentAt >= 0) {
        const payment = JSON.parse(fields[paymentAt + 1]!) as PaymentRecord;
        held.set(event.id, { network: payment.network, proofIds: [...payment.proof_ids] });
      } else if (event.type === 'gateway.end' && event.payment_outcome) {
        const { status, tx } = event.payment_outcome;
        if (status === 'released' || status === 'pending') held.delete(event.id);
        else if (status === 'settled' && tx)
          held.get(event.id)?.proofIds.push(txProofId(held.get(event.id)!.network, tx));
      }
    }
    const pipeline = this.#o.redis.pipeline();
    for (const [id, { proofIds }] of held) {
      for (const proofId of proofIds) pipeline.set(this.#o.keys.paymentUsed(proofId), id, 'NX');
    }
    const results = await pipeline.exec();
    const failed = results?.find(([error]) => error)?.[0];
    if (failed) throw failed;
  }
}

/**
 * How long a 402's reservation against the cap holds: the payment request's lifetime, and as long again (at most a
 * minute) for a payment made at its last moment to be confirmed and presented.
 */
const reservationMs = (requestTtlSeconds: number) => (requestTtlSeconds + Math.min(requestTtlSeconds, 60)) * 1000;

/**
 * Past the cap. Refused at the 402 (`reservedAtomic`: what payment requests still open hold): no payment requirements
 * are issued. Refused at admission: a payment that settles later (x402) was not settled and stays valid for this
 * listing; a transfer that already moved money (`refunded`: the gateway request it was recorded under) is booked and
 * reversed in the ledger.
 */
const spendCapExceeded = (
  capAtomic: string,
  spentAtomic: string,
  priceAtomic: bigint,
  at: { refunded: string } | { reservedAtomic: string } | null = null,
) => {
  const reserved = at && 'reservedAtomic' in at ? BigInt(at.reservedAtomic) : 0n;
  const refunded = at && 'refunded' in at ? at.refunded : null;
  return new ApiError('SPEND_CAP_EXCEEDED', {
    message:
      `This call (${fromAtomic(priceAtomic, 'USDC')} USDC) would take the agent past its daily spend cap of ` +
      `${fromAtomic(BigInt(capAtomic), 'USDC')} USDC (spent today: ${fromAtomic(BigInt(spentAtomic), 'USDC')} USDC` +
      (reserved > 0n
        ? `; ${fromAtomic(reserved, 'USDC')} USDC more is reserved by payment requests issued and still open`
        : '') +
      '). ' +
      (at === null
        ? 'A payment authorised for it was not settled: no USDC moved, and it stays usable until it expires.'
        : refunded
          ? `The transfer already made for it is recorded under gateway request ${refunded} and is due back to ` +
            'the agent (refund_due in the history and the ledger).'
          : 'No payment requirements were issued: pay nothing for this call.'),
    details: {
      daily_spend_cap: fromAtomic(BigInt(capAtomic), 'USDC'),
      spent_today: fromAtomic(BigInt(spentAtomic), 'USDC'),
      ...(at && 'reservedAtomic' in at ? { reserved: fromAtomic(reserved, 'USDC') } : {}),
      ...(refunded ? { refund_gateway_request_id: refunded } : {}),
    },
  });
};

const withDeadline = <T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve('timeout'), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
