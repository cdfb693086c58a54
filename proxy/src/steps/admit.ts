import { type EventOutbox, type GatewayScripts, type LocalAdmission, rateLimitHeaders } from '@crochet/plugins';
import { ApiError, type GatewayStartEvent, newId } from '@crochet/protocol';
import type { Call } from '../call.js';
import type { Payments } from '../payments.js';
import type { RedisHealth } from '../redis-state.js';

/**
 * Admission: the rate limits and the start record in one Redis round trip (DESIGN §2 hot-path rule); for a paid
 * listing, the payment step's admission (payments.ts) does the same with the proof. From here on the call is
 * recorded: whatever happens next, the finalizer writes its end.
 */

export interface AdmitDeps {
  scripts: GatewayScripts;
  /** Per-process limits used when Redis cannot be reached (free listings only). */
  localAdmission: LocalAdmission;
  outbox: EventOutbox;
  health: RedisHealth;
  keyRateLimitPerMinute: number;
  listingRateLimitPerMinute: number;
  /** Absent when no payment rail is configured: per_call listings then answer PAYMENT_RAILS_UNAVAILABLE. */
  payments?: Payments | undefined;
}

/** The start event of an admitted call (protocol events.ts), as the JSON the stream entry carries. */
export const startEvent = (call: Call): string => {
  const listing = call.listing!;
  const key = call.key!;
  return JSON.stringify({
    type: 'gateway.start',
    v: 1,
    id: call.id,
    listing_id: listing.id,
    seller_id: listing.sellerId,
    buyer_id: key.agent_id,
    key_id: key.key_id,
    method: call.request.method,
    path: `/${call.request.subPath}`,
    price_atomic: listing.priceAtomic.toString(),
    currency: listing.currency,
    at: Date.now(),
  } satisfies GatewayStartEvent);
};

/** The limits that apply to this call: the agent's or operator's per key, the listing's or operator's per listing. */
export const limitsOf = (call: Call, deps: Pick<AdmitDeps, 'keyRateLimitPerMinute' | 'listingRateLimitPerMinute'>) => ({
  keyId: call.key!.key_id,
  listingId: call.listing!.id,
  keyLimitPerMinute: call.buyer?.rate_limit_per_minute ?? deps.keyRateLimitPerMinute,
  listingLimitPerMinute: call.listing!.rateLimitPerMinute ?? deps.listingRateLimitPerMinute,
});

export const rateLimited = (limit: number, headers: Record<string, string>, extra = ''): ApiError =>
  new ApiError('RATE_LIMITED', { message: `Rate limit of ${limit} calls per minute reached${extra}.`, headers });

export const admit = async (call: Call, deps: AdmitDeps): Promise<ApiError | null> => {
  call.id = newId('gatewayRequest');
  if (call.listing!.pricingModel !== 'free') {
    if (!deps.payments) return new ApiError('PAYMENT_RAILS_UNAVAILABLE');
    return deps.payments.admit(call);
  }
  // Not `{ ...limitsOf(), startEvent }`: a literal that starts with a spread and adds a property takes V8's slow
  // path (1.6 µs a call, against 0.06 for this).
  const request = Object.assign(limitsOf(call, deps), { startEvent: startEvent(call) });
  let admission = null;
  // When the script's outcome is unknown it may still run later and append a start record: the call is then
  // recorded (its end closes that record), whatever this proxy decides.
  let unknown = false;
  if (!deps.health.suspect()) {
    try {
      const admitted = await deps.scripts.admitFree(request);
      deps.health.answered();
      if (admitted.streamId) deps.outbox.sent(['e', request.startEvent], admitted.streamId);
      admission = admitted;
    } catch {
      deps.health.failed();
      unknown = true;
    }
  }
  if (admission === null) {
    // Redis unreachable or too slow: free listings fall back to this proxy's own limits; the start record waits in
    // the outbox (a duplicate of one a late script appended changes nothing).
    admission = deps.localAdmission.admit(request);
    if (admission.allowed) deps.outbox.pushJson(request.startEvent);
  }
  call.admitted = admission.allowed || unknown;
  call.limitHeaders = rateLimitHeaders(admission);
  return admission.allowed ? null : rateLimited(admission.limit, call.limitHeaders);
};
