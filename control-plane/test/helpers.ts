import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import { type ControlPlaneConfig, loadControlPlaneConfig } from '../src/config.js';
import { createPool, migrate, type Pool } from '../src/db.js';
import { solveChallenge } from '../src/pow.js';
import { type ControlPlane, startControlPlane } from '../src/server.js';

/** The server tests create their databases in (trust auth, as on the CI machine). */
export const TEST_DATABASE_URL = process.env['TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
/** The data-plane key test control planes and test proxies share. */
export const TEST_DATA_PLANE_KEY = randomBytes(32).toString('base64');
export const TEST_REDIS_URL = process.env['TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';

/**
 * The servers a test's stack keeps its state on: the shared ones, unless a fault test brings processes of its own
 * (`fault-services.ts`). `databaseUrl` names the server the fresh test database is created on.
 */
export interface TestServices {
  databaseUrl?: string;
  redisUrl?: string;
}

/** A Redis key prefix of its own, so that test files running at once never share keys. */
export const testRedisPrefix = (): string => `t:${randomBytes(6).toString('hex')}:`;

/** Deletes every key under a test prefix (SCAN, never KEYS: other test files share the server). */
export const deleteRedisPrefix = async (prefix: string, redisUrl = TEST_REDIS_URL): Promise<void> => {
  const redis = new Redis(redisUrl);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      if (keys.length > 0) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
};

/** A fresh database for one test file, dropped by the returned function. */
export const createTestDatabase = async (
  serverUrl = TEST_DATABASE_URL,
): Promise<{ url: string; drop: () => Promise<void> }> => {
  const name = `crochet_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const client = new pg.Client({ connectionString: serverUrl });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
};

/** The API as a test client uses it: plain HTTP against a control plane (or a proxy in front of one). */
/**
 * What an events-consumer test file works against: a migrated database of its own with a pool on it, a Redis
 * connection and a key prefix of its own. Opened in `beforeAll`; `closeConsumerServices` in `afterAll` removes it all
 * (whatever part was opened).
 */
export interface ConsumerServices {
  db: Awaited<ReturnType<typeof createTestDatabase>>;
  pool: Pool;
  redis: Redis;
  prefix: string;
}

export const openConsumerServices = async (poolSize?: number): Promise<ConsumerServices> => {
  const db = await createTestDatabase();
  const pool = createPool(db.url, poolSize);
  await migrate(pool);
  return { db, pool, redis: new Redis(TEST_REDIS_URL), prefix: testRedisPrefix() };
};

export const closeConsumerServices = async (services: Partial<ConsumerServices> | undefined): Promise<void> => {
  services?.redis?.disconnect();
  await services?.pool?.end();
  if (services?.prefix) await deleteRedisPrefix(services.prefix);
  await services?.db?.drop();
};

export interface ApiClient {
  /** JSON request against the running control plane. */
  call(
    method: string,
    path: string,
    options?: { body?: unknown; key?: string; headers?: Record<string, string> },
  ): Promise<{
    status: number;
    headers: Headers;
    body: any;
    text: string;
  }>;
  register(
    name?: string,
    wallet?: { chain: 'evm' | 'solana'; address: string },
  ): Promise<{ apiKey: string; agentId: string }>;
  createListing(
    apiKey: string,
    fields?: Record<string, unknown>,
  ): Promise<{ listing: any; signingSecret: string; keyId: string }>;
}

export interface TestPlane extends ControlPlane, ApiClient {
  config: ControlPlaneConfig;
  stop(): Promise<void>;
}

/** An API client for `baseUrl`; registration and listings solve their proof-of-work challenges. */
export const apiClient = (baseUrl: string): ApiClient => {
  const call: ApiClient['call'] = async (method, path, options = {}) => {
    const headers: Record<string, string> = { ...options.headers };
    if (options.key) headers['authorization'] = `Bearer ${options.key}`;
    if (options.body !== undefined) headers['content-type'] ??= 'application/json';
    const response = await fetch(`${baseUrl}${path}`, {
      method,
      headers,
      ...(options.body !== undefined
        ? { body: typeof options.body === 'string' ? options.body : JSON.stringify(options.body) }
        : {}),
    });
    const text = await response.text();
    let body: unknown = null;
    try {
      body = JSON.parse(text);
    } catch {}
    return { status: response.status, headers: response.headers, body, text };
  };
  const solve = async (path: string, key?: string) => {
    const { body } = await call('POST', path, key ? { key } : {});
    return {
      challenge_id: body.data.challenge_id as string,
      nonce: solveChallenge(body.data.salt, body.data.difficulty),
    };
  };
  return {
    call,
    register: async (name = 'agent', wallet) => {
      const res = await call('POST', '/api/v1/register', {
        body: { ...(await solve('/api/v1/auth/challenge')), name, ...(wallet ? { wallet } : {}) },
      });
      if (res.status !== 201) throw new Error(`register failed: ${res.text}`);
      return { apiKey: res.body.data.api_key, agentId: res.body.data.agent.id };
    },
    createListing: async (apiKey, fields = {}) => {
      const res = await call('POST', '/api/v1/listings', {
        key: apiKey,
        body: {
          ...(await solve('/api/v1/listings/challenge', apiKey)),
          name: 'Echo',
          description: 'Echoes its input',
          pricing_model: 'free',
          private_endpoint_url: 'http://127.0.0.1:9/echo',
          ...fields,
        },
      });
      if (res.status !== 201) throw new Error(`create listing failed: ${res.text}`);
      return {
        listing: res.body.data.listing,
        signingSecret: res.body.data.gateway_endpoint.signing_secret,
        keyId: res.body.data.gateway_endpoint.key_id,
      };
    },
  };
};

/** Starts a control plane on a fresh database with a low proof-of-work difficulty. */
export const startTestControlPlane = async (
  env: Record<string, string> = {},
  overrides: Parameters<typeof startControlPlane>[1] = {},
  services: TestServices = {},
): Promise<TestPlane> => {
  const db = await createTestDatabase(services.databaseUrl);
  const redisUrl = services.redisUrl ?? TEST_REDIS_URL;
  const config = loadControlPlaneConfig({
    DATABASE_URL: db.url,
    REDIS_URL: redisUrl,
    CONTROL_PLANE_PORT: '0',
    CONTROL_PLANE_METRICS_PORT: '0',
    CROCHET_POW_DIFFICULTY: '4',
    CROCHET_EPOCH_GRACE_MS: '200',
    CROCHET_ALLOW_PRIVATE_ENDPOINTS: '1',
    CROCHET_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    CROCHET_DATA_PLANE_KEY: TEST_DATA_PLANE_KEY,
    CROCHET_REDIS_PREFIX: testRedisPrefix(),
    LOG_LEVEL: 'silent',
    PUBLIC_BASE_URL: 'http://crochet.test:8080',
    ...env,
  });
  const plane = await startControlPlane(config, overrides);
  return {
    ...plane,
    ...apiClient(plane.url),
    config,
    stop: async () => {
      await plane.close();
      await deleteRedisPrefix(config.redisPrefix, redisUrl);
      await db.drop();
    },
  };
};

/** A wallet a test controls: its chain, address, and how it signs a message (personal_sign / ed25519, as agents do). */
export interface TestWallet {
  chain: 'evm' | 'solana';
  address: string;
  sign(message: string): Promise<string> | string;
}

/**
 * Adds and verifies a wallet for the agent of `apiKey` (POST /api/v1/me/wallets/challenge, sign, POST
 * /api/v1/me/wallets). Returns the final answer as is, so a test can check refusals too.
 */
export const verifyWallet = async (client: ApiClient, apiKey: string, wallet: TestWallet) => {
  const challenge = await client.call('POST', '/api/v1/me/wallets/challenge', {
    key: apiKey,
    body: { chain: wallet.chain, address: wallet.address },
  });
  if (challenge.status !== 201) return challenge;
  const message = challenge.body.data.message as string;
  return client.call('POST', '/api/v1/me/wallets', {
    key: apiKey,
    body: { chain: wallet.chain, address: wallet.address, message, signature: await wallet.sign(message) },
  });
};
