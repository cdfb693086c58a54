import pg from 'pg';
import { expect } from 'vitest';

/** What one client saw of one call: its status (0: no answer), request id, error code and Retry-After. */
export interface Answer {
  status: number;
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
      try {
        answers.push(answerOf(await call()));
      } catch (error) {
        answers.push({ status: 0, requestId: undefined, error: (error as Error).message });
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
