/**
 * Client for the two Relay API endpoints the gateway needs to check an `X-Crochet-Relay-Request-Id` payment
 * (DESIGN §3.4):
 *
 * - `GET /intents/status/v3?requestId=` — https://docs.relay.link/references/api/get-intents-status-v3
 *   `{ status, details?, inTxHashes[], txHashes[], updatedAt, originChainId, destinationChainId }`
 * - `GET /requests/v3?id=` — https://docs.relay.link/references/api/get-requests (the `x-api-key` header is
 *   required). `{ requests: [{ id, status, user, recipient, sender, data: { failReason, inTxs[], outTxs[]: [{ txHash,
 *   chainId, timestamp, … }], route: { quoted, actual: { origin, destination: { inputCurrency, outputCurrency: {
 *   currency: { chainId, address, symbol, decimals }, amount, … } } } }, refundCurrencyData }, createdAt, updatedAt
 *   }], continuation? }`.
 *   It replaced `GET /requests/v2`, deprecated by Relay on 2026-07-22 and retired on 2026-11-24
 *   (https://docs.relay.link/references/api/api_guides/migrating-to-requests-v3); this client never calls v2.
 *
 * The API key goes in the `x-api-key` header (https://docs.relay.link/references/api/api-keys) on both calls: v3
 * requires it, and the status endpoint grants a keyed caller higher rate limits.
 *
 * Only the fields the gateway uses are typed and validated; everything Relay marks optional stays optional here,
 * arrays default to `[]`. Whatever the response, nothing here decides whether a payment is good: that is the caller's
 * job (status must be `success`, recipient / currency / amount must match, the fill must be on-chain).
 *
 * Failures are typed so the gateway can map them: `RelayTimeoutError`, `RelayUnavailableError`, `RelayApiError`
 * (any non-2xx, `retryable` for 429 and 5xx) and `RelayResponseError` (not the documented shape) all mean "Relay could
 * not tell us now" — never that the payment failed (DESIGN §3.4).
 */
import { type Dispatcher, request } from 'undici';

/** Statuses of `GET /intents/status/v3` (the docs' table; its OpenAPI enum lists a subset). */
export const RELAY_INTENT_STATUSES = [
  'waiting',
  'depositing',
  'pending',
  'submitted',
  'success',
  'delayed',
  'refund',
  'failure',
] as const;
export type RelayIntentStatus = (typeof RELAY_INTENT_STATUSES)[number];

/** Statuses after which nothing changes any more. */
export const RELAY_TERMINAL_STATUSES: readonly RelayIntentStatus[] = ['success', 'refund', 'failure'];

/** `requests[].status` of `GET /requests/v3`: the intent statuses (its filter enum lists a subset of them). */
export const RELAY_REQUEST_STATUSES = RELAY_INTENT_STATUSES;
export type RelayRequestStatus = RelayIntentStatus;

// ---------------------------------------------------------------------------------------------------------------
// Wire shapes: the documented subset, as Relay sends it (the stand-in in dev-chains serves exactly these).
// ---------------------------------------------------------------------------------------------------------------

/** 200 body of `GET /intents/status/v3`. */
export interface RelayIntentStatusV3Body {
  status: RelayIntentStatus;
  details?: string;
  /** Incoming (origin-chain) transaction hashes. */
  inTxHashes?: string[];
  /** Outgoing (destination-chain) transaction hashes: the fill. */
  txHashes?: string[];
  /** Last update, epoch milliseconds. */
  updatedAt?: number;
  originChainId?: number;
  destinationChainId?: number;
}

export interface RelayCurrency {
  chainId: number;
  /** Token address (EVM: 0x…; Solana: the mint, base58). */
  address: string;
  symbol: string;
  name?: string;
  decimals: number;
  metadata?: { logoURI?: string; verified?: boolean; isNative?: boolean };
}

/** Relay's `{ currency, amount, amountFormatted, amountUsd, minimumAmount }` object; `amount` is atomic units. */
export interface RelayCurrencyAmount {
  currency: RelayCurrency;
  amount: string;
  amountFormatted?: string;
  amountUsd?: string;
  amountUsdCurrent?: string;
  minimumAmount?: string;
}

/** An entry of `data.inTxs` / `data.outTxs` (v3 names the hash `txHash`; v2 called it `hash`). */
export interface RelayTransaction {
  txHash: string;
  chainId: number;
  /** Seconds. */
  timestamp?: number;
  block?: number;
  /** Always `onchain` per the docs. */
  type?: string;
  /** Total fee, in wei (native units). */
  fee?: string;
  status?: 'success' | 'failure';
  data?: unknown;
}

/** One side of a route: what went in and what came out on that chain. */
export interface RelayRouteLeg {
  inputCurrency?: RelayCurrencyAmount;
  outputCurrency?: RelayCurrencyAmount;
  router?: string;
}

/** `data.route.quoted` / `data.route.actual`: `destination.outputCurrency` is what the recipient got. */
export interface RelayRoute {
  origin?: RelayRouteLeg;
  destination?: RelayRouteLeg;
  rate?: string;
}

/** An element of `requests` in the 200 body of `GET /requests/v3` (the subset the gateway reads). */
export interface RelayRequestV3 {
  id: string;
  status: RelayRequestStatus;
  /** The wallet that made the request. */
  user?: string;
  /** Who receives the destination output. */
  recipient?: string;
  sender?: string;
  refundTo?: string;
  data?: {
    failReason?: string;
    refundFailReason?: string;
    inTxs?: RelayTransaction[];
    /** Destination-chain fill transactions (and refund transactions, for a refund). */
    outTxs?: RelayTransaction[];
    route?: { quoted?: RelayRoute; actual?: RelayRoute };
    refundCurrencyData?: RelayCurrencyAmount;
    timeEstimate?: number;
  };
  requestType?: string;
  /** ISO 8601. */
  createdAt?: string;
  /** ISO 8601. */
  updatedAt?: string;
}

/** 200 body of `GET /requests/v3`. */
export interface RelayRequestsV3Body {
  requests: RelayRequestV3[];
  continuation?: string;
  total?: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Results: validated, arrays defaulted.
// ---------------------------------------------------------------------------------------------------------------

export interface RelayStatus {
  requestId: string;
  status: RelayIntentStatus;
  details?: string;
  inTxHashes: string[];
  /** Destination-chain fill transaction hashes. */
  txHashes: string[];
  /** Epoch milliseconds. */
  updatedAt?: number;
  originChainId?: number;
  destinationChainId?: number;
}

export interface RelayRequest {
  id: string;
  status: RelayRequestStatus;
  user?: string;
  recipient?: string;
  sender?: string;
  inTxs: RelayTransaction[];
  /** Destination-chain fill transactions. */
  outTxs: RelayTransaction[];
  /** What the recipient actually received: `data.route.actual.destination.outputCurrency`. */
  delivered?: RelayCurrencyAmount;
  /** What the quote promised: `data.route.quoted.destination.outputCurrency`. */
  quoted?: RelayCurrencyAmount;
  failReason?: string;
  createdAt?: string;
  updatedAt?: string;
}

// ---------------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------------

export class RelayError extends Error {
  override name = 'RelayError';
}

/** The whole call (connect, headers and body) took longer than `timeoutMs`. Pending, not failed. */
export class RelayTimeoutError extends RelayError {
  override name = 'RelayTimeoutError';
  readonly retryable = true;
  constructor(
    readonly endpoint: string,
    readonly timeoutMs: number,
  ) {
    super(`Relay ${endpoint} did not answer within ${timeoutMs} ms`);
  }
}

/** Relay could not be reached (connection refused / reset, DNS, TLS…). Pending, not failed. */
export class RelayUnavailableError extends RelayError {
  override name = 'RelayUnavailableError';
  readonly retryable = true;
  constructor(
    readonly endpoint: string,
    options: { cause: unknown },
  ) {
    super(`Relay ${endpoint} is unreachable: ${errorMessage(options.cause)}`, options);
  }
}

/** Relay answered with a non-2xx status. `message` carries Relay's `{ message }` when it sent one. */
export class RelayApiError extends RelayError {
  override name = 'RelayApiError';
  /** 429 and 5xx: try again later. */
  readonly retryable: boolean;
  constructor(
    readonly endpoint: string,
    readonly status: number,
    readonly relayMessage: string | undefined,
  ) {
    super(`Relay ${endpoint} answered HTTP ${status}${relayMessage ? `: ${relayMessage}` : ''}`);
    this.retryable = status === 429 || status >= 500;
  }
}

/** Relay answered 2xx with something that is not the documented shape (or not JSON, or too large). */
export class RelayResponseError extends RelayError {
  override name = 'RelayResponseError';
  readonly retryable = false;
  constructor(
    readonly endpoint: string,
    detail: string,
  ) {
    super(`Relay ${endpoint} returned an unexpected response: ${detail}`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------------------------

export interface RelayClientOptions {
  /** e.g. `https://api.relay.link` (a path prefix is kept). */
  baseUrl: string;
  /** Sent as `x-api-key` on every call (`GET /requests/v3` requires it). */
  apiKey: string;
  /** Deadline for one whole call: connect, headers and body. */
  timeoutMs: number;
  /** Largest 2xx body accepted, bytes (default 1 MiB). */
  maxResponseBytes?: number;
  /** undici dispatcher (connection pool) to use; the global one by default. */
  dispatcher?: Dispatcher;
}

export interface RelayClient {
  readonly baseUrl: string;
  /** `GET /intents/status/v3?requestId=`. */
  getStatus(requestId: string): Promise<RelayStatus>;
  /** `GET /requests/v3?id=`; `null` when Relay knows no request with that id (an empty `requests` list). */
  getRequest(requestId: string): Promise<RelayRequest | null>;
}

const TX_STATUSES = ['success', 'failure'] as const;
const REQUEST_ID_RE = /^0x[0-9a-fA-F]{64}$/;
const ATOMIC_AMOUNT_RE = /^(0|[1-9][0-9]*)$/;
const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;
const ERROR_BODY_BYTES_MAX = 4096;

/** A Relay request id: `0x` and 32 bytes of hex. */
export function isRelayRequestId(value: string): boolean {
  return REQUEST_ID_RE.test(value);
}

export function createRelayClient(options: RelayClientOptions): RelayClient {
  let base: URL;
  try {
    base = new URL(options.baseUrl);
  } catch {
    throw new TypeError(`relay baseUrl is not a URL: ${options.baseUrl}`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new TypeError(`relay baseUrl must be http(s), got ${base.protocol}`);
  }
  if (!Number.isFinite(options.timeoutMs) || options.timeoutMs <= 0) {
    throw new TypeError(`relay timeoutMs must be a positive number, got ${options.timeoutMs}`);
  }
  const baseUrl = base.href.replace(/\/+$/, '');
  const maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  if (typeof options.apiKey !== 'string' || options.apiKey.trim() === '') {
    throw new TypeError('relay apiKey is required (GET /requests/v3 refuses calls without x-api-key)');
  }
  const headers: Record<string, string> = { accept: 'application/json', 'x-api-key': options.apiKey };

  async function getJson(endpoint: string, query: Record<string, string>): Promise<unknown> {
    const url = new URL(baseUrl + endpoint);
    for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new RelayTimeoutError(endpoint, options.timeoutMs));
    }, options.timeoutMs);
    try {
      const response = await request(url, {
        method: 'GET',
        headers,
        signal: controller.signal,
        ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
      });
      if (response.statusCode < 200 || response.statusCode > 299) {
        const text = await readCapped(response.body, ERROR_BODY_BYTES_MAX, true);
        throw new RelayApiError(endpoint, response.statusCode, relayMessageOf(text));
      }
      const text = await readCapped(response.body, maxResponseBytes, false);
      if (text === undefined) throw new RelayResponseError(endpoint, `body larger than ${maxResponseBytes} bytes`);
      try {
        return JSON.parse(text) as unknown;
      } catch {
        throw new RelayResponseError(endpoint, 'body is not JSON');
      }
    } catch (err) {
      if (timedOut) throw new RelayTimeoutError(endpoint, options.timeoutMs);
      if (err instanceof RelayError) throw err;
      throw new RelayUnavailableError(endpoint, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  function checkId(requestId: string): void {
    if (typeof requestId !== 'string' || !REQUEST_ID_RE.test(requestId)) {
      throw new TypeError('relay request id must be 0x followed by 64 hex digits');
    }
  }

  return {
    baseUrl,
    async getStatus(requestId) {
      checkId(requestId);
      const endpoint = '/intents/status/v3';
      const body = await getJson(endpoint, { requestId });
      return parseStatus(endpoint, requestId, body);
    },
    async getRequest(requestId) {
      checkId(requestId);
      const endpoint = '/requests/v3';
      const body = await getJson(endpoint, { id: requestId });
      return parseRequests(endpoint, requestId, body);
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------------------------

type Obj = Record<string, unknown>;

function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

class Shape {
  constructor(readonly endpoint: string) {}
  fail(path: string, what: string): never {
    throw new RelayResponseError(this.endpoint, `${path} ${what}`);
  }
  obj(value: unknown, path: string): Obj {
    if (!isObj(value)) this.fail(path, 'is not an object');
    return value;
  }
  optObj(value: unknown, path: string): Obj | undefined {
    return value === undefined || value === null ? undefined : this.obj(value, path);
  }
  str(value: unknown, path: string): string {
    if (typeof value !== 'string') this.fail(path, 'is not a string');
    return value;
  }
  optStr(value: unknown, path: string): string | undefined {
    return value === undefined || value === null ? undefined : this.str(value, path);
  }
  int(value: unknown, path: string): number {
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) this.fail(path, 'is not an integer');
    return value;
  }
  optInt(value: unknown, path: string): number | undefined {
    return value === undefined || value === null ? undefined : this.int(value, path);
  }
  optNum(value: unknown, path: string): number | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'number' || !Number.isFinite(value)) this.fail(path, 'is not a number');
    return value;
  }
  strArray(value: unknown, path: string): string[] {
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) this.fail(path, 'is not an array');
    return value.map((item, i) => this.str(item, `${path}[${i}]`));
  }
  oneOf<T extends string>(value: unknown, allowed: readonly T[], path: string): T {
    const s = this.str(value, path);
    if (!(allowed as readonly string[]).includes(s)) this.fail(path, `is not a known status (${JSON.stringify(s)})`);
    return s as T;
  }
}

function parseStatus(endpoint: string, requestId: string, body: unknown): RelayStatus {
  const s: Shape = new Shape(endpoint);
  const o = s.obj(body, 'body');
  const result: RelayStatus = {
    requestId,
    status: s.oneOf(o.status, RELAY_INTENT_STATUSES, 'status'),
    inTxHashes: s.strArray(o.inTxHashes, 'inTxHashes'),
    txHashes: s.strArray(o.txHashes, 'txHashes'),
  };
  const details = s.optStr(o.details, 'details');
  if (details !== undefined) result.details = details;
  const updatedAt = s.optNum(o.updatedAt, 'updatedAt');
  if (updatedAt !== undefined) result.updatedAt = updatedAt;
  const originChainId = s.optInt(o.originChainId, 'originChainId');
  if (originChainId !== undefined) result.originChainId = originChainId;
  const destinationChainId = s.optInt(o.destinationChainId, 'destinationChainId');
  if (destinationChainId !== undefined) result.destinationChainId = destinationChainId;
  return result;
}

function parseRequests(endpoint: string, requestId: string, body: unknown): RelayRequest | null {
  const s: Shape = new Shape(endpoint);
  const o = s.obj(body, 'body');
  const list: unknown = o.requests;
  if (!Array.isArray(list)) s.fail('requests', 'is not an array');
  const wanted = requestId.toLowerCase();
  const index = list.findIndex((r: unknown) => isObj(r) && typeof r.id === 'string' && r.id.toLowerCase() === wanted);
  if (index < 0) return null;
  return parseRequest(s, list[index], `requests[${index}]`);
}

function parseRequest(s: Shape, value: unknown, path: string): RelayRequest {
  const r = s.obj(value, path);
  const data = s.optObj(r.data, `${path}.data`) ?? {};
  const route = s.optObj(data.route, `${path}.data.route`) ?? {};
  const result: RelayRequest = {
    id: s.str(r.id, `${path}.id`),
    status: s.oneOf(r.status, RELAY_REQUEST_STATUSES, `${path}.status`),
    inTxs: parseTxs(s, data.inTxs, `${path}.data.inTxs`),
    outTxs: parseTxs(s, data.outTxs, `${path}.data.outTxs`),
  };
  const optional = {
    user: s.optStr(r.user, `${path}.user`),
    recipient: s.optStr(r.recipient, `${path}.recipient`),
    sender: s.optStr(r.sender, `${path}.sender`),
    delivered: routeOutput(s, route.actual, `${path}.data.route.actual`),
    quoted: routeOutput(s, route.quoted, `${path}.data.route.quoted`),
    failReason: s.optStr(data.failReason, `${path}.data.failReason`),
    createdAt: s.optStr(r.createdAt, `${path}.createdAt`),
    updatedAt: s.optStr(r.updatedAt, `${path}.updatedAt`),
  };
  for (const [key, v] of Object.entries(optional)) {
    if (v !== undefined) (result as unknown as Obj)[key] = v;
  }
  return result;
}

/** `route.<quoted|actual>.destination.outputCurrency`, when there. */
function routeOutput(s: Shape, value: unknown, path: string): RelayCurrencyAmount | undefined {
  const route = s.optObj(value, path);
  const destination = s.optObj(route?.destination, `${path}.destination`);
  const output = destination?.outputCurrency;
  if (output === undefined || output === null) return undefined;
  return parseCurrencyAmount(s, output, `${path}.destination.outputCurrency`);
}

function parseCurrencyAmount(s: Shape, value: unknown, path: string): RelayCurrencyAmount {
  const o = s.obj(value, path);
  const c = s.obj(o.currency, `${path}.currency`);
  const decimals = s.int(c.decimals, `${path}.currency.decimals`);
  if (decimals < 0 || decimals > 255) s.fail(`${path}.currency.decimals`, 'is out of range');
  const currency: RelayCurrency = {
    chainId: s.int(c.chainId, `${path}.currency.chainId`),
    address: s.str(c.address, `${path}.currency.address`),
    symbol: s.str(c.symbol, `${path}.currency.symbol`),
    decimals,
  };
  const name = s.optStr(c.name, `${path}.currency.name`);
  if (name !== undefined) currency.name = name;
  const amount = s.str(o.amount, `${path}.amount`);
  if (!ATOMIC_AMOUNT_RE.test(amount)) s.fail(`${path}.amount`, 'is not an atomic amount');
  const result: RelayCurrencyAmount = { currency, amount };
  for (const key of ['amountFormatted', 'amountUsd', 'amountUsdCurrent', 'minimumAmount'] as const) {
    const v = s.optStr(o[key], `${path}.${key}`);
    if (v !== undefined) result[key] = v;
  }
  return result;
}

function parseTxs(s: Shape, value: unknown, path: string): RelayTransaction[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) s.fail(path, 'is not an array');
  return value.map((item, i) => {
    const p = `${path}[${i}]`;
    const t = s.obj(item, p);
    const tx: RelayTransaction = { txHash: s.str(t.txHash, `${p}.txHash`), chainId: s.int(t.chainId, `${p}.chainId`) };
    const timestamp = s.optNum(t.timestamp, `${p}.timestamp`);
    if (timestamp !== undefined) tx.timestamp = timestamp;
    const block = s.optInt(t.block, `${p}.block`);
    if (block !== undefined) tx.block = block;
    const type = s.optStr(t.type, `${p}.type`);
    if (type !== undefined) tx.type = type;
    const fee = s.optStr(t.fee, `${p}.fee`);
    if (fee !== undefined) tx.fee = fee;
    if (t.status !== undefined && t.status !== null) tx.status = s.oneOf(t.status, TX_STATUSES, `${p}.status`);
    if (t.data !== undefined) tx.data = t.data;
    return tx;
  });
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------------------------------

/**
 * Reads a body up to `maxBytes`. Past that: `truncate` returns what was read so far (for error messages), otherwise
 * `undefined`; either way the rest is discarded.
 */
async function readCapped(
  body: AsyncIterable<Buffer> & { destroy(): unknown },
  maxBytes: number,
  truncate: boolean,
): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    if (size + chunk.length > maxBytes) {
      if (truncate) chunks.push(chunk.subarray(0, maxBytes - size));
      body.destroy();
      return truncate ? Buffer.concat(chunks).toString('utf8') : undefined;
    }
    chunks.push(chunk);
    size += chunk.length;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Relay's error bodies are `{ message }`. */
function relayMessageOf(text: string | undefined): string | undefined {
  if (!text) return undefined;
  try {
    const parsed = JSON.parse(text) as unknown;
    if (isObj(parsed) && typeof parsed.message === 'string') return parsed.message.slice(0, 500);
  } catch {
    // not JSON
  }
  return text.slice(0, 200);
}

function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as Error & { code?: unknown }).code;
    return typeof code === 'string' ? `${code} ${err.message}` : err.message;
  }
  return String(err);
}
