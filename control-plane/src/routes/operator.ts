import { createHash } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { ApiError, newId, PAGE_LIMIT_DEFAULT, PRICE_ATOMIC_MAX, redisKeys, toAtomic } from '@crochet/protocol';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type TSchema, Type } from 'typebox';
import type { App, Deps } from '../app.js';
import { AttemptLimiter } from '../operators/attempt-limiter.js';
import { claimCodeKey, redeemClaimCode } from '../operators/claims.js';
import { revokeAgentKey, setAgentStatus, setListingStatus, setSpendCap } from '../operators/controls.js';
import { operatorRedisKeys } from '../operators/keys.js';
import {
  agentSummaries,
  agentSummaryOf,
  keySummary,
  listingSummary,
  operatorGatewayRequests,
  operatorLedger,
  operatorTransfers,
} from '../operators/overview.js';
import { hashPassword, prepareDummyPassword, verifyDummyPassword, verifyPassword } from '../operators/passwords.js';
import { type OperatorSession, SessionManager, sameToken } from '../operators/session.js';
import { AgentIdSchema, Data, KeyIdSchema, List, ListingIdSchema, PageQuery, Timestamp } from '../schemas.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The signed-in operator on /api/v1/operator/* routes that need one. */
    operator: OperatorSession | null;
  }
}

/**
 * Sign-in and abuse limits. Failed sign-ins are counted per email from one client (the guessing limit), per client
 * over all emails, and per email over all clients — the last high enough that nobody can lock an operator out from a
 * handful of addresses, low enough to stop distributed guessing. Also: sign-ups per client, bad claim codes.
 */
const LIMITS = {
  loginPerEmailFromClient: { max: 5, windowMs: 15 * 60_000 },
  loginPerAddress: { max: 30, windowMs: 15 * 60_000 },
  loginPerEmail: { max: 100, windowMs: 60 * 60_000 },
  signupPerAddress: { max: 20, windowMs: 60 * 60_000 },
  badClaimsPerOperator: { max: 10, windowMs: 15 * 60_000 },
};

/**
 * The client a limit counts: its address, or for IPv6 its /64 (one host usually holds a whole /64, so counting single
 * addresses would give it billions of allowances).
 */
export const clientBucket = (ip: string): string => {
  if (!isIPv6(ip)) return ip;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  const [head = '', tail = ''] = ip.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}::/64`;
};

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
const Decimal = (description: string) => Type.String({ description });

const Operator = Type.Object({
  id: Type.String({ description: 'op_… id' }),
  email: Type.String(),
  created_at: Timestamp,
});
const SignedIn = Data(
  Type.Object({
    operator: Operator,
    csrf_token: Type.String({ description: 'send as X-CSRF-Token on every state-changing operator request' }),
  }),
);
const KeySummary = Type.Object({
  id: KeyIdSchema,
  prefix: Type.String(),
  name: Type.String(),
  status: Type.Union([Type.Literal('active'), Type.Literal('revoked')]),
  created_at: Timestamp,
  last_used_at: Nullable(Timestamp),
});
const ListingSummary = Type.Object({
  id: ListingIdSchema,
  name: Type.String(),
  status: Type.Union([Type.Literal('active'), Type.Literal('paused'), Type.Literal('archived')]),
  pricing_model: Type.Union([Type.Literal('free'), Type.Literal('per_call')]),
  price: Decimal('decimal, e.g. "0.01"'),
  currency: Type.String(),
  crochet_score: Nullable(Type.Integer()),
  verified: Type.Boolean(),
  review_count: Type.Integer(),
  paused_by: Nullable(Type.Union([Type.Literal('operator'), Type.Literal('seller')])),
});
const AgentSummary = Type.Object({
  id: AgentIdSchema,
  name: Type.String(),
  status: Type.Union([Type.Literal('active'), Type.Literal('paused')]),
  daily_spend_cap: Nullable(Decimal('most the agent may spend on paid calls per UTC day (USDC); null: no cap')),
  spent_today: Decimal('USDC spent on paid calls since 00:00 UTC, as the daily cap counts it'),
  spent_total: Decimal('USDC spent on paid calls, net of refunds'),
  earned_total: Decimal('USDC earned as a seller, after fees and refunds'),
  claimed_at: Timestamp,
  keys: Type.Array(KeySummary),
  listings: Type.Array(ListingSummary),
});
const GatewayRequestSummary = Type.Object({
  id: Type.String({ description: 'gr_… id' }),
  created_at: Timestamp,
  listing_id: Type.String(),
  listing_name: Nullable(Type.String()),
  buyer_id: Nullable(Type.String()),
  seller_id: Nullable(Type.String()),
  method: Nullable(Type.String()),
  status_code: Nullable(Type.Integer()),
  duration_ms: Nullable(Type.Integer()),
  price: Nullable(Decimal('decimal price of the call')),
  payment_outcome: Nullable(Type.String({ description: 'settled, released, refund_due, refunded, …' })),
});
const LedgerEntrySummary = Type.Object({
  id: Type.String(),
  created_at: Timestamp,
  agent_id: AgentIdSchema,
  kind: Type.String({
    description:
      'buyer_debit, seller_credit, their *_reversal, refund_owed, refund_sent (a refund sent back on chain), ' +
      'seller_payout / payout_sent (a payout)',
  }),
  amount: Decimal('signed decimal: negative is money out of the agent'),
  currency: Type.String(),
  gateway_request_id: Nullable(Type.String({ description: 'the paid call; null for a payout' })),
  transfer_id: Nullable(Type.String({ description: 'po_… / rf_…: the payout or refund sent on chain it books' })),
});
const TransferSummary = Type.Object({
  id: Type.String({ description: 'po_… (payout) or rf_… (refund)' }),
  kind: Type.Union([Type.Literal('payout'), Type.Literal('refund')]),
  agent_id: AgentIdSchema,
  status: Type.Union([
    Type.Literal('pending'),
    Type.Literal('broadcast'),
    Type.Literal('confirmed'),
    Type.Literal('failed'),
  ]),
  amount: Decimal('decimal USDC sent'),
  currency: Type.String(),
  network: Type.String({ description: 'CAIP-2' }),
  to: Type.String({ description: 'the wallet it goes to' }),
  tx: Nullable(Type.String({ description: 'Solana signature or EVM hash, once signed' })),
  gateway_request_id: Nullable(Type.String({ description: 'a refund: the call it refunds' })),
  requested_by: Type.Union([Type.Literal('api'), Type.Literal('auto'), Type.Literal('refund')]),
  error: Nullable(Type.String()),
  created_at: Timestamp,
  confirmed_at: Nullable(Timestamp),
});
const Email = Type.String({ minLength: 1, maxLength: 320 });
const Page = Type.Object(PageQuery, { additionalProperties: false });
const IdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });

// A pragmatic shape check (the mailbox is never contacted): one @, no spaces, a dot in the domain.
const EMAIL_SHAPE = /^[^\s@]{1,64}@[^\s@.]+(\.[^\s@.]+)+$/;
const normalizeEmail = (email: string): string => email.trim().toLowerCase();
const emailHash = (email: string): string => createHash('sha256').update(email).digest('hex').slice(0, 32);

/** The session guards, shared by the operator routes; hooks run before the body is read. */
const guards = (sessions: SessionManager, siteOrigin: string) => ({
  /**
   * Browsers say where a request comes from: a cross-site one (another Origin, or Sec-Fetch-Site: cross-site) is
   * refused outright, before SameSite cookies or tokens are even considered.
   */
  sameSite: async (request: FastifyRequest) => {
    const origin = request.headers.origin;
    const site = request.headers['sec-fetch-site'];
    if ((origin !== undefined && origin !== siteOrigin) || site === 'cross-site') {
      throw new ApiError('CSRF_TOKEN_INVALID', { message: 'Operator requests are accepted only from this site.' });
    }
  },
  session: async (request: FastifyRequest) => {
    request.operator = await sessions.read(request.headers.cookie);
    if (!request.operator) throw new ApiError('OPERATOR_SESSION_REQUIRED');
  },
  csrf: async (request: FastifyRequest) => {
    const token = request.headers['x-csrf-token'];
    if (typeof token !== 'string' || !sameToken(token, request.operator!.csrf)) {
      throw new ApiError('CSRF_TOKEN_INVALID');
    }
  },
  // Operator answers are personal: never kept by a shared cache or the browser's back button.
  noStore: async (_request: FastifyRequest, reply: FastifyReply) => {
    reply.header('cache-control', 'no-store');
  },
});

/**
 * §3.7: operator accounts and what a signed-in operator does with the agents they claimed. Served to the dashboard
 * (cookie session + CSRF token), so these routes stay out of the agents' API documents.
 */
export const operatorRoutes = (app: App, deps: Deps): void => {
  const { config, pool, redis, publisher } = deps;
  const codeKey = claimCodeKey(config.encryptionKey);
  const counters = { redis, keys: redisKeys(config.redisPrefix) };
  const keys = operatorRedisKeys(config.redisPrefix);
  const limiter = new AttemptLimiter(redis);
  const sessions = new SessionManager({
    redis,
    keys,
    encryptionKeys: [config.encryptionKey, ...config.encryptionKeysPrevious],
    secure: config.publicBaseUrl.startsWith('https:'),
  });
  const guard = guards(sessions, new URL(config.publicBaseUrl).origin);
  const open = { onRequest: [guard.sameSite], onSend: [guard.noStore], config: { documented: false } };
  const read = { onRequest: [guard.session], onSend: [guard.noStore], config: { documented: false } };
  const write = {
    onRequest: [guard.sameSite, guard.session, guard.csrf],
    onSend: [guard.noStore],
    config: { documented: false },
  };

  app.decorateRequest('operator', null);
  prepareDummyPassword();

  const operatorView = async (operatorId: string) => {
    const { rows } = await pool.query<{ id: string; email: string; created_at: Date }>(
      'SELECT id, email, created_at FROM operators WHERE id = $1',
      [operatorId],
    );
    if (!rows[0]) throw new ApiError('OPERATOR_SESSION_REQUIRED');
    return rows[0];
  };

  app.post(
    '/api/v1/operator/signup',
    {
      ...open,
      schema: {
        body: Type.Object(
          { email: Email, password: Type.String({ minLength: 10, maxLength: 200 }) },
          { additionalProperties: false },
        ),
        response: { 201: SignedIn },
      },
    },
    async (request, reply) => {
      const email = normalizeEmail(request.body.email);
      if (email.length > 254 || !EMAIL_SHAPE.test(email)) {
        throw new ApiError('VALIDATION_FAILED', {
          message: 'body.email is not an email address',
          details: { field: 'body.email' },
        });
      }
      await limiter.take(
        [{ key: keys.signupAddress(clientBucket(request.ip)), ...LIMITS.signupPerAddress }],
        'Too many sign-ups from this address.',
      );
      const passwordHash = await hashPassword(request.body.password);
      const { rows } = await pool.query<{ id: string; email: string; created_at: Date }>(
        `INSERT INTO operators (id, email, password_hash) VALUES ($1, $2, $3)
         ON CONFLICT (email) DO NOTHING RETURNING id, email, created_at`,
        [newId('operator'), email, passwordHash],
      );
      const operator = rows[0];
      if (!operator) throw new ApiError('OPERATOR_EMAIL_TAKEN');
      const { session, cookie } = await sessions.create(operator.id);
      return reply
        .code(201)
        .header('set-cookie', cookie)
        .send({ data: { operator, csrf_token: session.csrf } });
    },
  );

  app.post(
    '/api/v1/operator/login',
    {
      ...open,
      schema: {
        body: Type.Object(
          { email: Email, password: Type.String({ minLength: 1, maxLength: 200 }) },
          { additionalProperties: false },
        ),
        response: { 200: SignedIn },
      },
    },
    async (request, reply) => {
      const email = normalizeEmail(request.body.email);
      const client = clientBucket(request.ip);
      const pairKey = keys.loginEmailFromClient(emailHash(email), client);
      const emailKey = keys.loginEmail(emailHash(email));
      const addressKey = keys.loginAddress(client);
      // Counted before the password is checked, so concurrent guesses count too; a success takes its attempt back.
      await limiter.take(
        [
          { key: pairKey, ...LIMITS.loginPerEmailFromClient },
          { key: addressKey, ...LIMITS.loginPerAddress },
          { key: emailKey, ...LIMITS.loginPerEmail },
        ],
        'Too many failed sign-ins.',
      );
      const { rows } = await pool.query<{ id: string; email: string; created_at: Date; password_hash: string }>(
        'SELECT id, email, created_at, password_hash FROM operators WHERE email = $1',
        [email],
      );
      const found = rows[0];
      const valid = found
        ? await verifyPassword(request.body.password, found.password_hash)
        : await verifyDummyPassword(request.body.password);
      if (!found || !valid) throw new ApiError('OPERATOR_CREDENTIALS_INVALID');
      await Promise.all([limiter.clear(pairKey), limiter.refund([addressKey, emailKey])]);
      const { session, cookie } = await sessions.create(found.id);
      const operator = { id: found.id, email: found.email, created_at: found.created_at };
      return reply.header('set-cookie', cookie).send({ data: { operator, csrf_token: session.csrf } });
    },
  );

  app.post('/api/v1/operator/logout', { ...write }, async (request, reply) => {
    await sessions.revoke(request.operator!.sessionId);
    return reply.code(204).header('set-cookie', sessions.clearCookie()).send();
  });

  app.get('/api/v1/operator/session', { ...read, schema: { response: { 200: SignedIn } } }, async (request) => {
    const { operatorId, csrf } = request.operator!;
    return { data: { operator: await operatorView(operatorId), csrf_token: csrf } };
  });

  app.post(
    '/api/v1/operator/claims',
    {
      ...write,
      schema: {
        body: Type.Object(
          { claim_code: Type.String({ minLength: 1, maxLength: 64 }) },
          { additionalProperties: false },
        ),
        response: {
          200: Data(
            Type.Object({ agent: Type.Object({ id: AgentIdSchema, name: Type.String(), claimed_at: Timestamp }) }),
          ),
        },
      },
    },
    async (request) => {
      const { operatorId } = request.operator!;
      const bucket = keys.claimOperator(operatorId);
      // Only codes that match nothing count: they are what guessing looks like.
      await limiter.take(
        [{ key: bucket, ...LIMITS.badClaimsPerOperator }],
        'Too many claim codes that matched nothing.',
      );
      try {
        const agent = await redeemClaimCode(pool, codeKey, operatorId, request.body.claim_code);
        await limiter.refund([bucket]);
        return { data: { agent } };
      } catch (error) {
        if (!(error instanceof ApiError && error.code === 'CLAIM_CODE_INVALID')) await limiter.refund([bucket]);
        throw error;
      }
    },
  );

  app.get(
    '/api/v1/operator/overview',
    {
      ...read,
      schema: {
        response: {
          200: Data(
            Type.Object({
              operator: Type.Object({ id: Type.String(), email: Type.String() }),
              agents: Type.Array(AgentSummary),
            }),
          ),
        },
      },
    },
    async (request) => {
      const { operatorId } = request.operator!;
      const [operator, agents] = await Promise.all([
        operatorView(operatorId),
        agentSummaries(pool, operatorId, undefined, counters),
      ]);
      return { data: { operator: { id: operator.id, email: operator.email }, agents } };
    },
  );

  app.get(
    '/api/v1/operator/gateway-requests',
    { ...read, schema: { querystring: Page, response: { 200: List(GatewayRequestSummary) } } },
    async (request) =>
      operatorGatewayRequests(pool, request.operator!.operatorId, {
        limit: request.query.limit ?? PAGE_LIMIT_DEFAULT,
        cursor: request.query.cursor,
      }),
  );

  app.get(
    '/api/v1/operator/ledger',
    { ...read, schema: { querystring: Page, response: { 200: List(LedgerEntrySummary) } } },
    async (request) =>
      operatorLedger(pool, request.operator!.operatorId, {
        limit: request.query.limit ?? PAGE_LIMIT_DEFAULT,
        cursor: request.query.cursor,
      }),
  );

  app.get(
    '/api/v1/operator/transfers',
    { ...read, schema: { querystring: Page, response: { 200: List(TransferSummary) } } },
    async (request) =>
      operatorTransfers(pool, request.operator!.operatorId, {
        limit: request.query.limit ?? PAGE_LIMIT_DEFAULT,
        cursor: request.query.cursor,
      }),
  );

  // --- controls: each commits, then is published to the proxies like every other config change ----------------------

  app.put(
    '/api/v1/operator/agents/:id/spend-cap',
    {
      ...write,
      schema: {
        params: IdParams,
        body: Type.Object(
          { daily_spend_cap: Nullable(Type.String({ maxLength: 40, description: 'USDC per UTC day, e.g. "2.00"' })) },
          { additionalProperties: false },
        ),
        response: { 200: Data(AgentSummary) },
      },
    },
    async (request) => {
      const { operatorId } = request.operator!;
      const text = request.body.daily_spend_cap;
      let capAtomic: bigint | null = null;
      if (text !== null) {
        capAtomic = toAtomic(text.trim(), 'USDC');
        if (capAtomic === null || capAtomic > PRICE_ATOMIC_MAX) {
          throw new ApiError('VALIDATION_FAILED', {
            message: 'body.daily_spend_cap must be a decimal string of USDC (at most 6 decimals, at most 1000000)',
            details: { field: 'body.daily_spend_cap' },
          });
        }
      }
      await setSpendCap(pool, operatorId, request.params.id, capAtomic);
      await publisher.changed({ agentId: request.params.id });
      return { data: await agentSummaryOf(pool, operatorId, request.params.id, counters) };
    },
  );

  for (const [action, status] of [
    ['pause', 'paused'],
    ['resume', 'active'],
  ] as const) {
    app.post(
      `/api/v1/operator/agents/:id/${action}`,
      { ...write, schema: { params: IdParams, response: { 200: Data(AgentSummary) } } },
      async (request) => {
        const { operatorId } = request.operator!;
        await setAgentStatus(pool, operatorId, request.params.id, status);
        await publisher.changed({ agentId: request.params.id });
        return { data: await agentSummaryOf(pool, operatorId, request.params.id, counters) };
      },
    );

    app.post(
      `/api/v1/operator/listings/:id/${action}`,
      { ...write, schema: { params: IdParams, response: { 200: Data(ListingSummary) } } },
      async (request) => {
        const row = await setListingStatus(pool, request.operator!.operatorId, request.params.id, status);
        await publisher.changed({ listingId: row.id });
        return { data: listingSummary(row) };
      },
    );
  }

  app.post(
    '/api/v1/operator/agents/:id/keys/:keyId/revoke',
    {
      ...write,
      schema: {
        params: Type.Object({ id: Type.String({ maxLength: 64 }), keyId: Type.String({ maxLength: 64 }) }),
        response: { 200: Data(KeySummary) },
      },
    },
    async (request) => {
      const { id, keyId } = request.params;
      const row = await revokeAgentKey(pool, request.operator!.operatorId, id, keyId);
      await publisher.changed({ agentId: id });
      return { data: keySummary(row) };
    },
  );
};
