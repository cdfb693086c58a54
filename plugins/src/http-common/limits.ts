/** Server limits both planes share: how long a client may take, and how many connections it may hold. */
import type { Socket } from 'node:net';
import { ApiError, type EnvReader } from '@crochet/protocol';
import type { FastifyInstance, FastifyReply } from 'fastify';
import ipaddr from 'ipaddr.js';
import { sendApiError } from './reply.js';

export interface ServerLimits {
  /** `CROCHET_HEADERS_TIMEOUT_MS`: from the first byte of a request to the end of its headers. */
  headersTimeoutMs: number;
  /** `CROCHET_REQUEST_TIMEOUT_MS`: to receive a whole request, headers and body (408 REQUEST_TIMEOUT after it). */
  requestTimeoutMs: number;
  /** `CROCHET_KEEP_ALIVE_TIMEOUT_MS`: an idle keep-alive connection is closed after this long. */
  keepAliveTimeoutMs: number;
  /** `CROCHET_MAX_CONNECTIONS`: open connections in all; past it, new ones are closed unanswered. */
  maxConnections: number;
  /**
   * `CROCHET_MAX_CONNECTIONS_PER_CLIENT`: open connections per client address (an IPv6 client: per /64, what one
   * host is usually given); a connection past it is answered 429 TOO_MANY_CONNECTIONS and closed. Trusted proxies
   * are exempt: their connections carry many clients.
   */
  maxConnectionsPerClient: number;
}

export const SERVER_LIMITS_DEFAULT: Readonly<ServerLimits> = Object.freeze({
  headersTimeoutMs: 10_000,
  // Long enough for a 10 MiB gateway body (the largest a listing may accept) on a slow link.
  requestTimeoutMs: 60_000,
  // Fastify's default: longer than the 60 s idle timeout of common load balancers, so they close first.
  keepAliveTimeoutMs: 72_000,
  maxConnections: 10_000,
  // Above the proxies' pool to the control plane (64), so a proxy not listed as trusted still gets through.
  maxConnectionsPerClient: 256,
});

/** Reads the limits (the same names on both planes, DESIGN §4); problems are reported by the reader's `done()`. */
export const readServerLimits = (r: EnvReader): ServerLimits => {
  const d = SERVER_LIMITS_DEFAULT;
  const limits: ServerLimits = {
    headersTimeoutMs: r.int('CROCHET_HEADERS_TIMEOUT_MS', d.headersTimeoutMs, { min: 100, max: 600_000 }),
    requestTimeoutMs: r.int('CROCHET_REQUEST_TIMEOUT_MS', d.requestTimeoutMs, { min: 100, max: 3_600_000 }),
    keepAliveTimeoutMs: r.int('CROCHET_KEEP_ALIVE_TIMEOUT_MS', d.keepAliveTimeoutMs, { min: 100, max: 600_000 }),
    maxConnections: r.int('CROCHET_MAX_CONNECTIONS', d.maxConnections, { min: 1, max: 1_000_000 }),
    maxConnectionsPerClient: r.int('CROCHET_MAX_CONNECTIONS_PER_CLIENT', d.maxConnectionsPerClient, {
      min: 1,
      max: 1_000_000,
    }),
  };
  // Node refuses a headers timeout longer than the request timeout (the headers are part of the request).
  if (limits.headersTimeoutMs > limits.requestTimeoutMs) {
    r.problem('CROCHET_HEADERS_TIMEOUT_MS', `must not exceed CROCHET_REQUEST_TIMEOUT_MS (${limits.requestTimeoutMs})`);
  }
  return limits;
};

/**
 * The Fastify options that carry the timeouts. Node checks the headers and request timeouts on a timer
 * (`connectionsCheckingInterval`, 30 s by default): once a second keeps a timeout within a second of its value.
 */
export const timeoutOptions = (limits: ServerLimits) => ({
  keepAliveTimeout: limits.keepAliveTimeoutMs,
  requestTimeout: limits.requestTimeoutMs,
  http: {
    headersTimeout: limits.headersTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
  },
});

const REFUSED = Symbol('crochet.connectionRefused');

/** Whether limitConnections refused this connection (its requests are answered TOO_MANY_CONNECTIONS). */
export const connectionRefused = (socket: Socket): boolean =>
  (socket as Socket & { [REFUSED]?: boolean })[REFUSED] === true;

/** The bucket a peer address counts in: IPv4 (also IPv4-mapped IPv6) by address, IPv6 by its /64. */
const clientOf = (remoteAddress: string | undefined): { address: ipaddr.IPv4 | ipaddr.IPv6; key: string } | null => {
  if (!remoteAddress || !ipaddr.isValid(remoteAddress)) return null;
  const address = ipaddr.process(remoteAddress);
  if (address.kind() === 'ipv4') return { address, key: address.toString() };
  const parts = (address as ipaddr.IPv6).parts.slice(0, 4);
  return { address, key: `${parts.map((p) => p.toString(16)).join(':')}::/64` };
};

/**
 * Caps open connections: in all (Node closes a connection past `maxConnections` before reading it) and per client
 * address (answered with the error envelope, then closed). Call right after creating the app, so that the refusal
 * runs before any other hook. `trustedProxies` (addresses or CIDRs) are exempt from the per-client cap.
 */
export const limitConnections = (app: FastifyInstance, limits: ServerLimits, trustedProxies: readonly string[]) => {
  app.server.maxConnections = limits.maxConnections;
  const trusted = trustedProxies.map((text) => {
    if (text.includes('/')) {
      const [base, bits] = ipaddr.parseCIDR(text);
      return { base, bits };
    }
    const base = ipaddr.process(text);
    return { base, bits: base.kind() === 'ipv4' ? 32 : 128 };
  });
  const isTrusted = (address: ipaddr.IPv4 | ipaddr.IPv6) =>
    trusted.some(({ base, bits }) => base.kind() === address.kind() && address.match(base, bits));
  const open = new Map<string, number>();
  app.server.on('connection', (socket: Socket & { [REFUSED]?: boolean }) => {
    const client = clientOf(socket.remoteAddress);
    if (!client || isTrusted(client.address)) return;
    const count = open.get(client.key) ?? 0;
    open.set(client.key, count + 1);
    socket.once('close', () => {
      const left = (open.get(client.key) ?? 1) - 1;
      if (left === 0) open.delete(client.key);
      else open.set(client.key, left);
    });
    if (count >= limits.maxConnectionsPerClient) socket[REFUSED] = true;
  });
  // Refused in a hook rather than on connect so the client reads why (a reset explains nothing).
  app.addHook('onRequest', (request, reply, done) => {
    if (!connectionRefused(request.raw.socket)) return done();
    reply.header('connection', 'close');
    sendApiError(
      reply as FastifyReply,
      new ApiError('TOO_MANY_CONNECTIONS', {
        message: `Your address has more than ${limits.maxConnectionsPerClient} open connections to this server.`,
        headers: { 'retry-after': '1' },
      }),
    );
  });
};
