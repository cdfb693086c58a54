/**
 * A local stand-in for Relay's API (we cannot reach api.relay.link from tests or `npm start`). It serves the two
 * endpoints the gateway reads, with the documented response shapes:
 *
 * - `GET /intents/status/v3?requestId=` — https://docs.relay.link/references/api/get-intents-status-v3
 * - `GET /requests/v2?id=` — https://docs.relay.link/references/api/get-requests-v2
 *
 * and checks the `x-api-key` header (https://docs.relay.link/references/api/api-keys) when an API key is configured.
 *
 * Behaviour where the docs say nothing (they only document the 200 responses):
 * - unknown `requestId` on the status endpoint: 200 `{ status: "waiting" }` — what Relay answers for a request it
 *   has not seen a deposit for; it cannot tell "not indexed yet" from "never existed", and the gateway must not read
 *   "waiting" as proof of anything.
 * - unknown `id` on the requests endpoint: 200 `{ requests: [] }` (it is a filtered list).
 * - missing `requestId` on the status endpoint: 400 `{ message }`.
 * - wrong or missing API key (when one is configured): 401 `{ message }`.
 * - while a request is `waiting` / `depositing` / `pending` the destination fill does not exist yet, so its
 *   `outTxHashes` are withheld (`txHashes: []`, `outTxs: []`) until the status moves on.
 * - `/requests/v2` has no `submitted` / `delayed` in its documented status enum: those show there as `pending`.
 *
 * Tests register requests with `createRequest` (putting a real anvil / litesvm transaction in `outTxHashes`) and
 * move them with `setStatus`; `delayMs` (per request, or for the whole server) makes answers slow.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import Fastify from 'fastify';
import type {
  RelayCurrency,
  RelayIntentStatus,
  RelayIntentStatusV3Body,
  RelayRequestStatus,
  RelayRequestsV2Body,
  RelayRequestV2,
} from '../../../plugins/src/payments/relay-client.js';

export type { RelayCurrency, RelayIntentStatus } from '../../../plugins/src/payments/relay-client.js';

export interface RelayStandInOptions {
  /** 0 (default): any free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** When set, every call must carry `x-api-key: <apiKey>` (401 otherwise). */
  apiKey?: string;
  /** Delay before every answer, ms (a request's own `delayMs` wins). Default 0. */
  delayMs?: number;
}

export interface CreateRelayRequestInput {
  /** Default: `0x` + 32 random bytes, hex. */
  id?: string;
  /** Default `success`. */
  status?: RelayIntentStatus;
  /** The address that initiated the request. */
  user: string;
  /** The address that receives the destination output (for a Crochet payment: the marketplace's address). */
  recipient: string;
  originChainId: number;
  destinationChainId: number;
  /** What the fill delivers, e.g. `{ chainId, address: <USDC>, symbol: 'USDC', decimals: 6 }`. */
  currencyOut: RelayCurrency;
  /** Atomic units of `currencyOut` delivered. */
  amountOut: string;
  /** Default: `currencyOut` and `amountOut` (a same-token bridge). */
  currencyIn?: RelayCurrency;
  amountIn?: string;
  /** Origin-chain deposit transaction hashes. */
  inTxHashes?: string[];
  /** Destination-chain fill transaction hashes (put a real anvil / litesvm tx here). */
  outTxHashes?: string[];
  /** `details` of the status endpoint. */
  details?: string;
  /** Delay before answering about this request, ms. */
  delayMs?: number;
}

export interface RelayStandInRequest {
  id: string;
  status: RelayIntentStatus;
  user: string;
  recipient: string;
  originChainId: number;
  destinationChainId: number;
  currencyIn: RelayCurrency;
  amountIn: string;
  currencyOut: RelayCurrency;
  amountOut: string;
  inTxHashes: string[];
  outTxHashes: string[];
  details?: string;
  delayMs?: number;
  createdAt: Date;
  updatedAt: Date;
}

export type RelayStandInUpdate = Partial<
  Pick<RelayStandInRequest, 'status' | 'inTxHashes' | 'outTxHashes' | 'details' | 'delayMs' | 'amountOut' | 'recipient'>
>;

export interface RelayStandIn {
  /** Base URL, e.g. `http://127.0.0.1:54321` (no trailing slash): Relay's `https://api.relay.link`. */
  url: string;
  apiKey: string | undefined;
  /** Registers a request; returns its stored record (with the id). */
  createRequest(input: CreateRelayRequestInput): RelayStandInRequest;
  setStatus(id: string, status: RelayIntentStatus): void;
  /** Changes any of a request's mutable fields (bumps `updatedAt`). */
  update(id: string, patch: RelayStandInUpdate): void;
  getRequest(id: string): RelayStandInRequest | undefined;
  /** Server-wide delay, ms. */
  setDelay(delayMs: number): void;
  /** How many calls each endpoint has answered (including 401s), for tests. */
  readonly hits: { status: number; requests: number };
  stop(): Promise<void>;
}

const HASH_WITHHELD_WHILE: readonly RelayIntentStatus[] = ['waiting', 'depositing', 'pending'];

function toV2Status(status: RelayIntentStatus): RelayRequestStatus {
  return status === 'submitted' || status === 'delayed' ? 'pending' : status;
}

function formatUnits(amount: string, decimals: number): string {
  const value = BigInt(amount);
  if (decimals === 0) return value.toString();
  const base = 10n ** BigInt(decimals);
  const fraction = (value % base).toString().padStart(decimals, '0').replace(/0+$/, '');
  return fraction ? `${value / base}.${fraction}` : `${value / base}`;
}

function checkAmount(amount: string, what: string): void {
  if (!/^(0|[1-9][0-9]*)$/.test(amount)) throw new TypeError(`${what} must be an atomic integer string, got ${amount}`);
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export async function startRelayStandIn(options: RelayStandInOptions = {}): Promise<RelayStandIn> {
  const apiKey = options.apiKey;
  let serverDelayMs = options.delayMs ?? 0;
  const requests = new Map<string, RelayStandInRequest>();
  const hits = { status: 0, requests: 0 };
  // Pending delays end early on stop(), so stop() never waits for a slow answer.
  const stopping = new AbortController();

  const find = (id: string): RelayStandInRequest | undefined => requests.get(id.toLowerCase());

  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      if (ms <= 0 || stopping.signal.aborted) return resolve();
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        stopping.signal.removeEventListener('abort', done);
        resolve();
      }
      stopping.signal.addEventListener('abort', done);
    });

  function statusBody(r: RelayStandInRequest): RelayIntentStatusV3Body {
    const body: RelayIntentStatusV3Body = {
      status: r.status,
      inTxHashes: [...r.inTxHashes],
      txHashes: HASH_WITHHELD_WHILE.includes(r.status) ? [] : [...r.outTxHashes],
      updatedAt: r.updatedAt.getTime(),
      originChainId: r.originChainId,
      destinationChainId: r.destinationChainId,
    };
    if (r.details !== undefined) body.details = r.details;
    return body;
  }

  function requestBody(r: RelayStandInRequest): RelayRequestV2 {
    const inTimestamp = Math.floor(r.createdAt.getTime() / 1000);
    const outTimestamp = Math.floor(r.updatedAt.getTime() / 1000);
    const outTxHashes = HASH_WITHHELD_WHILE.includes(r.status) ? [] : r.outTxHashes;
    return {
      id: r.id,
      status: toV2Status(r.status),
      user: r.user,
      recipient: r.recipient,
      data: {
        fees: { gas: '0', fixed: '0', price: '0' },
        feesUsd: { gas: '0', fixed: '0', price: '0' },
        inTxs: r.inTxHashes.map((hash) => ({
          fee: '0',
          hash,
          type: 'onchain',
          chainId: r.originChainId,
          timestamp: inTimestamp,
        })),
        currency: r.currencyOut.symbol.toLowerCase(),
        metadata: {
          sender: r.user,
          recipient: r.recipient,
          currencyIn: {
            currency: { ...r.currencyIn },
            amount: r.amountIn,
            amountFormatted: formatUnits(r.amountIn, r.currencyIn.decimals),
          },
          currencyOut: {
            currency: { ...r.currencyOut },
            amount: r.amountOut,
            amountFormatted: formatUnits(r.amountOut, r.currencyOut.decimals),
          },
          rate: '1',
        },
        usesExternalLiquidity: false,
        outTxs: outTxHashes.map((hash) => ({
          fee: '0',
          hash,
          type: 'onchain',
          chainId: r.destinationChainId,
          timestamp: outTimestamp,
        })),
      },
      createdAt: r.createdAt.toISOString(),
      updatedAt: r.updatedAt.toISOString(),
    };
  }

  // forceCloseConnections: stop() must not wait for clients' keep-alive sockets (an aborted slow call can leave
  // one that the server does not count as idle until its keep-alive timeout).
  const app = Fastify({ logger: false, forceCloseConnections: true });

  app.addHook('onRequest', async (req, reply) => {
    if (req.url.startsWith('/intents/status/v3')) hits.status += 1;
    else if (req.url.startsWith('/requests/v2')) hits.requests += 1;
    if (apiKey === undefined) return;
    const given = req.headers['x-api-key'];
    if (typeof given !== 'string' || !sameSecret(given, apiKey)) {
      return reply.code(401).send({ message: 'Invalid API key' });
    }
  });

  app.get<{ Querystring: { requestId?: string } }>('/intents/status/v3', async (req, reply) => {
    const requestId = req.query.requestId;
    if (!requestId) return reply.code(400).send({ message: 'requestId is required' });
    const r = find(requestId);
    await sleep(r?.delayMs ?? serverDelayMs);
    if (!r) return { status: 'waiting' } satisfies RelayIntentStatusV3Body;
    return statusBody(r);
  });

  app.get<{ Querystring: { id?: string; user?: string; limit?: string } }>('/requests/v2', async (req) => {
    const { id, user } = req.query;
    const limit = Math.min(Math.max(Number.parseInt(req.query.limit ?? '20', 10) || 20, 1), 50);
    let matches: RelayStandInRequest[];
    if (id !== undefined) {
      const r = find(id);
      matches = r ? [r] : [];
    } else {
      const u = user?.toLowerCase();
      matches = [...requests.values()]
        .filter((r) => u === undefined || r.user.toLowerCase() === u || r.recipient.toLowerCase() === u)
        .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime())
        .slice(0, limit);
    }
    await sleep(matches.length === 1 ? (matches[0]!.delayMs ?? serverDelayMs) : serverDelayMs);
    return { requests: matches.map(requestBody) } satisfies RelayRequestsV2Body;
  });

  const address = await app.listen({ port: options.port ?? 0, host: options.host ?? '127.0.0.1' });
  const url = address.replace(/\/+$/, '');

  function update(id: string, patch: RelayStandInUpdate): void {
    const r = find(id);
    if (!r) throw new Error(`relay stand-in: no request ${id}`);
    if (patch.amountOut !== undefined) checkAmount(patch.amountOut, 'amountOut');
    for (const [key, value] of Object.entries(patch)) {
      if (value !== undefined)
        (r as unknown as Record<string, unknown>)[key] = Array.isArray(value) ? [...value] : value;
    }
    r.updatedAt = new Date(Math.max(Date.now(), r.updatedAt.getTime() + 1));
  }

  return {
    url,
    apiKey,
    hits,
    createRequest(input) {
      const id = input.id ?? `0x${randomBytes(32).toString('hex')}`;
      if (!/^0x[0-9a-fA-F]{64}$/.test(id)) throw new TypeError(`relay request id must be 0x + 64 hex digits: ${id}`);
      if (find(id)) throw new Error(`relay stand-in: request ${id} already exists`);
      checkAmount(input.amountOut, 'amountOut');
      const amountIn = input.amountIn ?? input.amountOut;
      checkAmount(amountIn, 'amountIn');
      const now = new Date();
      const record: RelayStandInRequest = {
        id,
        status: input.status ?? 'success',
        user: input.user,
        recipient: input.recipient,
        originChainId: input.originChainId,
        destinationChainId: input.destinationChainId,
        currencyIn: { ...(input.currencyIn ?? input.currencyOut) },
        amountIn,
        currencyOut: { ...input.currencyOut },
        amountOut: input.amountOut,
        inTxHashes: [...(input.inTxHashes ?? [])],
        outTxHashes: [...(input.outTxHashes ?? [])],
        createdAt: now,
        updatedAt: now,
      };
      if (input.details !== undefined) record.details = input.details;
      if (input.delayMs !== undefined) record.delayMs = input.delayMs;
      requests.set(id.toLowerCase(), record);
      return record;
    },
    setStatus(id, status) {
      update(id, { status });
    },
    update,
    getRequest: find,
    setDelay(delayMs) {
      serverDelayMs = delayMs;
    },
    async stop() {
      stopping.abort();
      await app.close();
    },
  };
}
