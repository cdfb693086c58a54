import { type ApiError, errorBody } from '@crochet/protocol';
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
