import { hostname } from 'node:os';
import { createGatewayScripts, type GatewayScripts } from '@crochet/plugins';
import {
  EVENT_FIELD,
  EVENT_PAYMENT_FIELD,
  EVENT_TIME_FIELD,
  EVENTS_GROUP,
  type GatewayEndEvent,
  type GatewayEvent,
  type GatewayStartEvent,
  type GatewayStatus,
  isCurrency,
  isId,
  type PaymentRecord,
  redisKeys,
  utcDay,
} from '@crochet/protocol';
import type { Redis } from 'ioredis';
import type { QueryResult } from 'pg';
import { type Pool, type PoolClient, transaction } from './db.js';
import { DROPPED_RANGES_SQL, DroppedRanges, droppedRanges } from './history-partitions.js';
import { DEFAULT_FEE_BPS, type LedgerOptions, postLedger } from './ledger/posting.js';

/**
 * §3.5: the proxies' event stream into `gateway_requests`. A consumer-group reader that acknowledges an entry only
 * after the PostgreSQL transaction holding its effect committed, so a crash on either side loses nothing; every
 * effect is idempotent and order-free, so what a crash delivers twice (or start after end) changes nothing.
 *
 * One loop, in order: claim entries other consumers left idle → this consumer's own pending entries (what a previous
 * run under the same name read but did not acknowledge, and entries that failed) → new entries, blocking.
 */

export interface EventsConsumerLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface EventsConsumerOptions {
  pool: Pool;
  /** Used for everything but the blocking read, which gets its own connection (`redis.duplicate()`). */
  redis: Redis;
  /** `CROCHET_REDIS_PREFIX`. */
  prefix: string;
  /** Stable across restarts so that a restarted consumer finds its own pending entries at once; default hostname. */
  consumerName?: string;
  batchSize?: number;
  blockMs?: number;
  /** Entries another consumer read and has not acknowledged for this long are taken over. */
  claimIdleMs?: number;
  /** An entry that failed this many deliveries goes to the dead-letter stream. */
  maxDeliveries?: number;
  /** `CROCHET_FEE_BPS`, for the ledger postings the events make due; default DEFAULT_FEE_BPS. */
  feeBps?: number;
  /**
   * How long a free call's start waits for its end before it is written alone (default 250 ms; 0: never waits). A
   * start and its end written together are one insert; apart, an insert then an update of every index.
   */
  holdStartsMs?: number;
  /**
   * After a read of new entries that did not fill a batch, the next one waits until this long after it (default
   * 50 ms; 0: reads again at once). Under load the batches fill and follow each other at once; below that, entries
   * gather for a moment and are written in one transaction rather than many small ones (each a commit in
   * PostgreSQL and a read and an acknowledgement in Redis).
   */
  gatherMs?: number;
  /**
   * Batches of new entries applied at once (default 2; 1: one after the other). With 2 the next batch is read and
   * prepared while PostgreSQL writes the one before.
   */
  applyDepth?: number;
  log: EventsConsumerLog;
}

export interface EventsConsumerStats {
  /** Entries applied and acknowledged since start. */
  processed: number;
  /** Entries moved to the dead-letter stream since start. */
  deadLettered: number;
  lastError: string | null;
}

export interface EventsConsumer {
  /** Finishes the batch in hand (commit and acknowledge), then stops reading. Call before closing the pool. */
  stop(): Promise<void>;
  /** Resolves once the group has nothing pending and nothing undelivered (tests); rejects after `timeoutMs`. */
  drain(options?: { timeoutMs?: number }): Promise<void>;
  stats(): EventsConsumerStats;
}

type StreamEntry = [id: string, fields: string[] | null];

/** How long stop() waits for a blocked read to end with its connection before it stops waiting. */
const STOP_GRACE_MS = 2_000;
/** At most this many free starts held for their end (past it, starts are written alone). */
const MAX_HELD = 20_000;

/** An event that can never be applied as it is: bad JSON, unknown type or version, a field of the wrong shape. */
class EventError extends Error {}

// The record makes the compiler check that this list and the protocol's GatewayStatus stay the same set.
const STATUSES: Record<GatewayStatus, true> = {
  payment_required: true,
  payment_pending: true,
  forwarded: true,
  completed: true,
  upstream_error: true,
  client_aborted: true,
  refused: true,
};
const INT32_MAX = 2 ** 31 - 1;
const ATOMIC = /^(0|[1-9][0-9]{0,17})$/;
/** A compact JWS: three base64url segments. */
const RECEIPT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

const isCount = (value: unknown, max = Number.MAX_SAFE_INTEGER): value is number =>
  Number.isSafeInteger(value) && (value as number) >= 0 && (value as number) <= max;
const isText = (value: unknown, max: number): value is string =>
  typeof value === 'string' && value.length > 0 && value.length <= max;

/** A string with each lone UTF-16 surrogate replaced by U+FFFD (what UTF-8 text can hold). */
const wellFormed = (s: string): string => (s as string & { toWellFormed(): string }).toWellFormed();

const RAILS = new Set<string>(['solana-transfer', 'evm-transfer', 'relay', 'x402-exact']);

/** Parses and checks a paid start's payment record (the entry's `p` field). */
const parsePayment = (raw: string): PaymentRecord => {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new EventError('gateway.start: payment is not JSON');
  }
  const p = value as Record<string, unknown> | null;
  const ok =
    typeof p === 'object' &&
    p !== null &&
    RAILS.has(p['rail'] as string) &&
    isText(p['network'], 128) &&
    typeof p['payer'] === 'string' &&
    typeof p['amount_atomic'] === 'string' &&
    ATOMIC.test(p['amount_atomic']) &&
    typeof p['asset'] === 'string' &&
    (p['tx'] === null || isText(p['tx'], 256)) &&
    Array.isArray(p['proof_ids']) &&
    p['proof_ids'].length > 0 &&
    p['proof_ids'].every((id) => isText(id, 512)) &&
    (p['payment_request_id'] === undefined || isText(p['payment_request_id'], 64));
  if (!ok) throw new EventError('gateway.start: payment is missing or malformed');
  return value as PaymentRecord;
};

/** Throws the EventError for an event's field that is missing or malformed (module level: no closure per event). */
const need = (e: Record<string, unknown>, ok: boolean, field: string): void => {
  if (!ok) throw new EventError(`${String(e['type'])}: ${field} is missing or malformed`);
};

/**
 * Parses and checks one entry's event (and, for a paid start, its payment: the `p` field); throws EventError with
 * the first problem found.
 */
export const parseEvent = (
  raw: string | null,
  paymentRaw: string | null = null,
  consumedAt: string | null = null,
): GatewayEvent => {
  if (raw === null) throw new EventError(`entry has no "${EVENT_FIELD}" field`);
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new EventError('event is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new EventError('event is not an object');
  const e = value as Record<string, unknown>;
  if (e['type'] !== 'gateway.start' && e['type'] !== 'gateway.end') {
    throw new EventError(`unknown event type ${JSON.stringify(e['type'])}`);
  }
  if (e['v'] !== 1) throw new EventError(`${e['type']}: unsupported version ${JSON.stringify(e['v'])}`);
  need(e, typeof e['id'] === 'string' && isId('gatewayRequest', e['id']), 'id');
  need(e, typeof e['listing_id'] === 'string' && isId('listing', e['listing_id']), 'listing_id');
  need(e, isCount(e['at']) && (e['at'] as number) > 0, 'at');
  if (e['type'] === 'gateway.start') {
    need(e, typeof e['seller_id'] === 'string' && isId('agent', e['seller_id']), 'seller_id');
    need(e, typeof e['buyer_id'] === 'string' && isId('agent', e['buyer_id']), 'buyer_id');
    need(e, typeof e['key_id'] === 'string' && isId('key', e['key_id']), 'key_id');
    need(e, isText(e['method'], 16), 'method');
    need(e, typeof e['path'] === 'string', 'path');
    // Free text (the path is the buyer's): a lone UTF-16 surrogate in it (which UTF-8 cannot carry) is recorded as
    // U+FFFD, as before rows went to PostgreSQL as JSON, which refuses one outright.
    e['method'] = wellFormed(e['method'] as string);
    e['path'] = wellFormed(e['path'] as string);
    need(e, typeof e['price_atomic'] === 'string' && ATOMIC.test(e['price_atomic']), 'price_atomic');
    need(e, typeof e['currency'] === 'string' && isCurrency(e['currency']), 'currency');
    const start = e as unknown as GatewayStartEvent;
    // The payment comes as the entry's own field; proxies of the previous release put it inside the event.
    const payment = paymentRaw ?? (e['payment'] === undefined ? null : JSON.stringify(e['payment']));
    if (payment !== null) start.payment = parsePayment(payment);
    if (consumedAt !== null) {
      need(e, /^[0-9]{1,16}$/.test(consumedAt), 'consumed time');
      start.consumed_at = Number(consumedAt);
    }
    return start;
  }
  // Proxies of the release before the lifecycle states call a refusal 'denied' (a rolling upgrade meets both).
  if (e['status'] === 'denied') e['status'] = 'refused';
  need(e, typeof e['status'] === 'string' && Object.hasOwn(STATUSES, e['status']), 'status');
  need(e, isCount(e['http_status'], 999), 'http_status');
  need(e, e['error_code'] === null || isText(e['error_code'], 64), 'error_code');
  if (e['error_code'] !== null) e['error_code'] = wellFormed(e['error_code'] as string);
  need(e, isCount(e['latency_ms'], INT32_MAX), 'latency_ms');
  need(e, e['upstream_latency_ms'] === null || isCount(e['upstream_latency_ms'], INT32_MAX), 'upstream_latency_ms');
  need(e, isCount(e['bytes_in']), 'bytes_in');
  need(e, isCount(e['bytes_out']), 'bytes_out');
  need(e, e['receipt'] === undefined || (isText(e['receipt'], 16_384) && RECEIPT.test(e['receipt'])), 'receipt');
  need(e, e['payment_request_id'] === undefined || isText(e['payment_request_id'], 64), 'payment_request_id');
  return e as unknown as GatewayEndEvent;
};

// The three statements below take their rows as one JSON array of objects ($1, made by startsJson, endsJson and
// mergedRows), read by json_to_recordset in the array's order: one parameter instead of an array per column, which
// the driver would escape element by element. What a row object lacks (or has as null) is NULL.

// A start fills only what is still NULL: when its end came first, the outcome is already there and stays. The one
// exception is created_at, which belongs to the start (a row an end created carries an estimate until then).
const START_SQL = `
  INSERT INTO gateway_requests AS g
         (id, listing_id, seller_id, buyer_id, key_id, method, path, status, price_atomic, currency, created_at,
          payment)
  SELECT s.id, s.listing_id, s.seller_id, s.buyer_id, s.key_id, s.method, s.path, 'forwarded', s.price_atomic,
         s.currency, timestamptz 'epoch' + s.at * interval '1 ms', s.payment
    FROM json_to_recordset($1::json)
         AS s (id text, listing_id text, seller_id text, buyer_id text, key_id text, method text, path text,
               price_atomic bigint, currency text, at bigint, payment jsonb)
  ON CONFLICT (id) DO UPDATE SET
    payment      = CASE WHEN EXCLUDED.payment IS NULL THEN g.payment
                        ELSE EXCLUDED.payment || coalesce(g.payment, '{}'::jsonb) END,
    seller_id    = coalesce(g.seller_id, EXCLUDED.seller_id),
    buyer_id     = coalesce(g.buyer_id, EXCLUDED.buyer_id),
    key_id       = coalesce(g.key_id, EXCLUDED.key_id),
    method       = coalesce(g.method, EXCLUDED.method),
    path         = coalesce(g.path, EXCLUDED.path),
    price_atomic = coalesce(g.price_atomic, EXCLUDED.price_atomic),
    currency     = coalesce(g.currency, EXCLUDED.currency),
    created_at   = EXCLUDED.created_at`;

// An end replaces the outcome unless a later end (by its own time) is already recorded: a duplicate or a delayed
// retry of an older end cannot undo a newer one. A row an end creates takes its seller from the listing, so that
// the seller sees it even before the start arrives.
const END_SQL = `
  INSERT INTO gateway_requests AS g
         (id, listing_id, seller_id, status, http_status, error_code, latency_ms, upstream_latency_ms, bytes_in,
          bytes_out, created_at, completed_at, payment)
  SELECT e.id, e.listing_id, l.seller_id, e.status, e.http_status, e.error_code, e.latency_ms, e.upstream_latency_ms,
         e.bytes_in, e.bytes_out, timestamptz 'epoch' + (e.at - e.latency_ms) * interval '1 ms',
         timestamptz 'epoch' + e.at * interval '1 ms', e.payment
    FROM ROWS FROM (json_to_recordset($1::json)
                    AS (id text, listing_id text, status text, http_status int, error_code text, latency_ms int,
                        upstream_latency_ms int, bytes_in bigint, bytes_out bigint, at bigint, payment jsonb))
         WITH ORDINALITY
         AS e (id, listing_id, status, http_status, error_code, latency_ms, upstream_latency_ms, bytes_in, bytes_out, at,
               payment, n)
    LEFT JOIN listings l ON l.id = e.listing_id
   ORDER BY e.n -- the order given (applyEvents), whatever the join does
  ON CONFLICT (id) DO UPDATE SET
    payment             = CASE WHEN EXCLUDED.payment IS NULL THEN g.payment
                               ELSE coalesce(g.payment, '{}'::jsonb) || EXCLUDED.payment END,
    seller_id           = coalesce(g.seller_id, EXCLUDED.seller_id),
    status              = EXCLUDED.status,
    http_status         = EXCLUDED.http_status,
    error_code          = EXCLUDED.error_code,
    latency_ms          = EXCLUDED.latency_ms,
    upstream_latency_ms = EXCLUDED.upstream_latency_ms,
    bytes_in            = EXCLUDED.bytes_in,
    bytes_out           = EXCLUDED.bytes_out,
    completed_at        = EXCLUDED.completed_at
  WHERE g.completed_at IS NULL OR g.completed_at <= EXCLUDED.completed_at`;

// A start and its end in the same batch (the common case) make the row in one write: what START_SQL then END_SQL
// (and RECEIPT_SQL) would leave on a new row. A row that already exists is left alone here (DO NOTHING) and gets
// those statements instead, so what they do to an existing row stays their business alone.
const MERGED_SQL = `
  INSERT INTO gateway_requests AS g
         (id, listing_id, seller_id, buyer_id, key_id, method, path, status, price_atomic, currency, created_at,
          payment, http_status, error_code, latency_ms, upstream_latency_ms, bytes_in, bytes_out, completed_at, receipt)
  SELECT m.id, m.listing_id, m.seller_id, m.buyer_id, m.key_id, m.method, m.path, m.status, m.price_atomic,
         m.currency, timestamptz 'epoch' + m.at * interval '1 ms',
         CASE WHEN m.end_payment IS NULL THEN m.payment ELSE coalesce(m.payment, '{}'::jsonb) || m.end_payment END,
         m.http_status, m.error_code, m.latency_ms, m.upstream_latency_ms, m.bytes_in, m.bytes_out,
         timestamptz 'epoch' + m.end_at * interval '1 ms', m.receipt
    FROM json_to_recordset($1::json)
         AS m (id text, listing_id text, seller_id text, buyer_id text, key_id text, method text, path text,
               price_atomic bigint, currency text, at bigint, payment jsonb, status text, http_status int,
               error_code text, latency_ms int, upstream_latency_ms int, bytes_in bigint, bytes_out bigint,
               end_at bigint, end_payment jsonb, receipt text)
  ON CONFLICT (id) DO NOTHING
  RETURNING g.id`;

// A request gets at most one receipt (the proxy signs the full receipt once); the first one recorded stays.
// `g.id = ANY ($1)` lets PostgreSQL open (and lock) only the months that hold these ids; the join alone would lock
// every partition of gateway_requests for the update, and wait on the history job checking an old month.
const RECEIPT_SQL = `
  UPDATE gateway_requests AS g SET receipt = r.receipt
    FROM unnest($1::text[], $2::text[]) AS r (id, receipt)
   WHERE g.id = r.id AND g.id = ANY ($1::text[]) AND g.receipt IS NULL`;

// A paid start's proofs are held by its request; a later start that consumed the same proof (after it was given back,
// or the same request resumed) takes it over, and an older delivery never takes it back.
const PROOFS_SQL = `
  INSERT INTO payment_proofs AS p (proof_id, gateway_request_id, consumed_at)
  SELECT c.proof_id, c.id, timestamptz 'epoch' + c.at * interval '1 ms'
    FROM unnest($1::text[], $2::text[], $3::bigint[]) AS c (proof_id, id, at)
  ON CONFLICT (proof_id) DO UPDATE SET
    gateway_request_id = EXCLUDED.gateway_request_id, consumed_at = EXCLUDED.consumed_at, released_at = NULL
  WHERE p.consumed_at < EXCLUDED.consumed_at`;
// A proof given back by its request (nothing charged, or settlement pending: the retry consumes it again), by what
// the request's row says — so an end applied before its start (or a start redelivered after its end) still counts.
// Each request is one primary-key lookup (OFFSET 0 keeps the planner from joining the whole table on stale
// statistics), its proofs one lookup of payment_proofs_request_idx.
const RELEASED_SQL = `
  UPDATE payment_proofs p SET released_at = now()
    FROM unnest($1::text[]) AS r (id)
   CROSS JOIN LATERAL (SELECT g.id FROM gateway_requests g
                        WHERE g.id = r.id AND g.payment -> 'outcome' ->> 'status' IN ('released', 'pending')
                       OFFSET 0) g
   WHERE p.gateway_request_id = g.id AND p.released_at IS NULL`;

// The transaction that settled an x402 payment is consumed by the request it paid (it could otherwise be presented
// as a direct transfer): the same id as plugins' txProofId — 'tx:<network>:<tx>', lowercase on EVM.
const SETTLED_TX_SQL = `
  INSERT INTO payment_proofs (proof_id, gateway_request_id, consumed_at)
  SELECT 'tx:' || (g.payment ->> 'network') || ':' ||
         CASE WHEN g.payment ->> 'network' LIKE 'eip155:%' THEN lower(s.tx) ELSE s.tx END,
         g.id, timestamptz 'epoch' + s.at * interval '1 ms'
    FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS s (id, tx, at, n)
    JOIN gateway_requests g ON g.id = s.id
   WHERE g.payment ->> 'rail' = 'x402-exact'
   ORDER BY s.n
  ON CONFLICT (proof_id) DO NOTHING`;

/** The proofs these events consumed, by proof id: the request and time of the latest consumption. */
const consumedProofs = (events: readonly GatewayEvent[]): Map<string, { id: string; at: number }> => {
  const consumed = new Map<string, { id: string; at: number }>();
  for (const event of events) {
    if (event.type !== 'gateway.start' || !event.payment) continue;
    // Redis's time of the consumption where the entry has it (one clock for every proxy), else the proxy's.
    const at = event.consumed_at ?? event.at;
    for (const proofId of event.payment.proof_ids) {
      if ((consumed.get(proofId)?.at ?? -1) < at) consumed.set(proofId, { id: event.id, at });
    }
  }
  return consumed;
};

/** The parameters of PROOFS_SQL (from its $1) for these proofs. */
const proofArrays = (rows: readonly [string, { id: string; at: number }][]): unknown[][] => [
  rows.map(([p]) => p),
  rows.map(([, c]) => c.id),
  rows.map(([, c]) => c.at),
];

/**
 * The proofs these events consumed or gave back (DESIGN §2 durability rule). `written`: the requests this
 * transaction inserted whole from their start and end (MERGED_SQL), whose row is known without reading it: their
 * payment is the start's and their outcome the end's, so the statements that read the row skip them when it cannot
 * match (not given back; not an x402 payment). `consumed`: every proof the batch consumed (written after every row
 * of the batch, see applyEvents). Returns the paid requests whose row may say their proofs were given back.
 */
const recordProofs = async (
  client: PoolClient,
  events: readonly GatewayEvent[],
  starts: ReadonlyMap<string, GatewayStartEvent>,
  ends: ReadonlyMap<string, GatewayEndEvent>,
  written: ReadonlySet<string>,
  consumed: readonly [string, { id: string; at: number }][],
): Promise<string[]> => {
  if (consumed.length > 0) await client.query(PROOFS_SQL, proofArrays(consumed));
  const paid = new Set<string>();
  for (const event of events) {
    if (!(event.type === 'gateway.start' ? event.payment : event.payment_outcome)) continue;
    const status = ends.get(event.id)?.payment_outcome?.status;
    if (written.has(event.id) && status !== 'released' && status !== 'pending') continue;
    paid.add(event.id);
  }
  if (paid.size > 0) await client.query(RELEASED_SQL, [[...paid].sort(compareIds)]);
  const settled: GatewayEndEvent[] = [];
  for (const end of [...ends.values()].sort(byId)) {
    const outcome = end.payment_outcome;
    if (written.has(end.id) && starts.get(end.id)?.payment?.rail !== 'x402-exact') continue;
    if (outcome?.status === 'settled' && outcome.tx) settled.push(end);
  }
  if (settled.length > 0) {
    await client.query(SETTLED_TX_SQL, [
      settled.map((e) => e.id),
      settled.map((e) => e.payment_outcome!.tx),
      settled.map((e) => e.at),
    ]);
  }
  return [...paid];
};

const compareIds = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const byId = (a: { id: string }, b: { id: string }): number => compareIds(a.id, b.id);

/** Whether an event may say money moved: a paid start, or an end with a payment outcome other than released. */
const carriesMoney = (e: GatewayEvent): boolean =>
  e.type === 'gateway.start'
    ? e.payment !== undefined
    : e.payment_outcome !== undefined && e.payment_outcome.status !== 'released';

const BOOKED_SQL = `
  SELECT DISTINCT gateway_request_id FROM ledger_journals WHERE idempotency_key = ANY ($1::text[])`;

const LOCK_HISTORY_SQL = 'LOCK TABLE ONLY gateway_requests IN ACCESS SHARE MODE';
/**
 * A batch's transaction opened, the history locked and the dropped months read, in one round trip (the consumer's
 * `apply`): its third result is what `applyEvents` takes as `dropped`.
 */
export const OPEN_BATCH_SQL = `BEGIN; ${LOCK_HISTORY_SQL}; ${DROPPED_RANGES_SQL}`;
export const openedDropped = (opened: readonly QueryResult[]): DroppedRanges =>
  new DroppedRanges(opened[2]!.rows as { from_id: string; to_id: string }[]);

/**
 * The events to write, without those of calls in a month the history retention dropped (history-partitions.ts):
 * such a call was recorded, and an event of it now is a late duplicate (an outbox replayed after Redis lost its
 * data, say) that would come back as a partial row outside every month. Unless it may carry money its call was never
 * booked for (a proxy clock far behind, a dead letter replayed months later): then its events are written all the
 * same, to the default partition, for posting and reconciliation — money is never dropped silently.
 *
 * The parent table is locked first (ACCESS SHARE: only a partition's DROP conflicts), so that a month cannot be
 * dropped between the read of the dropped ranges and this transaction's writes: a drop waits for the transaction (and
 * gives up after its lock timeout) or committed before the read and is seen.
 */
const withoutDroppedMonths = async (
  client: PoolClient,
  given: readonly GatewayEvent[],
  log: LedgerOptions['log'],
  read?: DroppedRanges,
): Promise<readonly GatewayEvent[]> => {
  let dropped = read;
  if (!dropped) {
    await client.query(LOCK_HISTORY_SQL);
    dropped = await droppedRanges(client);
  }
  if (dropped.empty) return given;
  const late = given.filter((e) => dropped.has(e.id));
  if (late.length === 0) return given;
  const paid = [...new Set(late.filter(carriesMoney).map((e) => e.id))];
  const booked = new Set(
    paid.length === 0
      ? []
      : (
          await client.query<{ gateway_request_id: string }>(BOOKED_SQL, [
            paid.flatMap((id) => [`${id}:payment`, `${id}:loss`]),
          ])
        ).rows.map((r) => r.gateway_request_id),
  );
  const unbooked = new Set(paid.filter((id) => !booked.has(id)));
  const ignored = new Set(late.map((e) => e.id).filter((id) => !unbooked.has(id)));
  if (ignored.size > 0) {
    log?.warn(
      { ignored: ignored.size, ids: [...ignored].slice(0, 20) },
      'gateway events of calls in months the history retention dropped ignored (recorded before)',
    );
  }
  if (unbooked.size > 0) {
    log?.warn(
      { ids: [...unbooked].slice(0, 20) },
      'paid gateway events of calls in months the history retention dropped, never booked: written to the default ' +
        'partition for posting and reconciliation',
    );
  }
  return given.filter((e) => !ignored.has(e.id));
};

/**
 * Applies events in two set-based statements. Within one statement a row may change only once, so events are
 * folded per request first: duplicate starts are identical, and of several ends the latest wins. Returns the paid
 * requests whose proofs may have been given back (for releaseInRedis): all those the events touch but the ones
 * written whole here with an outcome that gives nothing back.
 */
export const applyEvents = async (
  client: PoolClient,
  given: readonly GatewayEvent[],
  ledger: LedgerOptions = { feeBps: DEFAULT_FEE_BPS },
  /** The dropped months, read after the history was locked in this transaction (OPEN_BATCH_SQL); else done here. */
  dropped?: DroppedRanges,
): Promise<string[]> => {
  const events = await withoutDroppedMonths(client, given, ledger.log, dropped);
  const starts = new Map<string, GatewayStartEvent>();
  const ends = new Map<string, GatewayEndEvent>();
  for (const event of events) {
    if (event.type === 'gateway.start') {
      if (!starts.has(event.id)) starts.set(event.id, event);
    } else if ((ends.get(event.id)?.at ?? -1) <= event.at) {
      ends.set(event.id, event);
    }
  }
  // Requests with both events here are inserted whole; the rest (and those whose row already exists) take the two
  // statements, which are the reference semantics.
  // Every statement writes its rows in id order (proofs in proof id order): two transactions writing some of the same
  // rows (a call's start in one batch and its end in the next, applied at once) then wait for each other in one
  // direction only. Across statements a cycle is still possible (an end read before its start, a proof given back
  // and consumed again in the other batch): rare, and PostgreSQL's deadlock error is applied again (`apply`).
  const written = new Set<string>();
  const consumed = [...consumedProofs(events)].sort(([a], [b]) => compareIds(a, b));
  const both = [...starts.values()].filter((s) => ends.has(s.id)).sort(byId);
  if (both.length > 0) {
    const result = await client.query<{ id: string }>(MERGED_SQL, [mergedRows(both, ends)]);
    for (const { id } of result.rows) written.add(id);
  }
  const startRows = [...starts.values()].filter((s) => !written.has(s.id)).sort(byId);
  const endRows = [...ends.values()].filter((e) => !written.has(e.id)).sort(byId);
  if (startRows.length > 0) await client.query(START_SQL, [startsJson(startRows)]);
  if (endRows.length > 0) await client.query(END_SQL, [endsJson(endRows)]);
  // Receipts (§3.4): after the end's row exists; a row written whole above already has its receipt.
  const receipts = endRows.filter((e) => e.receipt !== undefined);
  if (receipts.length > 0) {
    await client.query(RECEIPT_SQL, [receipts.map((e) => e.id), receipts.map((e) => e.receipt)]);
  }
  // The proofs, once every row of the batch is written (and locked): rows before proofs, in every transaction — a
  // batch that locked a proof before another request's row would deadlock against one that holds that row and waits
  // for the proof (a proof given back by one request and consumed again by the buyer's retry).
  const givenBack = await recordProofs(client, events, starts, ends, written, consumed);
  // §3.5: the journals these events make due, in this same transaction (ledger/posting.ts).
  await postLedger(client, events, ledger);
  return givenBack;
};

// The JSON parameter of the statements above. Each row names only the columns its statement reads:
// json_to_recordset parses (and de-escapes) every key of an object, so a key it does not read — a field a newer
// proxy adds — would otherwise make the whole start poison with a lone surrogate or a \u0000 in it.
const startRow = (s: GatewayStartEvent) => ({
  id: s.id,
  listing_id: s.listing_id,
  seller_id: s.seller_id,
  buyer_id: s.buyer_id,
  key_id: s.key_id,
  method: s.method,
  path: s.path,
  price_atomic: s.price_atomic,
  currency: s.currency,
  at: s.at,
  payment: s.payment ?? null,
});
const startsJson = (rows: readonly GatewayStartEvent[]): string => JSON.stringify(rows.map(startRow));

// What an end adds to the request's payment record: the payment's outcome, or the payment request a 402 issued.
// Built field by field, not as `{ ...a, ...b }` (a literal with two spreads gets slow dictionary properties).
const endPayment = (r: GatewayEndEvent): { outcome?: unknown; request_id?: string } | null => {
  if (!r.payment_outcome && !r.payment_request_id) return null;
  const payment: { outcome?: unknown; request_id?: string } = {};
  if (r.payment_outcome) payment.outcome = r.payment_outcome;
  if (r.payment_request_id) payment.request_id = r.payment_request_id;
  return payment;
};

/** An end's outcome columns. */
const outcomeOf = (e: GatewayEndEvent) => ({
  status: e.status,
  http_status: e.http_status,
  error_code: e.error_code,
  latency_ms: e.latency_ms,
  upstream_latency_ms: e.upstream_latency_ms,
  bytes_in: e.bytes_in,
  bytes_out: e.bytes_out,
});

const endsJson = (rows: readonly GatewayEndEvent[]): string =>
  JSON.stringify(
    rows.map((e) => ({
      id: e.id,
      listing_id: e.listing_id,
      ...outcomeOf(e),
      at: e.at,
      payment: endPayment(e),
    })),
  );

const mergedRows = (starts: readonly GatewayStartEvent[], ends: ReadonlyMap<string, GatewayEndEvent>): string =>
  JSON.stringify(
    starts.map((s) => {
      const e = ends.get(s.id)!;
      // Not `{ ...a, ...b }`: a literal with two spreads gets slow (dictionary) properties, which made JSON.stringify
      // ten times slower per row.
      return Object.assign(startRow(s), outcomeOf(e), {
        end_at: e.at,
        end_payment: endPayment(e),
        receipt: e.receipt ?? null,
      });
    }),
  );

/**
 * True when retrying cannot help the event itself: it is malformed, or PostgreSQL refused its data (SQLSTATE
 * classes 22 data exception and 23 integrity violation; ledger posting raises its own data problems as 22023 and an
 * unbalanced journal fails the commit with 23514). Anything else — PostgreSQL unreachable, a timeout, a bug in
 * a statement — leaves the entries waiting in the stream instead of dead-lettering good events (§4: "PostgreSQL
 * down: events wait in the stream").
 */
const isPoison = (error: unknown): boolean => {
  if (error instanceof EventError) return true;
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code);
};

/**
 * Two transactions writing the same rows (two batches in hand, or two control planes): a deadlock PostgreSQL broke, a
 * serialization failure, or an account the other created after this one's snapshot (LedgerAccountRaceError). Such a
 * batch is applied again at once (CONTENTION_ATTEMPTS in all), before the usual retry.
 */
const isContention = (error: unknown): boolean => {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '40P01' || code === '40001';
};
const CONTENTION_ATTEMPTS = 3;

/** An error's message, with PostgreSQL's detail where it gives one (what a dead letter's `error` says). */
const messageOf = (error: unknown): string => {
  if (!(error instanceof Error)) return String(error);
  const detail = (error as { detail?: unknown }).detail;
  return typeof detail === 'string' && detail !== '' ? `${error.message}: ${detail}` : error.message;
};

/** Reads a flat `[name, value, …]` reply (XINFO) into an object. */
const flat = (reply: unknown): Record<string, unknown> => {
  const out: Record<string, unknown> = {};
  const list = reply as unknown[];
  for (let i = 0; i + 1 < list.length; i += 2) out[String(list[i])] = list[i + 1];
  return out;
};

export const GIVEN_BACK_SQL = `
  SELECT id, buyer_id, price_atomic::text AS price_atomic, payment, created_at FROM gateway_requests
   WHERE id = ANY ($1::text[]) AND buyer_id IS NOT NULL AND payment ? 'proof_ids'
     AND payment -> 'outcome' ->> 'status' IN ('released', 'pending')`;

/**
 * Gives back in Redis the proofs of calls recorded as given back (DESIGN §2: giving a proof back must happen). The
 * proxy did it already, unless Redis failed it for long: the script is idempotent and only releases a proof still
 * held by that very request, so doing it again here is harmless — and makes sure it happens.
 */
export const releaseInRedis = async (
  pool: Pick<Pool, 'query'>,
  scripts: GatewayScripts,
  ids: readonly string[],
  log: Pick<EventsConsumerLog, 'error'>,
): Promise<void> => {
  if (ids.length === 0) return;
  const { rows } = await pool.query<{
    id: string;
    buyer_id: string;
    price_atomic: string;
    payment: PaymentRecord & { outcome: { status: string } };
    created_at: Date;
  }>(GIVEN_BACK_SQL, [ids]);
  for (const row of rows) {
    try {
      await scripts.release({
        gatewayRequestId: row.id,
        proofIds: row.payment.proof_ids,
        proofId: row.payment.proof_ids[0]!,
        buyerId: row.buyer_id,
        day: utcDay(row.created_at.getTime()),
        priceAtomic: row.price_atomic,
        mode: row.payment.outcome.status === 'pending' ? 'hold' : 'give',
      });
    } catch (error) {
      // One row Redis refuses (out of memory, say) does not hold up the stream behind it.
      log.error({ err: error, id: row.id }, 'could not give a proof back in Redis');
    }
  }
};

/** The stream id just before `id` ("<ms>-<seq>"). */
/**
 * KEYS[1] the events stream, ARGV[1] the group. Trims the stream before the oldest entry still pending (or, with
 * none pending, before the last one delivered): everything before it is acknowledged, i.e. committed. Nothing
 * undelivered is touched (it comes after the last delivered). `~`: whole stream nodes only, cheap. Returns {pending
 * count, oldest pending id or false, last delivered id or false}.
 */
const TRIM_COMMITTED_LUA = `
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
local delivered = false
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, last
  for i = 1, #group, 2 do
    if group[i] == 'name' then name = group[i + 1] elseif group[i] == 'last-delivered-id' then last = group[i + 1] end
  end
  if name == ARGV[1] then delivered = last end
end
if not delivered then return {pending[1], false, false} end
local threshold = delivered
if pending[1] > 0 then threshold = pending[2] end
if threshold ~= '0-0' then redis.call('XTRIM', KEYS[1], 'MINID', '~', threshold) end
return {pending[1], pending[2] or false, delivered}
`;

/** An entry that could not be applied: its fields as read, and why. */
interface Failure {
  id: string;
  fields: string[];
  error: string;
}

/** A dead letter's copy of the entry's fields (with an empty event field when the entry had none). */
const deadFields = (f: Failure): string[] =>
  fieldOf(f.fields, EVENT_FIELD) !== null ? f.fields : [EVENT_FIELD, '', ...f.fields];

const streamIdBefore = (id: string): string => {
  const [ms, seq] = id.split('-').map(BigInt) as [bigint, bigint];
  return seq > 0n ? `${ms}-${seq - 1n}` : `${ms - 1n}-18446744073709551615`;
};

const fieldOf = (fields: string[], name: string): string | null => {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1]!;
  return null;
};

/** Creates the group (from the start of the stream) and starts the loop; resolves once the group exists. */
export const startEventsConsumer = async (options: EventsConsumerOptions): Promise<EventsConsumer> => {
  const { pool, redis, log } = options;
  const name = options.consumerName ?? hostname();
  const batchSize = options.batchSize ?? 500;
  const blockMs = options.blockMs ?? 1000;
  const claimIdleMs = options.claimIdleMs ?? 30_000;
  const maxDeliveries = options.maxDeliveries ?? 5;
  const holdStartsMs = options.holdStartsMs ?? 250;
  const gatherMs = options.gatherMs ?? 50;
  const applyDepth = Math.max(1, options.applyDepth ?? 2);
  const ledger: LedgerOptions = { feeBps: options.feeBps ?? DEFAULT_FEE_BPS, log };
  const keys = redisKeys(options.prefix);
  const stream = keys.events;
  // Looking for idle entries twice per idle period bounds how long a dead consumer's entries wait.
  const claimEveryMs = Math.max(10, Math.floor(claimIdleMs / 2));

  const stats: EventsConsumerStats = { processed: 0, deadLettered: 0, lastError: null };
  let stopped = false;
  let wake: (() => void) | null = null;
  /** Settled by stop() when it gives up on a read in hand (see there). */
  let interrupt: () => void = () => {};
  const interrupted = new Promise<null>((resolve) => {
    interrupt = () => resolve(null);
  });

  const ensureGroup = async (): Promise<void> => {
    // A group that exists needs nothing: a Redis out of memory refuses XGROUP CREATE even then, and the consumer is
    // what frees it (it trims what it committed).
    const groups = (await redis.xinfo('GROUPS', stream).catch(() => null)) as unknown[] | null;
    if (groups?.map(flat).some((g) => g['name'] === EVENTS_GROUP)) return;
    try {
      // At 0, not $: entries the proxies wrote before the first control plane ever started are consumed too.
      await redis.xgroup('CREATE', stream, EVENTS_GROUP, '0', 'MKSTREAM');
    } catch (error) {
      if (!messageOf(error).startsWith('BUSYGROUP')) throw error;
    }
  };
  await ensureGroup();

  /**
   * Dead letters of an earlier release kept only the event field; their originals stayed in the stream, which nothing
   * trimmed. Now that committed entries are trimmed, each such letter whose original is still there gets the whole
   * entry (a paid start's payment and consumed time) before this consumer trims anything: a new letter with every
   * field, and the old one removed. Idempotent; several control planes starting at once may copy one twice.
   */
  const completeDeadLetters = async (): Promise<void> => {
    for (const [letterId, fields] of await redis.xrange(keys.eventsDead, '-', '+', 'COUNT', 10_000)) {
      const original = fieldOf(fields, 'id');
      if (original === null || fields[0] !== EVENT_FIELD || fields[2] !== 'id') continue; // whole already
      const [entry] = await redis.xrange(stream, original, original);
      if (!entry || entry[1].length <= 2) continue; // gone, or it had only its event field
      await redis
        .multi()
        .xadd(keys.eventsDead, '*', ...entry[1], ...fields.slice(2))
        .xdel(keys.eventsDead, letterId)
        .exec();
    }
  };
  await completeDeadLetters().catch((error: unknown) =>
    log.warn({ err: error }, 'events consumer: earlier dead letters not completed (tried again at the next start)'),
  );

  const scripts = createGatewayScripts(redis, keys);
  redis.defineCommand('crochetTrimCommitted', { lua: TRIM_COMMITTED_LUA, numberOfKeys: 1 });
  const trimCommitted = (redis as unknown as Record<string, (key: string, group: string) => Promise<unknown>>)[
    'crochetTrimCommitted'
  ]!.bind(redis);
  const blocking = redis.duplicate();
  blocking.on('error', () => {}); // reconnects by itself; failures surface as rejected reads

  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      wake = done;
    });

  const read = async (from: string): Promise<StreamEntry[]> => {
    // Only new entries ('>') are worth waiting for; a read of the pending list answers at once.
    const command =
      from === '>'
        ? blocking.xreadgroup(
            'GROUP',
            EVENTS_GROUP,
            name,
            'COUNT',
            batchSize,
            'BLOCK',
            blockFor(),
            'STREAMS',
            stream,
            from,
          )
        : blocking.xreadgroup('GROUP', EVENTS_GROUP, name, 'COUNT', batchSize, 'STREAMS', stream, from);
    command.catch(() => {}); // when stop() gave up on it (below)
    const reply = await Promise.race([command, interrupted]);
    return (reply as [string, StreamEntry[]][] | null)?.[0]?.[1] ?? [];
  };

  const ack = async (ids: string[]): Promise<void> => {
    if (ids.length > 0) await redis.xack(stream, EVENTS_GROUP, ...ids);
  };

  /**
   * Entries that failed stay pending (to be read again) until their delivery count reaches maxDeliveries; then they
   * go to the dead-letter stream with their error, in one MULTI with the XACK. Returns true when some stay pending.
   */
  const failed = async (failures: Failure[]): Promise<boolean> => {
    const pipeline = redis.pipeline();
    for (const f of failures) pipeline.xpending(stream, EVENTS_GROUP, f.id, f.id, 1);
    const replies = (await pipeline.exec()) ?? [];
    let waiting = false;
    for (const [i, f] of failures.entries()) {
      const [error, reply] = replies[i] ?? [null, []];
      if (error) throw error;
      const entry = (reply as [string, string, number, number][])[0];
      if (!entry) {
        rereads.delete(f.id);
        continue; // acknowledged or dead-lettered meanwhile by another consumer
      }
      // Deliveries that were only re-reads of a start held here are not failed deliveries (see `rereads`).
      const deliveries = Number(entry[3]) - (rereads.get(f.id) ?? 0);
      stats.lastError = f.error;
      if (deliveries < maxDeliveries) {
        waiting = true;
        continue;
      }
      const results = await redis
        .multi()
        .xadd(
          keys.eventsDead,
          '*',
          // The whole entry (a paid start's payment and consumed time too): once acknowledged it is trimmed from the
          // stream, and this copy is all that is left of it.
          ...deadFields(f),
          'id',
          f.id,
          'error',
          f.error,
          'deliveries',
          String(deliveries),
          'consumer',
          name,
        )
        .xack(stream, EVENTS_GROUP, f.id)
        .exec();
      const refused = results?.find(([error]) => error)?.[0];
      if (!results || refused) throw refused ?? new Error('dead-letter transaction aborted');
      rereads.delete(f.id);
      stats.deadLettered++;
      // The event itself is not logged: its path may carry a buyer's query string.
      log.warn({ entry: f.id, deliveries, error: f.error }, 'gateway event dead-lettered');
    }
    return waiting;
  };

  /**
   * Pending entries no longer in the stream: only what is committed is ever trimmed, so these were deleted by hand (or
   * the stream replaced); nothing is left to apply, and it is said.
   */
  const reportGone = (ids: readonly string[]): void => {
    if (ids.length > 0) {
      log.error({ entries: ids.slice(0, 20), count: ids.length }, 'pending gateway events gone from the stream');
    }
  };

  /**
   * Free calls' starts read without their end, by entry id: kept unacknowledged (so a crash loses nothing: the entry
   * is delivered again) for up to holdStartsMs, to be written together with their end in one insert.
   */
  const held = new Map<string, { id: string; fields: string[]; event: GatewayEvent; heldAt: number }>();
  /**
   * By entry id: how many times a read of the pending list delivered a start again while it was held here (skipped,
   * not applied). Redis counts those as deliveries; they are taken off its count until the entry is acknowledged, so
   * that a held start refused later still gets maxDeliveries attempts and its dead letter says how many it had.
   */
  const rereads = new Map<string, number>();

  /** How long the next read of new entries may block: not past the time a held start is due. */
  const blockFor = (): number => {
    const base = Math.min(blockMs, claimEveryMs);
    if (held.size === 0) return base;
    const oldest = held.values().next().value!.heldAt;
    return Math.max(1, Math.min(base, oldest + holdStartsMs - Date.now()));
  };

  /** One transaction for `events`, applied again at once after contention (isContention). */
  const apply = async (events: GatewayEvent[]): Promise<string[]> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await transaction(
          pool,
          (client, opened) => applyEvents(client, events, ledger, openedDropped(opened)),
          OPEN_BATCH_SQL,
        );
      } catch (error) {
        if (!isContention(error)) throw error;
        if (attempt >= CONTENTION_ATTEMPTS) {
          // Three times in a row is no longer a race to wait out: said loudly, and left to the usual retry.
          log.error({ err: error, attempts: attempt }, 'events consumer: batch still meets another writer');
          throw error;
        }
        log.warn({ err: error, attempt }, 'events consumer: batch met another writer; applied again');
      }
    }
  };

  /**
   * Applies a batch in one transaction; on a poison failure, entry by entry. Returns true when some stay pending.
   * Held starts come back when their end is in the batch, when they have waited holdStartsMs, or on stop.
   */
  const handle = async (entries: StreamEntry[]): Promise<boolean> => {
    const good: { id: string; fields: string[]; event: GatewayEvent }[] = [];
    const bad: Failure[] = [];
    const gone: string[] = [];
    for (const [id, fields] of entries) {
      if (held.has(id)) {
        rereads.set(id, (rereads.get(id) ?? 0) + 1); // read again from the pending list: it is held here already
        continue;
      }
      if (fields === null) {
        gone.push(id); // deleted from the stream after it was read: nothing left to apply
        continue;
      }
      const raw = fieldOf(fields, EVENT_FIELD);
      try {
        const event = parseEvent(raw, fieldOf(fields, EVENT_PAYMENT_FIELD), fieldOf(fields, EVENT_TIME_FIELD));
        good.push({ id, fields, event });
      } catch (error) {
        bad.push({ id, fields, error: messageOf(error) });
      }
    }
    reportGone(gone);
    const now = Date.now();
    const endsHere = new Set<string>();
    for (const g of good) if (g.event.type === 'gateway.end') endsHere.add(g.event.id);
    for (const [entryId, h] of held) {
      if (stopped || endsHere.has(h.event.id) || now - h.heldAt >= holdStartsMs) {
        held.delete(entryId);
        good.push(h);
      }
    }
    if (holdStartsMs > 0 && !stopped) {
      for (let i = good.length - 1; i >= 0; i--) {
        const g = good[i]!;
        const start = g.event.type === 'gateway.start' && g.event.payment === undefined;
        if (!start || endsHere.has(g.event.id) || held.has(g.id) || held.size >= MAX_HELD) continue;
        if ('heldAt' in g) continue; // came back just now: written this time
        held.set(g.id, { ...g, heldAt: now });
        good.splice(i, 1);
      }
    }
    // Everything above runs before this call first waits: the next batch may be read (and its held starts sorted)
    // while this one is being applied (see `run`).
    await ack(gone);
    if (good.length > 0) {
      try {
        const givenBack = await apply(good.map((g) => g.event));
        await releaseInRedis(pool, scripts, givenBack, log);
        await ack(good.map((g) => g.id));
        for (const g of good) rereads.delete(g.id);
        stats.processed += good.length;
      } catch (error) {
        if (!isPoison(error)) throw error;
        for (const g of good) {
          try {
            const givenBack = await apply([g.event]);
            await releaseInRedis(pool, scripts, givenBack, log);
            await ack([g.id]);
            rereads.delete(g.id);
            stats.processed++;
          } catch (single) {
            if (!isPoison(single)) throw single;
            bad.push({ id: g.id, fields: g.fields, error: messageOf(single) });
          }
        }
      }
    }
    return bad.length > 0 ? failed(bad) : false;
  };

  const claimIdle = async (): Promise<boolean> => {
    let waiting = false;
    let cursor = '0-0';
    do {
      const reply = (await redis.xautoclaim(stream, EVENTS_GROUP, name, claimIdleMs, cursor, 'COUNT', batchSize)) as [
        string,
        StreamEntry[],
        string[]?,
      ];
      cursor = reply[0];
      reportGone(reply[2] ?? []); // Redis drops them from the pending list
      if (reply[1].length > 0 && (await handle(reply[1]))) waiting = true;
    } while (cursor !== '0-0' && !stopped);
    return waiting;
  };

  /**
   * Publishes the stream id up to which every entry is committed to PostgreSQL (acknowledged, by any consumer of the
   * group): the proxies keep what they wrote until then, to append it again should Redis lose the stream (DESIGN §2).
   * The entries before it are trimmed from the stream: they are in PostgreSQL (dead letters keep whole copies), and
   * kept they would grow Redis by two entries per gateway call forever. The watermark is read and the stream trimmed
   * in one script (TRIM_COMMITTED_LUA), on one server at one moment: never with a watermark from another Redis, and
   * even when Redis is out of memory (the trim is what frees it; the SET after it may then fail, and is retried).
   * At most every 100 ms; a failure here is logged, never taken for a batch that failed.
   */
  let committedAt = 0;
  const publishCommitted = async (): Promise<void> => {
    if (Date.now() - committedAt < 100) return;
    committedAt = Date.now();
    try {
      const [count, oldest, delivered] = (await trimCommitted(stream, EVENTS_GROUP)) as [
        number,
        string | null,
        string | null,
      ];
      if (delivered === null) return;
      const committed = Number(count) > 0 && oldest ? streamIdBefore(oldest) : delivered;
      if (committed !== '0-0') await redis.set(keys.eventsCommitted, committed);
    } catch (error) {
      stats.lastError = messageOf(error);
      log.warn({ err: error }, 'events consumer: committed position not published (retried)');
    }
  };

  /**
   * Batches of new entries being applied. Up to `applyDepth` at once: the next batch is read and parsed (and its held
   * starts sorted, synchronously in `handle`) while PostgreSQL writes the one before, instead of the two taking turns.
   * They are transactions like those of two control planes side by side (rows written in id order, postings
   * idempotent, contention applied again: `apply`); acknowledged in any order, the committed watermark is still the
   * oldest entry pending. Reading the pending list, claiming and stopping wait for all of them first: those read
   * entries that may be in hand here.
   */
  const inFlight = new Set<Promise<void>>();
  let batchesLeftPending = false;
  let batchError: { error: unknown } | null = null;
  const track = (batch: Promise<boolean>): void => {
    const tracked: Promise<void> = batch
      .then(
        (waiting) => {
          if (waiting) batchesLeftPending = true;
        },
        (error: unknown) => {
          batchError ??= { error };
        },
      )
      .finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  };
  /** Waits until at most `upTo` batches are in hand; a batch that failed throws here, once none is left in hand. */
  const settle = async (upTo: number): Promise<void> => {
    while (inFlight.size > upTo || (batchError && inFlight.size > 0)) await Promise.race(inFlight);
    if (batchError) {
      const { error } = batchError;
      batchError = null;
      throw error;
    }
  };

  const run = async (): Promise<void> => {
    // null: reading new entries; otherwise the position in this consumer's own pending entries.
    let backlogFrom: string | null = '0';
    let revisit = false;
    let lastClaimAt = 0;
    let backoffMs = 0;
    while (!stopped) {
      try {
        if (Date.now() - lastClaimAt >= claimEveryMs) {
          await settle(0);
          lastClaimAt = Date.now();
          if (await claimIdle()) revisit = true;
        }
        if (backlogFrom !== null) {
          await settle(0);
          const entries = await read(backlogFrom);
          if (entries.length === 0) {
            // End of the pending list: once more from its start when something failed in this pass.
            backlogFrom = revisit ? '0' : null;
            revisit = false;
            continue;
          }
          backlogFrom = entries[entries.length - 1]![0];
          if (await handle(entries)) revisit = true;
        } else {
          const readAt = Date.now();
          const entries = await read('>');
          track(handle(entries));
          await settle(applyDepth - 1);
          if (batchesLeftPending || revisit) backlogFrom = '0';
          batchesLeftPending = false;
          revisit = false;
          await publishCommitted();
          // A batch that did not fill: let the next one gather (stop() wakes the wait).
          const wait = readAt + gatherMs - Date.now();
          if (entries.length > 0 && entries.length < batchSize && backlogFrom === null && wait > 0) await sleep(wait);
          backoffMs = 0;
          continue;
        }
        await publishCommitted();
        backoffMs = 0;
      } catch (error) {
        if (stopped) break;
        stats.lastError = messageOf(error);
        if (stats.lastError.startsWith('NOGROUP')) {
          await ensureGroup().catch(() => {}); // the stream was deleted under us
        } else {
          log.error({ err: error }, 'events consumer: batch not applied; it stays in the stream and is retried');
        }
        backlogFrom = '0';
        backoffMs = Math.min(backoffMs === 0 ? 100 : backoffMs * 2, 5_000);
        await sleep(backoffMs);
      }
    }
    // A batch that failed stays pending, for the next run.
    await settle(0).catch((error: unknown) => {
      stats.lastError = messageOf(error);
      log.warn({ err: error }, 'events consumer: a batch in hand at stop not applied; it stays in the stream');
    });
    // Starts held for their end are written now (unacknowledged if that fails: delivered again after a restart).
    if (held.size > 0) await handle([]).catch(() => {});
  };

  const loop = run();
  log.info({ consumer: name, stream }, 'events consumer started');

  return {
    stop: async () => {
      stopped = true;
      wake?.();
      // Closing the connection ends a blocked read, and its promise settles once the server has closed its side too,
      // so no entry can be delivered to this consumer after stop() (what a read returned unacknowledged stays
      // pending for the next run). A read queued on a connection that is not up (Redis down) was never sent, and
      // would never settle: disconnecting cancels the reconnection it waits for. That one is given up at once, and
      // any read after a grace period (a paused Redis never closes its side).
      if (blocking.status !== 'ready') interrupt();
      const grace = setTimeout(interrupt, STOP_GRACE_MS);
      blocking.disconnect();
      await loop;
      clearTimeout(grace);
    },
    drain: async ({ timeoutMs = 15_000 } = {}) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (stopped) throw new Error('events consumer is stopped');
        const info = flat(await redis.xinfo('STREAM', stream));
        const groups = ((await redis.xinfo('GROUPS', stream)) as unknown[]).map(flat);
        const group = groups.find((g) => g['name'] === EVENTS_GROUP);
        if (
          group &&
          Number(group['pending']) === 0 &&
          String(group['last-delivered-id']) === String(info['last-generated-id'])
        ) {
          return;
        }
        if (Date.now() > deadline) {
          throw new Error(
            `events consumer did not drain within ${timeoutMs} ms (pending ${group?.['pending']}, delivered up to ` +
              `${group?.['last-delivered-id']} of ${info['last-generated-id']}; last error: ${stats.lastError})`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    stats: () => ({ ...stats }),
  };
};
