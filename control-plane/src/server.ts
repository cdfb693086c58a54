import { Redis } from 'ioredis';
import { type App, createApp, type Deps } from './app.js';
import type { ControlPlaneConfig } from './config.js';
import { CryptoBox } from './crypto-box.js';
import { createPool, migrate } from './db.js';
import { authRoutes } from './routes/auth.js';
import { docsRoutes } from './routes/docs.js';
import { healthRoutes } from './routes/health.js';
import { listingRoutes } from './routes/listings.js';
import { meRoutes } from './routes/me.js';

export interface ControlPlane {
  app: App;
  deps: Deps;
  /** The URL the control plane listens on. */
  url: string;
  close(): Promise<void>;
}

/** Route modules in the order they appear in the documents. */
const ROUTES = [authRoutes, meRoutes, listingRoutes, healthRoutes];

/** Builds the app over given dependencies (tests pass their own pool and Redis). */
export const buildControlPlane = (deps: Deps): App => {
  const { app, catalog } = createApp(deps);
  for (const routes of ROUTES) routes(app, deps);
  docsRoutes(app, deps, catalog);
  return app;
};

/** Connects to PostgreSQL and Redis, applies migrations, and listens. `close()` drains and disconnects. */
export const startControlPlane = async (
  config: ControlPlaneConfig,
  overrides: Partial<Pick<Deps, 'lookup'>> = {},
): Promise<ControlPlane> => {
  const pool = createPool(config.databaseUrl);
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 2, lazyConnect: true });
  redis.on('error', () => {}); // reconnects by itself; readiness reports the state
  try {
    await migrate(pool);
    await redis.connect();
  } catch (error) {
    await pool.end().catch(() => {});
    redis.disconnect();
    throw error;
  }
  const deps: Deps = {
    config,
    pool,
    redis,
    box: new CryptoBox(config.encryptionKey, config.encryptionKeysPrevious),
    ...overrides,
  };
  const app = buildControlPlane(deps);
  const url = await app.listen({ host: config.host, port: config.port });
  return {
    app,
    deps,
    url,
    close: async () => {
      await app.close();
      await pool.end();
      redis.disconnect();
    },
  };
};
