import { ApiError, decodeCursor, encodeCursor, isId, newId, PAGE_LIMIT_DEFAULT } from '@crochet/protocol';
import { Type } from 'typebox';
import type { App, Deps } from '../app.js';
import { sqlParams, transaction } from '../db.js';
import { ENDPOINT_TEST_EXCERPT_BYTES, type EndpointTestResult, testEndpoint } from '../endpoint-test.js';
import {
  acceptEndpointUrl,
  endpointUrlContext,
  LISTING_COLUMNS,
  type ListingRow,
  listingView,
  newSigningSecret,
  resolvePrice,
  signingKeyContext,
} from '../listings.js';
import { consumeChallenge, issueChallenge } from '../pow.js';
import {
  AgentIdSchema,
  Data,
  EndpointUrlInput,
  List,
  Listing,
  PageQuery,
  PowChallenge,
  PowSolution,
  PriceInput,
  PricingModel,
  SigningKey,
  Timestamp,
} from '../schemas.js';
import { LISTING_SCORE_COLUMN } from '../score/view.js';
import { cleanRequiredText } from '../text.js';

const Tags = Type.Array(Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,31}$' }), {
  maxItems: 10,
  uniqueItems: true,
  description: 'lowercase words or kebab-case, at most 10',
});
// Both are stored cleaned (text.ts), so they need a visible character: one left with none is refused too.
const Name = Type.String({
  minLength: 1,
  maxLength: 120,
  pattern: '\\S',
  description: 'one line; stored without control or bidirectional formatting characters, trimmed',
});
const Description = Type.String({
  minLength: 1,
  maxLength: 4000,
  pattern: '\\S',
  description: 'plain text; stored without control (but line breaks) or bidirectional formatting characters, trimmed',
});
const ONE_LINE = { multiline: false };
const MULTILINE = { multiline: true };
const JsonDocument = Type.Unknown({ description: 'any JSON document' });
/** Gateway settings a seller controls; the proxies enforce them. */
const GatewaySettingsInput = {
  rate_limit_per_minute: Type.Optional(
    Type.Union([Type.Integer({ minimum: 1, maximum: 1_000_000 }), Type.Null()], {
      description: 'calls per minute across all buyers; null: the marketplace default',
    }),
  ),
  body_limit_bytes: Type.Optional(
    Type.Integer({ minimum: 1024, maximum: 10 * 1024 * 1024, description: 'largest request body (default 1 MiB)' }),
  ),
  timeout_ms: Type.Optional(
    Type.Integer({ minimum: 1000, maximum: 120_000, description: 'how long the gateway waits for you (default 30 s)' }),
  ),
  settlement_policy: Type.Optional(
    Type.Union([Type.Literal('before_forward'), Type.Literal('after_response')], {
      description:
        'before_forward (default): payment settles before the call reaches you; after_response: only when you answer 2xx',
    }),
  ),
};
const ListingParams = Type.Object({ id: Type.String({ maxLength: 64 }) });

type Sort = 'newest' | 'price' | 'score';

const isCursorId = (value: string | number | undefined): boolean => typeof value === 'string' && isId('listing', value);

/**
 * Keyset pagination per sort: the ORDER BY, the row position after which the next page starts, and a check that a
 * decoded position has the types `position` produces (a forged cursor must not reach PostgreSQL as a bad cast).
 */
const SORTS: Record<
  Sort,
  {
    order: string;
    after: string;
    position: (row: ListingRow) => (string | number)[];
    valid: (position: (string | number)[]) => boolean;
  }
> = {
  newest: { order: 'id DESC', after: 'id < $X1', position: (r) => [r.id], valid: ([id]) => isCursorId(id) },
  price: {
    order: 'price_atomic ASC, id ASC',
    after: '(price_atomic, id) > ($X1::bigint, $X2)',
    position: (r) => [r.price_atomic, r.id],
    valid: ([price, id]) => typeof price === 'string' && /^[0-9]{1,18}$/.test(price) && isCursorId(id),
  },
  score: {
    order: 'coalesce(crochet_score, -1) DESC, id DESC',
    after: '(coalesce(crochet_score, -1), id) < ($X1::int, $X2)',
    position: (r) => [r.crochet_score ?? -1, r.id],
    valid: ([score, id]) => Number.isInteger(score) && Number(score) >= -1 && Number(score) <= 1000 && isCursorId(id),
  },
};

/** §3.2: listings. Only the owner may change a listing; to anyone else a listing they may not see does not exist. */
export const listingRoutes = (app: App, deps: Deps): void => {
  const { config, pool, box, publisher } = deps;
  const view = (row: ListingRow, owner: boolean) => listingView(row, config.publicBaseUrl, owner);

  /** The caller's own listing, or LISTING_NOT_FOUND (never a hint that someone else's exists). */
  const ownListing = async (id: string, agentId: string): Promise<ListingRow> => {
    const { rows } = await pool.query<ListingRow>(
      `SELECT ${LISTING_COLUMNS} FROM listings WHERE id = $1 AND seller_id = $2`,
      [id, agentId],
    );
    if (!rows[0]) throw new ApiError('LISTING_NOT_FOUND');
    return rows[0];
  };

  app.post(
    '/api/v1/listings/challenge',
    {
      schema: {
        operationId: 'createListingChallenge',
        summary: 'Get a proof-of-work challenge for creating a listing (same algorithm as registration)',
        tags: ['listings', 'seller'],
        response: { 201: Data(PowChallenge) },
      },
      config: { auth: 'api_key' },
    },
    async (request, reply) => {
      const challenge = await issueChallenge(
        pool,
        'listing',
        request.agent!.agentId,
        config.powDifficulty,
        config.powTtlSeconds,
      );
      return reply.code(201).send({ data: challenge });
    },
  );

  app.post(
    '/api/v1/listings',
    {
      schema: {
        operationId: 'createListing',
        summary: 'Publish a listing; returns the signing secret once',
        description:
          'The private endpoint URL is stored encrypted and never shown again; buyers call gateway_url. ' +
          'Store gateway_endpoint.signing_secret: it verifies X-Crochet-Signature on every forwarded request.',
        tags: ['listings', 'seller'],
        body: Type.Object(
          {
            ...PowSolution,
            name: Name,
            description: Description,
            pricing_model: PricingModel,
            price: Type.Optional(PriceInput),
            private_endpoint_url: EndpointUrlInput,
            tags: Type.Optional(Tags),
            input_schema: Type.Optional(JsonDocument),
            output_example: Type.Optional(JsonDocument),
            ...GatewaySettingsInput,
          },
          { additionalProperties: false },
        ),
        response: { 201: Data(Type.Object({ listing: Listing, gateway_endpoint: SigningKey })) },
      },
      config: {
        auth: 'api_key',
        errors: [
          'CHALLENGE_NOT_FOUND',
          'CHALLENGE_EXPIRED',
          'CHALLENGE_ALREADY_USED',
          'POW_INVALID',
          'PRICE_INVALID',
          'CURRENCY_UNSUPPORTED',
          'ENDPOINT_URL_INVALID',
          'ENDPOINT_URL_FORBIDDEN',
          'ENDPOINT_UNRESOLVABLE',
        ],
      },
    },
    async (request, reply) => {
      const body = request.body;
      const { agentId } = request.agent!;
      const price = resolvePrice(body.pricing_model, body.price);
      const endpoint = await acceptEndpointUrl(body.private_endpoint_url, deps);
      const listingId = newId('listing');
      const keyId = newId('signingKey');
      const secret = newSigningSecret();
      const row = await transaction(pool, async (client) => {
        await consumeChallenge(client, body, 'listing', agentId);
        const { rows } = await client.query<ListingRow>(
          `INSERT INTO listings (id, seller_id, name, description, pricing_model, price_atomic, currency, tags,
                                 input_schema, output_example, endpoint_url_enc, endpoint_scheme, endpoint_host,
                                 rate_limit_per_minute, body_limit_bytes, timeout_ms, settlement_policy)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                   coalesce($15, 1048576), coalesce($16, 30000), coalesce($17, 'before_forward'))
           RETURNING ${LISTING_COLUMNS}`,
          [
            listingId,
            agentId,
            cleanRequiredText(body.name, 'body.name', ONE_LINE),
            cleanRequiredText(body.description, 'body.description', MULTILINE),
            body.pricing_model,
            price.atomic.toString(),
            price.currency,
            body.tags ?? [],
            body.input_schema === undefined ? null : JSON.stringify(body.input_schema),
            body.output_example === undefined ? null : JSON.stringify(body.output_example),
            box.seal(endpoint.url, endpointUrlContext(listingId)),
            endpoint.scheme,
            endpoint.host,
            body.rate_limit_per_minute ?? null,
            body.body_limit_bytes ?? null,
            body.timeout_ms ?? null,
            body.settlement_policy ?? null,
          ],
        );
        await client.query('INSERT INTO listing_signing_keys (id, listing_id, secret_enc) VALUES ($1, $2, $3)', [
          keyId,
          listingId,
          box.seal(secret, signingKeyContext(listingId, keyId)),
        ]);
        return rows[0]!;
      });
      await publisher.changed({ listingId });
      return reply
        .code(201)
        .send({ data: { listing: view(row, true), gateway_endpoint: { signing_secret: secret, key_id: keyId } } });
    },
  );

  app.get(
    '/api/v1/listings',
    {
      schema: {
        operationId: 'listListings',
        summary: 'Browse listings: search, filter, sort, paginate',
        tags: ['listings'],
        querystring: Type.Object(
          {
            q: Type.Optional(
              Type.String({ maxLength: 200, description: 'words to search in name, description, tags' }),
            ),
            tag: Type.Optional(Type.String({ maxLength: 32 })),
            pricing_model: Type.Optional(PricingModel),
            seller_id: Type.Optional(AgentIdSchema),
            status: Type.Optional(
              Type.Union([Type.Literal('active'), Type.Literal('paused'), Type.Literal('archived')], {
                description: 'only with your own seller_id; others see active listings',
              }),
            ),
            sort: Type.Optional(
              Type.Union([Type.Literal('score'), Type.Literal('newest'), Type.Literal('price')], { default: 'score' }),
            ),
            ...PageQuery,
          },
          { additionalProperties: false },
        ),
        response: { 200: List(Listing) },
      },
      config: { auth: 'optional', errors: ['VALIDATION_FAILED'] },
    },
    async (request) => {
      const query = request.query;
      const sort: Sort = query.sort ?? 'score';
      const limit = query.limit ?? PAGE_LIMIT_DEFAULT;
      const own = query.seller_id !== undefined && query.seller_id === request.agent?.agentId;
      const where: string[] = [];
      const { params, bind } = sqlParams();
      if (own && query.status) where.push(`status = ${bind(query.status)}`);
      else if (own) where.push(`status <> 'archived'`);
      else where.push(`status = 'active'`);
      if (query.q?.trim()) where.push(`search @@ websearch_to_tsquery('simple', ${bind(query.q)})`);
      if (query.tag) where.push(`${bind(query.tag)} = ANY (tags)`);
      if (query.pricing_model) where.push(`pricing_model = ${bind(query.pricing_model)}`);
      if (query.seller_id) where.push(`seller_id = ${bind(query.seller_id)}`);
      if (query.cursor !== undefined) {
        const position = decodeCursor(query.cursor);
        const spec = SORTS[sort];
        const arity = spec.after.includes('$X2') ? 3 : 2;
        if (!position || position[0] !== sort || position.length !== arity || !spec.valid(position.slice(1))) {
          throw new ApiError('VALIDATION_FAILED', {
            message: 'cursor is not a next_cursor of this sort',
            details: { field: 'querystring.cursor' },
          });
        }
        where.push(spec.after.replace('$X1', bind(position[1])).replace('$X2', () => bind(position[2])));
      }
      const { rows } = await pool.query<ListingRow>(
        `SELECT ${LISTING_COLUMNS}, ${LISTING_SCORE_COLUMN} FROM listings WHERE ${where.join(' AND ')}
          ORDER BY ${SORTS[sort].order} LIMIT ${limit + 1}`,
        params,
      );
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      const next = rows.length > limit && last ? encodeCursor([sort, ...SORTS[sort].position(last)]) : null;
      return { data: page.map((row) => view(row, own)), next_cursor: next };
    },
  );

  app.get(
    '/api/v1/listings/:id',
    {
      schema: {
        operationId: 'getListing',
        summary: 'One listing with its gateway_url',
        tags: ['listings'],
        params: ListingParams,
        response: { 200: Data(Listing) },
      },
      config: { auth: 'optional', errors: ['LISTING_NOT_FOUND'] },
    },
    async (request) => {
      const { rows } = await pool.query<ListingRow>(
        `SELECT ${LISTING_COLUMNS}, ${LISTING_SCORE_COLUMN} FROM listings WHERE id = $1`,
        [request.params.id],
      );
      const row = rows[0];
      if (!row || (row.status === 'archived' && row.seller_id !== request.agent?.agentId)) {
        throw new ApiError('LISTING_NOT_FOUND');
      }
      return { data: view(row, row.seller_id === request.agent?.agentId) };
    },
  );

  app.patch(
    '/api/v1/listings/:id',
    {
      schema: {
        operationId: 'updateListing',
        summary: 'Change your listing: name, description, price, tags, status active|paused',
        tags: ['listings', 'seller'],
        params: ListingParams,
        body: Type.Object(
          {
            name: Type.Optional(Name),
            description: Type.Optional(Description),
            pricing_model: Type.Optional(PricingModel),
            price: Type.Optional(PriceInput),
            status: Type.Optional(Type.Union([Type.Literal('active'), Type.Literal('paused')])),
            tags: Type.Optional(Tags),
            input_schema: Type.Optional(JsonDocument),
            output_example: Type.Optional(JsonDocument),
            ...GatewaySettingsInput,
          },
          { additionalProperties: false, minProperties: 1 },
        ),
        response: { 200: Data(Listing) },
      },
      config: {
        auth: 'api_key',
        errors: [
          'LISTING_NOT_FOUND',
          'LISTING_ARCHIVED',
          'LISTING_PAUSED_BY_OPERATOR',
          'PRICE_INVALID',
          'CURRENCY_UNSUPPORTED',
        ],
      },
    },
    async (request) => {
      const body = request.body;
      const current = await ownListing(request.params.id, request.agent!.agentId);
      if (current.status === 'archived') throw new ApiError('LISTING_ARCHIVED');
      // An operator's pause holds until the operator resumes it (DESIGN §3.7): the agent may re-send 'paused' and edit
      // other fields, but not take its status anywhere else. The UPDATE below repeats the check against a concurrent
      // pause.
      const liftsPause = body.status !== undefined && body.status !== 'paused';
      if (liftsPause && current.operator_paused_at !== null) throw new ApiError('LISTING_PAUSED_BY_OPERATOR');
      const sets: string[] = [];
      const params: unknown[] = [current.id];
      const set = (column: string, value: unknown): void => {
        params.push(value);
        sets.push(`${column} = $${params.length}`);
      };
      if (body.name !== undefined) set('name', cleanRequiredText(body.name, 'body.name', ONE_LINE));
      if (body.description !== undefined)
        set('description', cleanRequiredText(body.description, 'body.description', MULTILINE));
      if (body.status !== undefined) set('status', body.status);
      if (body.tags !== undefined) set('tags', body.tags);
      if (body.input_schema !== undefined) set('input_schema', JSON.stringify(body.input_schema));
      if (body.output_example !== undefined) set('output_example', JSON.stringify(body.output_example));
      if (body.rate_limit_per_minute !== undefined) set('rate_limit_per_minute', body.rate_limit_per_minute);
      if (body.body_limit_bytes !== undefined) set('body_limit_bytes', body.body_limit_bytes);
      if (body.timeout_ms !== undefined) set('timeout_ms', body.timeout_ms);
      if (body.settlement_policy !== undefined) set('settlement_policy', body.settlement_policy);
      if (body.pricing_model !== undefined || body.price !== undefined) {
        const model = body.pricing_model ?? current.pricing_model;
        const keepsPrice = body.price === undefined && model === 'per_call' && current.pricing_model === 'per_call';
        const price = keepsPrice
          ? { atomic: BigInt(current.price_atomic), currency: current.currency }
          : resolvePrice(model, body.price);
        set('pricing_model', model);
        set('price_atomic', price.atomic.toString());
        set('currency', price.currency);
      }
      const { rows } = await pool.query<ListingRow>(
        `UPDATE listings SET ${sets.join(', ')}, updated_at = now() WHERE id = $1 AND status <> 'archived'
           ${liftsPause ? 'AND operator_paused_at IS NULL' : ''}
         RETURNING ${LISTING_COLUMNS}, ${LISTING_SCORE_COLUMN}`,
        params,
      );
      if (!rows[0]) {
        const latest = await ownListing(current.id, current.seller_id);
        throw new ApiError(latest.status === 'archived' ? 'LISTING_ARCHIVED' : 'LISTING_PAUSED_BY_OPERATOR');
      }
      await publisher.changed({ listingId: current.id });
      return { data: view(rows[0], true) };
    },
  );

  // Archiving stays allowed under an operator's pause: it only takes the listing further off sale, never back on.
  app.delete(
    '/api/v1/listings/:id',
    {
      schema: {
        operationId: 'archiveListing',
        summary: 'Archive your listing: it stops answering and leaves the marketplace (history is kept)',
        tags: ['listings', 'seller'],
        params: ListingParams,
        response: { 200: Data(Listing) },
      },
      config: { auth: 'api_key', errors: ['LISTING_NOT_FOUND'] },
    },
    async (request) => {
      const current = await ownListing(request.params.id, request.agent!.agentId);
      const { rows } = await pool.query<ListingRow>(
        `UPDATE listings SET status = 'archived', updated_at = CASE WHEN status = 'archived' THEN updated_at ELSE now() END
          WHERE id = $1 RETURNING ${LISTING_COLUMNS}, ${LISTING_SCORE_COLUMN}`,
        [current.id],
      );
      await publisher.changed({ listingId: current.id });
      return { data: view(rows[0]!, true) };
    },
  );

  endpointRoutes(app, deps, ownListing);
};

const EndpointTestSchema = Type.Object({
  ok: Type.Boolean({ description: 'true when the endpoint answered 2xx' }),
  status: Type.Union([Type.Integer(), Type.Null()]),
  latency_ms: Type.Integer(),
  error: Type.Union([Type.String(), Type.Null()], { description: 'timeout, unreachable or forbidden_address' }),
  tested_at: Timestamp,
  response: Type.Optional(
    Type.Union(
      [
        Type.Object({
          content_type: Type.Union([Type.String(), Type.Null()]),
          body_excerpt: Type.String({
            description: `the first ${ENDPOINT_TEST_EXCERPT_BYTES} bytes of your endpoint's answer, decoded as UTF-8`,
          }),
          truncated: Type.Boolean({ description: 'the answer was longer than the excerpt' }),
        }),
        Type.Null(),
      ],
      { description: 'what your endpoint answered (null when it did not answer); absent in tests stored before it' },
    ),
  ),
});

const KeyStatus = Type.Union([Type.Literal('current'), Type.Literal('previous'), Type.Literal('expired')]);
const EndpointMetadata = Type.Object({
  scheme: Type.String(),
  host: Type.String({ description: 'host[:port]; the path and query are never shown' }),
  updated_at: Timestamp,
  keys: Type.Array(
    Type.Object({
      key_id: Type.String(),
      status: KeyStatus,
      created_at: Timestamp,
      age_seconds: Type.Integer(),
      expires_at: Type.Union([Timestamp, Type.Null()]),
    }),
  ),
  last_test: Type.Union([EndpointTestSchema, Type.Null()]),
});

/** §3.2 endpoint management: safe metadata, URL update, secret rotation. Owner only. */
const endpointRoutes = (app: App, deps: Deps, ownListing: (id: string, agentId: string) => Promise<ListingRow>) => {
  const { config, pool, box, publisher } = deps;
  const metadata = async (listingId: string) => {
    const [listing, keys] = await Promise.all([
      pool.query<{
        endpoint_scheme: string;
        endpoint_host: string;
        endpoint_updated_at: Date;
        endpoint_last_test: EndpointTestResult | null;
      }>('SELECT endpoint_scheme, endpoint_host, endpoint_updated_at, endpoint_last_test FROM listings WHERE id = $1', [
        listingId,
      ]),
      pool.query<{ id: string; created_at: Date; expires_at: Date | null; expired: boolean; age: number }>(
        `SELECT id, created_at, expires_at, coalesce(expires_at <= now(), false) AS expired,
                extract(epoch FROM now() - created_at)::int AS age
           FROM listing_signing_keys WHERE listing_id = $1 ORDER BY created_at DESC, id DESC LIMIT 10`,
        [listingId],
      ),
    ]);
    const row = listing.rows[0]!;
    return {
      scheme: row.endpoint_scheme,
      host: row.endpoint_host,
      updated_at: row.endpoint_updated_at,
      keys: keys.rows.map((k) => ({
        key_id: k.id,
        status: k.expires_at === null ? ('current' as const) : k.expired ? ('expired' as const) : ('previous' as const),
        created_at: k.created_at,
        age_seconds: k.age,
        expires_at: k.expires_at,
      })),
      last_test: row.endpoint_last_test,
    };
  };
  const params = Type.Object({ id: Type.String({ maxLength: 64 }) });

  app.get(
    '/api/v1/listings/:id/endpoint',
    {
      schema: {
        operationId: 'getListingEndpoint',
        summary: 'Safe metadata of your private endpoint: scheme, host, signing key ids and ages',
        tags: ['seller'],
        params,
        response: { 200: Data(EndpointMetadata) },
      },
      config: { auth: 'api_key', errors: ['LISTING_NOT_FOUND'] },
    },
    async (request) => {
      const listing = await ownListing(request.params.id, request.agent!.agentId);
      return { data: await metadata(listing.id) };
    },
  );

  app.put(
    '/api/v1/listings/:id/endpoint',
    {
      schema: {
        operationId: 'updateListingEndpoint',
        summary: 'Point your listing at a new private endpoint URL',
        tags: ['seller'],
        params,
        body: Type.Object({ private_endpoint_url: EndpointUrlInput }, { additionalProperties: false }),
        response: { 200: Data(EndpointMetadata) },
      },
      config: {
        auth: 'api_key',
        errors: [
          'LISTING_NOT_FOUND',
          'LISTING_ARCHIVED',
          'ENDPOINT_URL_INVALID',
          'ENDPOINT_URL_FORBIDDEN',
          'ENDPOINT_UNRESOLVABLE',
        ],
      },
    },
    async (request) => {
      const listing = await ownListing(request.params.id, request.agent!.agentId);
      if (listing.status === 'archived') throw new ApiError('LISTING_ARCHIVED');
      const endpoint = await acceptEndpointUrl(request.body.private_endpoint_url, deps);
      await pool.query(
        `UPDATE listings SET endpoint_url_enc = $2, endpoint_scheme = $3, endpoint_host = $4,
                endpoint_updated_at = now(), updated_at = now() WHERE id = $1`,
        [listing.id, box.seal(endpoint.url, endpointUrlContext(listing.id)), endpoint.scheme, endpoint.host],
      );
      await publisher.changed({ listingId: listing.id });
      return { data: await metadata(listing.id) };
    },
  );

  app.post(
    '/api/v1/listings/:id/endpoint/test',
    {
      schema: {
        operationId: 'testListingEndpoint',
        summary: 'Send a signed test request (X-Crochet-Test: 1) to your private endpoint and report what came back',
        tags: ['seller'],
        params,
        response: { 200: Data(EndpointTestSchema) },
      },
      config: { auth: 'api_key', errors: ['LISTING_NOT_FOUND', 'LISTING_ARCHIVED'] },
    },
    async (request) => {
      const listing = await ownListing(request.params.id, request.agent!.agentId);
      if (listing.status === 'archived') throw new ApiError('LISTING_ARCHIVED');
      const result = await testEndpoint(deps, listing.id, listing.timeout_ms);
      await pool.query('UPDATE listings SET endpoint_last_test = $2 WHERE id = $1', [
        listing.id,
        JSON.stringify(result),
      ]);
      return { data: result };
    },
  );

  app.post(
    '/api/v1/listings/:id/endpoint/rotate-secret',
    {
      schema: {
        operationId: 'rotateListingSecret',
        summary: 'Issue a new signing secret; the previous one stays valid for the overlap window',
        tags: ['seller'],
        params,
        response: {
          200: Data(
            Type.Object({
              signing_secret: Type.String({ description: 'crs_…; returned only here: store it' }),
              key_id: Type.String(),
              previous_key_id: Type.Union([Type.String(), Type.Null()]),
              previous_expires_at: Type.Union([Timestamp, Type.Null()]),
            }),
          ),
        },
      },
      config: { auth: 'api_key', errors: ['LISTING_NOT_FOUND', 'LISTING_ARCHIVED'] },
    },
    async (request) => {
      const listing = await ownListing(request.params.id, request.agent!.agentId);
      if (listing.status === 'archived') throw new ApiError('LISTING_ARCHIVED');
      const keyId = newId('signingKey');
      const secret = newSigningSecret();
      const previous = await transaction(pool, async (client) => {
        await client.query('SELECT 1 FROM listings WHERE id = $1 FOR UPDATE', [listing.id]);
        // Only the key being replaced overlaps with the new one; any older key still in its window ends now.
        await client.query(
          `UPDATE listing_signing_keys SET expires_at = now()
            WHERE listing_id = $1 AND expires_at IS NOT NULL AND expires_at > now()`,
          [listing.id],
        );
        const { rows } = await client.query<{ id: string; expires_at: Date }>(
          `UPDATE listing_signing_keys SET expires_at = now() + make_interval(secs => $2)
            WHERE listing_id = $1 AND expires_at IS NULL RETURNING id, expires_at`,
          [listing.id, config.secretOverlapSeconds],
        );
        await client.query('INSERT INTO listing_signing_keys (id, listing_id, secret_enc) VALUES ($1, $2, $3)', [
          keyId,
          listing.id,
          box.seal(secret, signingKeyContext(listing.id, keyId)),
        ]);
        return rows[0];
      });
      await publisher.changed({ listingId: listing.id });
      return {
        data: {
          signing_secret: secret,
          key_id: keyId,
          previous_key_id: previous?.id ?? null,
          previous_expires_at: previous?.expires_at ?? null,
        },
      };
    },
  );
};
