import pg from 'pg';
import { expect } from 'vitest';
import {
  eventually,
  gatewayCall,
  type RawResponse,
  rawRequest,
  startSeller,
  startTestStack,
  type TestSeller,
  type TestStack,
} from '../../proxy/test/stack.js';
import { type PostgresProcess, type RedisProcess, startPostgresProcess, startRedisProcess } from './fault-services.js';
import type { ApiClient } from './helpers.js';

/** A control plane and a proxy on PostgreSQL and Redis processes of their own, and a seller. */
export interface OutageStack {
  postgres: PostgresProcess;
  redis: RedisProcess;
  stack: TestStack;
  seller: TestSeller;
  /** Whatever state a failed test left PostgreSQL in, runs it again for the stack's cleanup, then ends everything. */
  stop(): Promise<void>;
}

export const startOutageStack = async (planeEnv: Record<string, string> = {}): Promise<OutageStack> => {
  const [postgres, redis, seller] = await Promise.all([startPostgresProcess(), startRedisProcess(), startSeller()]);
  const stack = await startTestStack({
    services: { databaseUrl: postgres.url, redisUrl: redis.url },
    planeEnv,
    // Load from one buyer key, well past the default per-key limit.
    proxyEnv: { CROCHET_KEY_RATE_LIMIT_PER_MINUTE: '1000000' },
  });
  return {
    postgres,
    redis,
    stack,
    seller,
    stop: async () => {
      postgres.resume();
      await postgres.start().catch(() => {}); // already running
      await seller.close();
      await stack.stop();
      await Promise.all([postgres.destroy(), redis.stop()]);
    },
  };
};

/** What one client saw of one call: its status (0: no answer), request id, error code, Retry-After, duration. */
export interface Answer {
  status: number;
  ms?: number;
  requestId: string | undefined;
  code?: string;
  retryAfter?: string;
  error?: string;
}

export interface Load {
  answers: Answer[];
  /** Stops after the calls in flight; resolves with everything every client saw. */
  stop(): Promise<Answer[]>;
}

type Header = string | string[] | undefined;
type Response = { status: number; headers: Record<string, Header>; json?: any };

const headerText = (header: Header) => (typeof header === 'string' ? header : undefined);

/** What a client saw of an answer. */
export const answerOf = (res: Response): Answer => ({
  status: res.status,
  requestId: headerText(res.headers['x-crochet-request-id']),
  code: res.json?.error?.code,
  retryAfter: headerText(res.headers['retry-after']),
});

/**
 * Calls from `workers` clients, each waiting `pauseMs` between calls, until stopped: a bounded load that keeps going
 * through a fault, recording what each client saw.
 */
export const startLoad = (call: () => Promise<Response>, { workers = 2, pauseMs = 25 } = {}): Load => {
  const answers: Answer[] = [];
  let stopped = false;
  const worker = async (): Promise<void> => {
    while (!stopped) {
      const started = Date.now();
      try {
        answers.push({ ...answerOf(await call()), ms: Date.now() - started });
      } catch (error) {
        answers.push({ status: 0, requestId: undefined, error: (error as Error).message, ms: Date.now() - started });
      }
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  };
  const running = Array.from({ length: workers }, worker);
  return {
    answers,
    stop: async () => {
      stopped = true;
      await Promise.all(running);
      return answers;
    },
  };
};

/**
 * Every call a client saw answered is in `gateway_requests`, once, completed with the status the client saw — waiting
 * up to `timeoutMs` for the events consumer to work through its backlog. Returns how many rows were checked.
 */
export const expectAllRecorded = async (
  databaseUrl: string,
  listingId: string,
  answers: Answer[],
  timeoutMs = 30_000,
): Promise<number> => {
  const answered = answers.filter((a) => a.status !== 0);
  const ids = answered.map((a) => a.requestId!);
  expect(ids.every((id) => /^gr_/.test(id))).toBe(true);
  expect(new Set(ids).size, 'a request id answered twice').toBe(ids.length);
  const expected = Object.fromEntries(answered.map((a) => [a.requestId!, { status: 'completed', http: a.status }]));
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { rows } = await client.query<{ id: string; status: string; http_status: number | null }>(
        'SELECT id, status, http_status FROM gateway_requests WHERE listing_id = $1',
        [listingId],
      );
      const recorded = Object.fromEntries(rows.map((r) => [r.id, { status: r.status, http: r.http_status }]));
      try {
        expect(recorded).toEqual(expected);
        return rows.length;
      } catch (error) {
        if (Date.now() > deadline) throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  } finally {
    await client.end();
  }
};

/**
 * Holds a lock that the events consumer's next insert into `gateway_requests` waits on, and resolves once one waits:
 * from then on the consumer has a client checked out of its pool, inside a transaction, with a query in flight —
 * the state that ended the process when PostgreSQL went away (issue 11). The gateway load must keep events coming.
 * The returned function lets go (also fine after PostgreSQL stopped).
 */
export const catchConsumerMidTransaction = async (databaseUrl: string): Promise<() => Promise<void>> => {
  const locker = new pg.Client({ connectionString: databaseUrl });
  locker.on('error', () => {}); // it is cut off too when PostgreSQL stops
  await locker.connect();
  await locker.query('BEGIN; LOCK TABLE gateway_requests IN SHARE MODE');
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { rows } = await locker.query(
      "SELECT count(*)::int AS n FROM pg_locks WHERE relation = 'gateway_requests'::regclass AND NOT granted",
    );
    if (rows[0].n > 0) break;
    if (Date.now() > deadline) throw new Error('the events consumer never waited on the lock: is the load running?');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return () => locker.end().catch(() => {});
};

/** A seller's free listing and a buyer, as the outage tests drive them. */
export interface FreeListing {
  listingId: string;
  /** One free gateway call through the proxy. */
  call(): Promise<RawResponse>;
  /** GET /api/v1/me as the buyer, at `baseUrl` (the proxy unless told): a route that needs PostgreSQL. */
  me(baseUrl?: string): Promise<RawResponse>;
  /** What clients saw so far: the first call that answered 200 (the proxy knew the listing by then). */
  answers: Answer[];
}

/** Registers a seller and a buyer through `api`, lists `sellerUrl`/echo for free, and waits until the proxy serves it. */
export const startFreeListing = async (api: ApiClient, proxyUrl: string, sellerUrl: string): Promise<FreeListing> => {
  const seller = await api.register('seller');
  const buyer = await api.register('buyer');
  const { listing } = await api.createListing(seller.apiKey, { private_endpoint_url: `${sellerUrl}/echo` });
  const call = () => gatewayCall({ url: proxyUrl }, listing.id, buyer.apiKey, { body: { n: 1 } });
  const answers: Answer[] = [];
  await eventually(async () => {
    const res = await call();
    expect(res.status).toBe(200);
    answers.push(answerOf(res));
  }, 10_000);
  return {
    listingId: listing.id,
    call,
    me: (baseUrl = proxyUrl) =>
      rawRequest(baseUrl, '/api/v1/me', { method: 'GET', headers: { authorization: `Bearer ${buyer.apiKey}` } }),
    answers,
  };
};
