/**
 * The shape of a load scenario file (load-tests/scenarios/*.json), with nothing that needs Node: the autocannon runner
 * (through scenario.ts) and the k6 script (types only) share it.
 */
export const CALL_KINDS = ['free', 'paid', 'invalid', 'unknown_listing'] as const;
/**
 * free: a free listing forwarded to a local seller (200). paid: an unpaid call to a per_call listing (402; the
 * runners hold no funds, so they never pay). invalid: a call with a key that does not exist (401).
 * unknown_listing: a valid key calling a listing id that does not exist (404).
 */
export type CallKind = (typeof CALL_KINDS)[number];

/** The status each kind of call should answer; anything else is "unexpected" (5xx is also an error). */
export const EXPECTED_STATUS: Record<CallKind, number> = {
  free: 200,
  paid: 402,
  invalid: 401,
  unknown_listing: 404,
};

export interface Scenario {
  $schema?: string;
  name: string;
  description: string;
  arrival_rate_per_second: number;
  duration_seconds: number;
  connections: number;
  /** Buyer keys the keyed calls are spread over (each key has its own rate limit). Default 1. */
  buyers?: number;
  mix: { kind: CallKind; weight: number }[];
  thresholds: {
    p99_ms: number;
    /** Fraction of requests ending in a transport error/timeout or a 5xx. */
    error_rate_max: number;
    /** Fraction of answers with a status the mix does not expect (e.g. 429). */
    unexpected_rate_max?: number;
  };
}
