import { limitConnections, payloadTooLarge, sendApiError, serverOptions } from '@crochet/plugins';
import type { CryptoBox } from '@crochet/protocol';
import {
  ApiError,
  apiKeyDisplayPrefix,
  bearerToken,
  type ErrorCode,
  hashApiKey,
  isWellFormedApiKey,
} from '@crochet/protocol';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifySchema,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
} from 'fastify';
import type { Redis } from 'ioredis';
import type { ControlPlaneConfig } from './config.js';
import type { ConfigPublisher } from './config-publisher.js';
import { isDatabaseUnavailable, type Pool } from './db.js';
import type { Treasury } from './payouts/treasury.js';
import { refuseNul } from './text.js';

/** The caller of a route that needs an API key. */
export interface AuthedAgent {
  agentId: string;
  keyId: string;
  keyPrefix: string;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** `api_key`: the route needs `Authorization: Bearer am_k_…`; `optional`: it reads one when sent. */
    auth?: 'none' | 'optional' | 'api_key';
    /** Error codes this route documents (beyond the ones every route can answer). */
    errors?: ErrorCode[];
    /** false: the route is not listed in the public API documents. */
    documented?: boolean;
  }
  interface FastifyRequest {
    agent: AuthedAgent | null;
  }
}

/** What route modules need; built once in `server.ts`. */
export interface Deps {
  config: ControlPlaneConfig;
  pool: Pool;
  redis: Redis;
  box: CryptoBox;
  /** Announces changes to the proxies; routes call it after their change committed. */
  publisher: ConfigPublisher;
  /** Host name resolution for the SSRF check; tests inject one. */
  lookup?: (hostname: string) => Promise<string[]>;
  /** Money out (§3.9): the treasuries payouts are sent from, and a nudge to the transfers job. Absent: no payouts. */
  money?: { treasuries: ReadonlyMap<string, Treasury>; kick(): void };
}

export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

/** A route as the documentation generators see it. */
export interface RouteDoc {
  method: string;
  url: string;
  schema: FastifySchema & Record<string, unknown>;
  auth: 'none' | 'optional' | 'api_key';
  errors: ErrorCode[];
}

const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

/** Sends the error envelope for a code. */

const validationMessage = (error: FastifyError): { message: string; field: string } => {
  const first = error.validation?.[0];
  if (!first) return { message: error.message, field: '' };
  const params = first.params as Record<string, unknown>;
  const path = `${error.validationContext ?? 'body'}${first.instancePath.replaceAll('/', '.')}`;
  const extra = params['additionalProperty'] ?? params['missingProperty'];
  const field = typeof extra === 'string' ? `${path}.${extra}` : path;
  if (first.keyword === 'additionalProperties') return { message: `${field} is not a known field`, field };
  if (first.keyword === 'required') return { message: `${field} is required`, field };
  return { message: `${path} ${first.message ?? 'is invalid'}`, field };
};

/** Maps anything a route or Fastify threw to a registry error; null for a bug or an infrastructure failure. */
const toApiError = (error: FastifyError): ApiError | null => {
  if (error instanceof ApiError) return error;
  if (error.validation) {
    const { message, field } = validationMessage(error);
    return new ApiError('VALIDATION_FAILED', { message, details: { field } });
  }
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError('UNSUPPORTED_MEDIA_TYPE');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ApiError('INVALID_JSON');
  }
  if (error instanceof SyntaxError) return new ApiError('INVALID_JSON');
  // PostgreSQL or Redis (operator sessions, sign-in and claim limits) unreachable: a state the client can wait out,
  // not a bug.
  if (
    isDatabaseUnavailable(error) ||
    error.name === 'MaxRetriesPerRequestError' ||
    /Connection is closed|ECONNREFUSED/.test(error.message)
  ) {
    return new ApiError('STATE_UNAVAILABLE', { headers: { 'retry-after': '2' } });
  }
  const status = error.statusCode ?? 500;
  if (status === 404) return new ApiError('ROUTE_NOT_FOUND');
  if (status === 413) return new ApiError('PAYLOAD_TOO_LARGE');
  if (status === 415) return new ApiError('UNSUPPORTED_MEDIA_TYPE');
  if (status >= 400 && status < 500) return new ApiError('VALIDATION_FAILED', { message: error.message });
  return null;
};

/**
 * Builds the control plane's Fastify instance with its cross-cutting behaviour: request ids, strict body validation,
 * the error envelope for every failure, API-key authentication, and a catalog of routes for the documents.
 */
export const createApp = (deps: Deps): { app: App; catalog: RouteDoc[] } => {
  const { config, pool } = deps;
  const app = Fastify({
    ...serverOptions(config.logLevel, config.limits),
    bodyLimit: config.bodyLimitBytes,
    // request.ip: the peer, unless it is a configured proxy that forwards the client's address.
    trustProxy: config.trustedProxies.length > 0 ? config.trustedProxies : false,
    ajv: { customOptions: { removeAdditional: false } },
    routerOptions: { ignoreTrailingSlash: true },
  }).withTypeProvider<TypeBoxTypeProvider>();
  limitConnections(app as unknown as FastifyInstance, config.limits, config.trustedProxies);

  // Bodies are validated strictly (a number is not a string); query strings and params arrive as text and are coerced.
  const strict = addFormats(new Ajv({ coerceTypes: false, useDefaults: true, removeAdditional: false, strict: false }));
  const coercing = addFormats(
    new Ajv({ coerceTypes: 'array', useDefaults: true, removeAdditional: false, strict: false }),
  );
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? strict : coercing).compile(schema));

  // JSON only: without this, text/plain bodies reach the schema and fail as a shape error instead of 415.
  app.removeContentTypeParser('text/plain');
  // An empty JSON body is "no body" (so a bodiless POST works with or without a Content-Type), not a parse error.
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = body as string;
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch {
      done(new ApiError('INVALID_JSON'), undefined);
    }
  });

  // A bodiless request validates as an empty object, so the error names the missing field rather than the body.
  // Then the one rule for U+0000, on every route's params, query and body, before anything reaches PostgreSQL.
  app.addHook('preValidation', async (request) => {
    if (request.body === undefined && request.routeOptions.schema?.body) request.body = {};
    refuseNul(request);
  });

  app.decorateRequest('agent', null);
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });

  const catalog: RouteDoc[] = [];
  app.addHook('onRoute', (route) => {
    // `hide` is how plugins (the API reference's assets) keep their routes out of API documents.
    if (
      route.method === 'HEAD' ||
      route.config?.documented === false ||
      (route.schema as { hide?: boolean } | undefined)?.hide === true
    )
      return;
    for (const method of [route.method].flat()) {
      catalog.push({
        method,
        url: route.url,
        schema: (route.schema ?? {}) as RouteDoc['schema'],
        auth: route.config?.auth ?? 'none',
        errors: route.config?.errors ?? [],
      });
    }
  });

  app.addHook('onRequest', async (request) => {
    const auth = request.routeOptions.config.auth ?? 'none';
    if (auth === 'none') return;
    const header = request.headers.authorization;
    if (header === undefined && auth === 'optional') return;
    request.agent = await authenticate(pool, header);
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const apiError =
      error.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? payloadTooLarge(reply, config.bodyLimitBytes) : toApiError(error);
    if (apiError) return sendApiError(reply, apiError);
    request.log.error({ err: error }, 'unhandled error');
    return sendApiError(reply, new ApiError('INTERNAL_ERROR'));
  });
  app.setNotFoundHandler((_request, reply) => sendApiError(reply, new ApiError('ROUTE_NOT_FOUND')));

  return { app: app as unknown as App, catalog };
};

// Updating last_used_at on every call would be a write per request; once a minute per key is enough to be useful.
const LAST_USED_RESOLUTION = "interval '1 minute'";

/** Resolves an Authorization header to an agent, or throws the precise 401. */
export const authenticate = async (pool: Pool, header: string | undefined): Promise<AuthedAgent> => {
  const key = bearerToken(header);
  if (key === undefined) throw new ApiError('AUTH_REQUIRED');
  if (!isWellFormedApiKey(key)) throw new ApiError('API_KEY_MALFORMED');
  const { rows } = await pool.query<{ id: string; agent_id: string; revoked_at: Date | null }>(
    'SELECT id, agent_id, revoked_at FROM api_keys WHERE key_hash = $1',
    [hashApiKey(key)],
  );
  const row = rows[0];
  if (!row) throw new ApiError('API_KEY_INVALID');
  if (row.revoked_at) throw new ApiError('API_KEY_REVOKED');
  pool
    .query(
      `UPDATE api_keys SET last_used_at = now()
        WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - ${LAST_USED_RESOLUTION})`,
      [row.id],
    )
    .catch(() => {});
  return { agentId: row.agent_id, keyId: row.id, keyPrefix: apiKeyDisplayPrefix(key) };
};
