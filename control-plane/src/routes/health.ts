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
    const [postgres, redisState] = await Promise.all([check(() => pool.query('SELECT 1')), check(() => redis.ping())]);
    const ready = postgres === 'ok' && redisState === 'ok';
    return reply
      .code(ready ? 200 : 503)
      .send({ data: { status: ready ? 'ready' : 'unavailable', checks: { postgres, redis: redisState } } });
  });
};
