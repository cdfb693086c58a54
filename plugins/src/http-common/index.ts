/** What both planes' Fastify servers share: the error envelope writer, the server options and limits. */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { ApiError, ERRORS, type ErrorCode, errorBody, newId } from '@crochet/protocol';
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { type ServerLimits, timeoutOptions } from './limits.js';
import { sendApiError } from './reply.js';

export * from './limits.js';
export { sendApiError } from './reply.js';

const REQUEST_ID = /^req_[0-9A-HJKMNP-TV-Z]{26}$/;

/** Node's HTTP parser errors (`clientError`) that are a client's mistake, by registry code. */
const CLIENT_ERROR_CODES: Record<string, ErrorCode> = {
  ERR_HTTP_REQUEST_TIMEOUT: 'REQUEST_TIMEOUT',
  HPE_HEADER_OVERFLOW: 'HEADERS_TOO_LARGE',
};

/**
 * Answers what Node's HTTP parser refused before any route ran (malformed request, headers too large, request not
 * received in time) with the error envelope, written on the socket itself: there is no request object yet.
 */
export const clientErrorHandler = (error: Error & { code?: string }, socket: Socket): void => {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  // A response already under way (a body that timed out while the answer streamed) cannot get a second status line.
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (socket.writable && !inFlight?.headersSent) {
    const code = CLIENT_ERROR_CODES[error.code ?? ''] ?? 'HTTP_REQUEST_MALFORMED';
    const requestId = newId('request');
    const body = JSON.stringify(errorBody(code, requestId));
    const { status } = ERRORS[code];
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nx-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroySoon();
};

/** Errors the router raises before any route runs: bad percent-encoding (`%ff`), over-long parameters. */
const frameworkErrors = (error: FastifyError, _request: unknown, reply: FastifyReply): void => {
  const apiError =
    error.code === 'FST_ERR_MAX_PARAM_LENGTH'
      ? new ApiError('URI_TOO_LONG')
      : error.code === 'FST_ERR_BAD_URL'
        ? new ApiError('VALIDATION_FAILED', {
            message: 'The request path is not valid percent-encoded UTF-8.',
            details: { field: 'url' },
          })
        : new ApiError('VALIDATION_FAILED', { message: error.message });
  sendApiError(reply, apiError);
};

const ABSOLUTE_FORM = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i;

/**
 * A request target in absolute-form (`GET http://host/path HTTP/1.1`) as its origin-form (`/path`). RFC 9112
 * §3.2.2: a server must accept the absolute-form; routes, and the proxy's passthrough, work on the path.
 */
export const originForm = (url: string): string => {
  if (url.startsWith('/')) return url;
  const scheme = ABSOLUTE_FORM.exec(url);
  if (!scheme) return url;
  const rest = url.slice(scheme[0].length);
  return rest.startsWith('/') ? rest : `/${rest}`;
};

/** A request's id: its well-formed `X-Request-Id`, else a new `req_…`. */
export const requestIdOf = (headers: Record<string, string | string[] | undefined>): string => {
  const given = headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : newId('request');
};

/**
 * Fastify options both planes share: the request id (a well-formed `X-Request-Id` from the proxy is kept, so one id
 * follows a call through both planes' logs), a logger that never writes credentials, the timeouts, and the error
 * envelope for what fails before a route runs.
 */
export const serverOptions = (logLevel: string, limits: ServerLimits) => ({
  logger: {
    level: logLevel,
    redact: { paths: ['req.headers.authorization', 'req.headers.cookie'], censor: '[redacted]' },
  },
  genReqId: (req: { headers: Record<string, string | string[] | undefined> }): string => requestIdOf(req.headers),
  rewriteUrl: (req: { url?: string }): string => originForm(req.url ?? '/'),
  clientErrorHandler,
  frameworkErrors,
  ...timeoutOptions(limits),
});

/** How long a closing server lets calls in flight finish before it cuts them (then the process's own stop follows). */
export const DRAIN_MS = 20_000;

/**
 * Stops accepting, lets calls in flight finish (at most `drainMs`, then cuts them: a stream can last as long as its
 * seller keeps it open), and closes keep-alive connections as soon as they fall idle — Node closes the idle ones when
 * close() starts, not those that finish a call afterwards, which a client would otherwise keep open until it times out.
 */
export const closeServer = async (app: FastifyInstance, drainMs = DRAIN_MS): Promise<void> => {
  const idle = setInterval(() => app.server.closeIdleConnections(), 100);
  const cut = setTimeout(() => app.server.closeAllConnections(), drainMs);
  try {
    await app.close();
  } finally {
    clearInterval(idle);
    clearTimeout(cut);
  }
};

/**
 * The 413 for a body over `limitBytes`. Fastify marks the reply `Connection: close`; answering without closing lets
 * Node read and drop the rest of the body (bounded by the request timeout), so a client still sending reads the 413
 * rather than a connection reset — which, between the proxy and the control plane, surfaced as a random 503.
 */
export const payloadTooLarge = (reply: FastifyReply, limitBytes: number): ApiError => {
  reply.removeHeader('connection');
  return new ApiError('PAYLOAD_TOO_LARGE', {
    message: `The request body is larger than ${limitBytes} bytes.`,
    details: { limit_bytes: limitBytes },
  });
};
