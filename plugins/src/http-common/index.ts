/** What both planes' Fastify servers share: the error envelope writer and the server options. */
import { type ApiError, errorBody, newId } from '@crochet/protocol';
import type { FastifyReply } from 'fastify';

/**
 * Answers a registry error with the envelope (DESIGN §3): its status, its headers (Retry-After…), and
 * `{error: {code, message, request_id, hint, docs, …details}}`. One definition for both planes.
 */
export const sendApiError = (
  reply: FastifyReply,
  error: ApiError,
  requestId: string = reply.request.id,
): FastifyReply => {
  if (error.headers) reply.headers(error.headers);
  return reply
    .code(error.status)
    .type('application/json; charset=utf-8')
    .send(errorBody(error.code, requestId, { message: error.message, hint: error.hint, details: error.details }));
};

const REQUEST_ID = /^req_[0-9A-HJKMNP-TV-Z]{26}$/;

/**
 * Fastify options both planes share: the request id (a well-formed `X-Request-Id` from the proxy is kept, so one id
 * follows a call through both planes' logs) and a logger that never writes credentials.
 */
export const serverOptions = (logLevel: string) => ({
  logger: {
    level: logLevel,
    redact: { paths: ['req.headers.authorization', 'req.headers.cookie'], censor: '[redacted]' },
  },
  genReqId: (req: { headers: Record<string, string | string[] | undefined> }): string => {
    const given = req.headers['x-request-id'];
    return typeof given === 'string' && REQUEST_ID.test(given) ? given : newId('request');
  },
});
