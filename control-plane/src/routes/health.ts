import type { QueryConfig } from 'pg';
import type { App, Deps } from '../app.js';

const CHECK_TIMEOUT_MS = 1_000;

const check = async (probe: () => Promise<unknown>): Promise<'ok' | 'unavailable'> => {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      probe(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('timeout')), CHECK_TIMEOUT_MS);
      }),
    ]);
    return 'ok';
  } catch {
    return 'unavailable';
  } finally {
    clearTimeout(timer);
  }
};

/** Liveness (the process answers) and readiness (PostgreSQL and Redis answer). */
export const healthRoutes = (app: App, { pool, redis }: Deps): void => {
  app.get('/healthz', { config: { documented: false } }, async () => ({ data: { status: 'ok' } }));
  app.get('/readyz', { config: { documented: false } }, async (_request, reply) => {
    // The probe's own query_timeout, not only the race above: on a database that answers nothing, a probe holding a
    // pooled connection for the pool's full timeout would take connections from the routes at every poll.
    const probe = { text: 'SELECT 1', query_timeout: CHECK_TIMEOUT_MS } as QueryConfig;
    const [postgres, redisState] = await Promise.all([check(() => pool.query(probe)), check(() => redis.ping())]);
    const ready = postgres === 'ok' && redisState === 'ok';
    return reply
      .code(ready ? 200 : 503)
      .send({ data: { status: ready ? 'ready' : 'unavailable', checks: { postgres, redis: redisState } } });
  });
};
