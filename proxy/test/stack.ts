import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'vitest';
import {
  startTestControlPlane,
  TEST_DATA_PLANE_KEY,
  TEST_REDIS_URL,
  type TestPlane,
  type TestServices,
} from '../../control-plane/test/helpers.js';
import { type ProxyServer, startProxy } from '../src/app.js';
import { loadProxyConfig } from '../src/config.js';

/** A control plane and N proxies sharing one Redis prefix and data-plane key: the whole data path, for tests. */
export interface TestStack {
  plane: TestPlane;
  proxies: ProxyServer[];
  /** Starts one more proxy on the same config. */
  addProxy(env?: Record<string, string>): Promise<ProxyServer>;
  stop(): Promise<void>;
}

export const startTestStack = async (
  options: {
    proxies?: number;
    planeEnv?: Record<string, string>;
    proxyEnv?: Record<string, string>;
    /** Fault tests: PostgreSQL and Redis processes of their own instead of the shared servers. */
    services?: TestServices;
  } = {},
): Promise<TestStack> => {
  const plane = await startTestControlPlane(options.planeEnv, {}, options.services);
  const proxies: ProxyServer[] = [];
  const addProxy = async (env: Record<string, string> = {}) => {
    const proxy = await startProxy(
      loadProxyConfig({
        HOST: '127.0.0.1',
        PORT: '0',
        CONTROL_PLANE_URL: plane.url,
        REDIS_URL: options.services?.redisUrl ?? TEST_REDIS_URL,
        CROCHET_REDIS_PREFIX: plane.config.redisPrefix,
        CROCHET_DATA_PLANE_KEY: TEST_DATA_PLANE_KEY,
        CROCHET_ALLOW_PRIVATE_ENDPOINTS: '1',
        CROCHET_CONFIG_POLL_MS: '200',
        LOG_LEVEL: 'silent',
        ...options.proxyEnv,
        ...env,
      }),
    );
    proxies.push(proxy);
    return proxy;
  };
  for (let i = 0; i < (options.proxies ?? 1); i++) await addProxy();
  return {
    plane,
    proxies,
    addProxy,
    stop: async () => {
      await Promise.all(proxies.map((p) => p.close()));
      await plane.stop();
    },
  };
};

/** A seller's HTTP server on loopback; `handler` answers, `requests` records what arrived (with the raw body). */
export interface TestSeller {
  url: string;
  server: Server;
  requests: { method: string; url: string; headers: IncomingMessage['headers']; body: Buffer }[];
  close(): Promise<void>;
}

export const startSeller = async (
  handler: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void = (_req, res, body) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ echo: body.toString('utf8') }));
  },
): Promise<TestSeller> => {
  const requests: TestSeller['requests'] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      requests.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      handler(req, res, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};

/** Waits until `check` passes (or throws its last failure after `timeoutMs`). For propagation, never for speed. */
export const eventually = async <T>(check: () => Promise<T> | T, timeoutMs = 5_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
};

/** What `rawRequest` and `gateway` answer: status, headers, raw body and (when it parses) the JSON body. */
export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  text: string;
  json: any;
}

/**
 * Node's own HTTP client, sending exactly the path and headers given: fetch and undici normalize dot segments and
 * refuse hop-by-hop headers such as `Connection: x-drop`, which these tests need to send. A body given as an array is
 * written chunk by chunk without Content-Length (chunked transfer coding).
 */
export const rawRequest = (
  base: string,
  path: string,
  options: { method?: string; headers?: OutgoingHttpHeaders; body?: string | Buffer | (string | Buffer)[] } = {},
): Promise<RawResponse> =>
  new Promise((resolve, reject) => {
    const { body } = options;
    const headers: OutgoingHttpHeaders = { ...options.headers };
    // Node frames a body for GET/DELETE/OPTIONS only when told its length.
    if (body !== undefined && !Array.isArray(body) && headers['content-length'] === undefined) {
      headers['content-length'] = Buffer.byteLength(body);
    }
    if (Array.isArray(body)) headers['transfer-encoding'] ??= 'chunked';
    const req = httpRequest(`${base}${path}`, { method: options.method ?? 'POST', headers, path });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const received = Buffer.concat(chunks);
        const text = received.toString('utf8');
        let json: any = null;
        try {
          json = JSON.parse(text);
        } catch {}
        resolve({ status: res.statusCode!, headers: res.headers, body: received, text, json });
      });
    });
    if (Array.isArray(body)) {
      for (const chunk of body) req.write(chunk);
      req.end();
    } else {
      req.end(body);
    }
  });

/** A JSON gateway call with a bearer key (`rawRequest` underneath). */
export const gatewayCall = (
  proxy: { url: string },
  listingId: string,
  apiKey: string | null,
  options: { subPath?: string; body?: unknown; headers?: OutgoingHttpHeaders; method?: string } = {},
): Promise<RawResponse> =>
  rawRequest(proxy.url, `/api/v1/gateway/${listingId}${options.subPath ?? ''}`, {
    method: options.method ?? 'POST',
    headers: {
      'content-type': 'application/json',
      ...(apiKey === null ? {} : { authorization: `Bearer ${apiKey}` }),
      ...options.headers,
    },
    body: JSON.stringify(options.body ?? {}),
  });

/** Asserts a registry error envelope (DESIGN §3): status, code, and a message and hint for the caller. */
export const expectApiError = (res: { status: number; json: any; text: string }, status: number, code: string) => {
  expect(res.status, res.text).toBe(status);
  expect(res.json?.error?.code, res.text).toBe(code);
  expect(res.json.error.message).toEqual(expect.any(String));
  expect(res.json.error.message.length).toBeGreaterThan(0);
  expect(res.json.error.hint).toEqual(expect.any(String));
  expect(res.json.error.hint.length).toBeGreaterThan(0);
  expect(res.json.error.docs).toBe(`/docs/errors#${code}`);
  return res.json.error;
};
