/**
 * A local stand-in for Relay's API (we cannot reach api.relay.link from tests or `npm start`). It speaks only the
 * current API, with the documented response shapes, for the two endpoints the gateway reads:
 *
 * - `GET /intents/status/v3?requestId=` — https://docs.relay.link/references/api/get-intents-status-v3
 * - `GET /requests/v3?id=` — https://docs.relay.link/references/api/get-requests
 *
 * and the API key (https://docs.relay.link/references/api/api-keys), always configured here as it is for the gateway:
 *
 * - `GET /requests/v3` requires `x-api-key` ("x-api-key is now required", Relay's v3 migration guide). Without it the
 *   answer is what the real API sends: 400 `{ message: "headers must have required property 'x-api-key'" }`
 *   (its request-schema validation); with a key it does not know, 401 `{ message }`.
 * - the status endpoint serves callers without a key (at Relay's lower rate limits); a key that is sent must be
 *   valid (401 otherwise).
 * - `GET /requests/v2` was deprecated on 2026-07-22 and retired on 2026-11-24
 *   (https://docs.relay.link/references/api/api_guides/migrating-to-requests-v3). The guide gives the dates but not
 *   the status code after them; the stand-in answers 410 Gone (RFC 9110 §15.5.11: removed on purpose, for good) with
 *   the deprecation signals Relay documents for v2 (`Deprecation`, `Sunset`, `Link` rel="successor-version"), so a
 *   client still calling v2 fails here as it does against Relay.
 *
 * Behaviour where the docs say nothing (they only document the 200 responses):
 * - unknown `requestId` on the status endpoint: 200 `{ status: "waiting" }` — what Relay answers for a request it
 *   has not seen a deposit for; it cannot tell "not indexed yet" from "never existed", and the gateway must not read
 *   "waiting" as proof of anything.
 * - unknown `id` on the requests endpoint: 200 `{ requests: [] }` (it is a filtered list).
 * - missing `requestId` on the status endpoint: 400 `{ message }`.
 * - while a request is `waiting` / `depositing` / `pending` the destination fill does not exist yet, so its
 *   `outTxHashes` are withheld (`txHashes: []`, `outTxs: []`, no `route.actual`) until the status moves on.
 *
 * With a `solver` (an EVM dev chain: `startDevPaymentNetwork` gives it anvil) it also executes payments as Relay
 * does, through the documented quote flow (https://docs.relay.link/references/api/get-quote-v2 and
 * https://docs.relay.link/references/api/api_core_concepts/step-execution):
 *
 * - `POST /quote/v2` `{ user, originChainId, destinationChainId, originCurrency, destinationCurrency, amount,
 *   tradeType, recipient }` answers `{ steps: [{ id: "deposit", kind: "transaction", requestId, items: [{ status:
 *   "incomplete", data: { from, to, data, value, chainId }, check: { endpoint: "/intents/status/v3?requestId=…",
 *   method: "GET" } }] }], fees, details }` and registers the request as `waiting`. Only same-chain, same-token
 *   routes of the solver's chain are quoted (the dev network has one EVM chain); the deposit is a USDC `transfer` to
 *   the solver's address with the request id appended to its calldata, as Relay tags deposits.
 * - Relay indexes the deposit itself: each status or requests query about a waiting quoted request looks for a USDC
 *   transfer from the user to the solver whose calldata ends with the request id; once found the request is
 *   `pending` and the solver fills it — sends the quoted amount to the recipient — and it becomes `success` with the
 *   deposit in `inTxHashes` and the fill in `txHashes`. `holdFills(true)` keeps found deposits `pending` (a slow
 *   solver) until `holdFills(false)`.
 *
 * Tests register requests with `createRequest` (putting a real anvil / litesvm transaction in `outTxHashes`) and
 * move them with `setStatus`; `delayMs` (per request, or for the whole server) makes answers slow, and `failWith`
 * makes the server answer an HTTP error (Relay down or erroring).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import Fastify from 'fastify';
import { type Address, encodeFunctionData, type Hex, parseAbi, parseAbiItem } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import type {
  RelayCurrency,
  RelayCurrencyAmount,
  RelayIntentStatus,
  RelayIntentStatusV3Body,
  RelayRequestsV3Body,
  RelayRequestV3,
} from '../../../plugins/src/payments/relay-client.js';
import { devPublicClient, transferUsdc } from '../evm/usdc.js';

export type { RelayCurrency, RelayIntentStatus } from '../../../plugins/src/payments/relay-client.js';

export interface RelayStandInOptions {
  /** 0 (default): any free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** The integrator API key `GET /requests/v3` requires (`x-api-key`). Default: a random one (see `apiKey`). */
  apiKey?: string;
  /** Delay before every answer, ms (a request's own `delayMs` wins). Default 0. */
  delayMs?: number;
  /**
   * The chain this Relay quotes and fills on, and the solver account (funded with gas) that receives deposits and
   * sends fills. Without it `POST /quote/v2` answers 400 (no route).
   */
  solver?: { rpcUrl: string; chainId: number; usdc: Address; privateKey: Hex };
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
  /** The API key this Relay issued to the gateway (`CROCHET_RELAY_API_KEY`). */
  apiKey: string;
  /** Registers a request; returns its stored record (with the id). */
  createRequest(input: CreateRelayRequestInput): RelayStandInRequest;
  setStatus(id: string, status: RelayIntentStatus): void;
  /** Changes any of a request's mutable fields (bumps `updatedAt`). */
  update(id: string, patch: RelayStandInUpdate): void;
  getRequest(id: string): RelayStandInRequest | undefined;
  /** Server-wide delay, ms. */
  setDelay(delayMs: number): void;
  /** true: deposits found stay `pending`, unfilled; false: the next query fills them. */
  holdFills(hold: boolean): void;
  /** The solver's address (where quoted deposits go), when there is a solver. */
  readonly solverAddress: Address | undefined;
  /**
   * From now on every call answers this HTTP status with `{ message }` (Relay erroring), or `malformed`: 200 with a
   * body that is not the documented shape (Relay answering something unexpected); null: normal again.
   */
  failWith(failure: number | 'malformed' | null): void;
  /**
   * How many calls each endpoint has answered (including errors), for tests: the status and v3 requests endpoints,
   * and `retired` calls to `GET /requests/v2`.
   */
  readonly hits: { status: number; requests: number; retired: number; quotes: number };
  stop(): Promise<void>;
}

const HASH_WITHHELD_WHILE: readonly RelayIntentStatus[] = ['waiting', 'depositing', 'pending'];

/** The sunset of `GET /requests/v2`, and how Relay signals it (RFC 8594 `Sunset`, RFC 9745 `Deprecation`). */
const V2_RETIRED_HEADERS = {
  deprecation: '@1784678400',
  sunset: 'Tue, 24 Nov 2026 00:00:00 GMT',
  link:
    '<https://docs.relay.link/references/api/api_guides/migrating-to-requests-v3>; rel="deprecation", ' +
    '<https://docs.relay.link/references/api/api_guides/migrating-to-requests-v3>; rel="sunset", ' +
    '</requests/v3>; rel="successor-version"',
};

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
  const apiKey = options.apiKey ?? `relay-dev-${randomBytes(12).toString('hex')}`;
  let serverDelayMs = options.delayMs ?? 0;
  let failure: number | 'malformed' | null = null;
  const requests = new Map<string, RelayStandInRequest>();
  const hits = { status: 0, requests: 0, retired: 0, quotes: 0 };
  const solver = options.solver;
  const solverAddress = solver ? privateKeyToAccount(solver.privateKey).address : undefined;
  let holding = false;
  /** Quoted requests not yet filled: where their deposit must come from, and since which block. */
  const quoted = new Map<string, { fromBlock: bigint; depositData: Hex }>();
  /** One indexing pass per request at a time (a fill is sent once). */
  const indexing = new Map<string, Promise<void>>();
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

  const amountOf = (currency: RelayCurrency, amount: string): RelayCurrencyAmount => ({
    currency: { ...currency },
    amount,
    amountFormatted: formatUnits(amount, currency.decimals),
  });

  function requestBody(r: RelayStandInRequest): RelayRequestV3 {
    const inTimestamp = Math.floor(r.createdAt.getTime() / 1000);
    const outTimestamp = Math.floor(r.updatedAt.getTime() / 1000);
    const filled = !HASH_WITHHELD_WHILE.includes(r.status);
    const outTxHashes = filled ? r.outTxHashes : [];
    const quoted = {
      origin: { inputCurrency: amountOf(r.currencyIn, r.amountIn) },
      destination: { outputCurrency: amountOf(r.currencyOut, r.amountOut) },
    };
    return {
      id: r.id,
      status: r.status,
      user: r.user,
      recipient: r.recipient,
      sender: r.user,
      data: {
        inTxs: r.inTxHashes.map((txHash) => ({
          txHash,
          fee: '0',
          type: 'onchain',
          chainId: r.originChainId,
          timestamp: inTimestamp,
          status: 'success' as const,
        })),
        outTxs: outTxHashes.map((txHash) => ({
          txHash,
          fee: '0',
          type: 'onchain',
          chainId: r.destinationChainId,
          timestamp: outTimestamp,
          status: 'success' as const,
        })),
        // What the recipient actually got exists once the fill does; a refund sends the input back instead.
        route: r.status === 'success' ? { quoted, actual: quoted } : { quoted },
        ...(r.status === 'refund' ? { refundCurrencyData: amountOf(r.currencyIn, r.amountIn) } : {}),
        ...(r.status === 'failure' || r.status === 'refund' ? { failReason: 'UNKNOWN' } : {}),
      },
      requestType: 'Bridge',
      createdAt: r.createdAt.toISOString(),
      updatedAt: r.updatedAt.toISOString(),
    };
  }

  // forceCloseConnections: stop() must not wait for clients' keep-alive sockets (an aborted slow call can leave
  // one that the server does not count as idle until its keep-alive timeout).
  const app = Fastify({ logger: false, forceCloseConnections: true });

  app.addHook('onRequest', async (req, reply) => {
    const path = req.url.split('?')[0];
    if (path === '/intents/status/v3') hits.status += 1;
    else if (path === '/requests/v3') hits.requests += 1;
    else if (path === '/requests/v2') hits.retired += 1;
    else if (path === '/quote/v2') hits.quotes += 1;
    if (failure === 'malformed') return reply.code(200).send({ requests: 'soon', status: 42 });
    if (failure !== null) return reply.code(failure).send({ message: `Relay stand-in failing with ${failure}` });
    const given = req.headers['x-api-key'];
    if (path === '/requests/v3' && given === undefined) {
      return reply.code(400).send({ message: "headers must have required property 'x-api-key'" });
    }
    if (given !== undefined && (typeof given !== 'string' || !sameSecret(given, apiKey))) {
      return reply.code(401).send({ message: 'Invalid API key' });
    }
  });

  app.post<{ Body: Record<string, unknown> }>('/quote/v2', async (req, reply) => {
    const b = req.body ?? {};
    const str = (key: string) => (typeof b[key] === 'string' ? (b[key] as string) : undefined);
    const user = str('user');
    const recipient = str('recipient') ?? user;
    const amount = str('amount');
    const tradeType = str('tradeType');
    if (!user || !/^0x[0-9a-fA-F]{40}$/.test(user) || !recipient || !/^0x[0-9a-fA-F]{40}$/.test(recipient)) {
      return reply.code(400).send({ message: 'user and recipient must be EVM addresses', errorCode: 'INVALID_INPUT' });
    }
    if (!amount || !/^[1-9][0-9]*$/.test(amount)) {
      return reply.code(400).send({ message: 'amount must be a positive integer string', errorCode: 'INVALID_INPUT' });
    }
    if (tradeType !== 'EXACT_INPUT' && tradeType !== 'EXACT_OUTPUT' && tradeType !== 'EXPECTED_OUTPUT') {
      return reply.code(400).send({ message: 'tradeType is invalid', errorCode: 'INVALID_INPUT' });
    }
    const sameToken = (key: string) => str(key)?.toLowerCase() === solver?.usdc.toLowerCase();
    if (
      !solver ||
      b.originChainId !== solver.chainId ||
      b.destinationChainId !== solver.chainId ||
      !sameToken('originCurrency') ||
      !sameToken('destinationCurrency')
    ) {
      return reply.code(400).send({ message: 'No routes found', errorCode: 'NO_SWAP_ROUTES_FOUND' });
    }
    const usdc: RelayCurrency = { chainId: solver.chainId, address: solver.usdc, symbol: 'USDC', decimals: 6 };
    const id = `0x${randomBytes(32).toString('hex')}`;
    const transfer = encodeFunctionData({
      abi: ERC20,
      functionName: 'transfer',
      args: [solverAddress!, BigInt(amount)],
    });
    const depositData = `${transfer}${id.slice(2)}` as Hex;
    const fromBlock = await devPublicClient(solver).getBlockNumber();
    api.createRequest({
      id,
      status: 'waiting',
      user,
      recipient,
      originChainId: solver.chainId,
      destinationChainId: solver.chainId,
      currencyOut: usdc,
      amountOut: amount,
    });
    quoted.set(id, { fromBlock, depositData });
    const amountOf_ = amountOf(usdc, amount);
    return {
      steps: [
        {
          id: 'deposit',
          action: 'Confirm transaction in your wallet',
          description: 'Depositing funds to the relayer to execute the swap for USDC',
          kind: 'transaction',
          requestId: id,
          depositAddress: '',
          items: [
            {
              status: 'incomplete',
              data: { from: user, to: solver.usdc, data: depositData, value: '0', chainId: solver.chainId },
              check: { endpoint: `/intents/status/v3?requestId=${id}`, method: 'GET' },
            },
          ],
        },
      ],
      fees: { gas: amountOf(usdc, '0'), relayer: amountOf(usdc, '0'), app: amountOf(usdc, '0') },
      details: {
        operation: 'bridge',
        sender: user,
        recipient,
        currencyIn: amountOf_,
        currencyOut: amountOf_,
        timeEstimate: 1,
      },
    };
  });

  /** Relay's indexer: finds the deposit of a waiting quoted request and fills it (see the file comment). */
  async function index(id: string): Promise<void> {
    const key = id.toLowerCase();
    const q = quoted.get(key);
    const r = find(key);
    if (!solver || !q || !r) return;
    const running = indexing.get(key);
    if (running) return running;
    const pass = (async () => {
      const chain = devPublicClient(solver);
      if (r.status === 'waiting') {
        const logs = await chain.getLogs({
          address: solver.usdc,
          event: TRANSFER_EVENT,
          args: { from: r.user as Address, to: solverAddress },
          fromBlock: q.fromBlock,
        });
        for (const log of logs) {
          const tx = await chain.getTransaction({ hash: log.transactionHash! });
          // The quoted deposit itself: its amount and the request id it is tagged with.
          if (tx.input.toLowerCase() !== q.depositData.toLowerCase()) continue;
          update(key, { status: 'pending', inTxHashes: [log.transactionHash!] });
          break;
        }
      }
      if (r.status === 'pending' && !holding) {
        const fill = await transferUsdc(solver, solver.privateKey, r.recipient as Address, BigInt(r.amountOut));
        update(key, { status: 'success', outTxHashes: [fill] });
        quoted.delete(key);
      }
    })();
    indexing.set(key, pass);
    try {
      await pass;
    } finally {
      indexing.delete(key);
    }
  }

  app.get<{ Querystring: { requestId?: string } }>('/intents/status/v3', async (req, reply) => {
    const requestId = req.query.requestId;
    if (!requestId) return reply.code(400).send({ message: 'requestId is required' });
    await index(requestId);
    const r = find(requestId);
    await sleep(r?.delayMs ?? serverDelayMs);
    if (!r) return { status: 'waiting' } satisfies RelayIntentStatusV3Body;
    return statusBody(r);
  });

  app.get<{ Querystring: { id?: string; user?: string; recipient?: string; limit?: string } }>(
    '/requests/v3',
    async (req) => {
      const { id, user, recipient } = req.query;
      const limit = Math.min(Math.max(Number.parseInt(req.query.limit ?? '20', 10) || 20, 1), 50);
      let matches: RelayStandInRequest[];
      if (id !== undefined) {
        await index(id);
        const r = find(id);
        matches = r ? [r] : [];
      } else {
        const u = user?.toLowerCase();
        const to = recipient?.toLowerCase();
        matches = [...requests.values()]
          .filter((r) => u === undefined || r.user.toLowerCase() === u)
          .filter((r) => to === undefined || r.recipient.toLowerCase() === to)
          .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime())
          .slice(0, limit);
      }
      await sleep(matches.length === 1 ? (matches[0]!.delayMs ?? serverDelayMs) : serverDelayMs);
      return { requests: matches.map(requestBody) } satisfies RelayRequestsV3Body;
    },
  );

  app.get('/requests/v2', async (_req, reply) =>
    reply
      .code(410)
      .headers(V2_RETIRED_HEADERS)
      .send({ message: 'GET /requests/v2 was retired on 2026-11-24; use GET /requests/v3' }),
  );

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

  const api: RelayStandIn = {
    url,
    apiKey,
    hits,
    solverAddress,
    holdFills(hold) {
      holding = hold;
    },
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
    failWith(next) {
      failure = next;
    },
    async stop() {
      stopping.abort();
      await app.close();
    },
  };
  return api;
}

const ERC20 = parseAbi(['function transfer(address to, uint256 amount) returns (bool)']);
const TRANSFER_EVENT = parseAbiItem('event Transfer(address indexed from, address indexed to, uint256 value)');
