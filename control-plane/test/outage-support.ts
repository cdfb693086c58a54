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

/**
 * Calls from `workers` clients, each waiting `pauseMs` between calls, until stopped: a bounded load that keeps going
 * through a fault, recording what each client saw.
 */
export const startLoad = (
  call: () => Promise<{ status: number; headers: Record<string, Header>; json?: any }>,
  { workers = 2, pauseMs = 25 } = {},
): Load => {
  const answers: Answer[] = [];
  let stopped = false;
  const text = (header: Header) => (typeof header === 'string' ? header : undefined);
  const worker = async (): Promise<void> => {
    while (!stopped) {
      try {
        const res = await call();
        answers.push({
          status: res.status,
          requestId: text(res.headers['x-crochet-request-id']),
          code: res.json?.error?.code,
          retryAfter: text(res.headers['retry-after']),
        });
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
