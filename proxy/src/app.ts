import { ApiError, errorBody, newId } from '@crochet/protocol';
import httpProxy from '@fastify/http-proxy';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import type { ProxyConfig } from './config.js';

const REQUEST_ID = /^req_[0-9A-HJKMNP-TV-Z]{26}$/;
/** How long a client should wait before retrying when the control plane does not answer. */
const CONTROL_PLANE_RETRY_AFTER_SECONDS = 5;

export const sendError = (reply: FastifyReply, error: ApiError): FastifyReply => {
  if (error.headers) reply.headers(error.headers);
  return reply
    .code(error.status)
    .type('application/json; charset=utf-8')
    .send(
      errorBody(error.code, reply.request.id, { message: error.message, hint: error.hint, details: error.details }),
    );
};

/**
 * The public entry point. `/api/v1/gateway/*` is the data plane's own pipeline; every other path is passed through
 * to the control plane, so one base URL serves the whole API.
 */
export const buildProxy = (config: ProxyConfig): FastifyInstance => {
  const app = Fastify({
    logger: {
      level: config.logLevel,
      redact: { paths: ['req.headers.authorization', 'req.headers.cookie'], censor: '[redacted]' },
    },
    bodyLimit: config.bodyLimitBytes,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : newId('request');
    },
    trustProxy: false,
  });

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    if (error instanceof ApiError) return sendError(reply, error);
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return sendError(
        reply,
        new ApiError('PAYLOAD_TOO_LARGE', {
          message: `The request body is larger than ${config.bodyLimitBytes} bytes.`,
        }),
      );
    }
    request.log.error({ err: error }, 'unhandled proxy error');
    return sendError(reply, new ApiError('INTERNAL_ERROR'));
  });

  app.get('/healthz', async () => ({ data: { status: 'ok' } }));

  app.register(httpProxy, {
    upstream: config.controlPlaneUrl,
    prefix: '/',
    undici: { connections: 64, keepAliveTimeout: 30_000, headersTimeout: 30_000, bodyTimeout: 30_000 },
    replyOptions: {
      rewriteRequestHeaders: (request, headers) => ({ ...headers, 'x-request-id': String(request.id) }),
      onError: (reply, { error }) => {
        reply.request.log.warn({ err: error }, 'control plane unreachable');
        sendError(
          reply as FastifyReply,
          new ApiError('CONTROL_PLANE_UNAVAILABLE', {
            headers: { 'retry-after': String(CONTROL_PLANE_RETRY_AFTER_SECONDS) },
          }),
        );
      },
    },
  });

  return app;
};

export interface ProxyServer {
  app: FastifyInstance;
  url: string;
  close(): Promise<void>;
}

export const startProxy = async (config: ProxyConfig): Promise<ProxyServer> => {
  const app = buildProxy(config);
  const url = await app.listen({ host: config.host, port: config.port });
  return { app, url, close: () => app.close() };
};
