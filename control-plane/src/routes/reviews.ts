import { ApiError, encodeCursor, idPattern, isId, newId, PAGE_LIMIT_DEFAULT, ulidTimeMs } from '@crochet/protocol';
import { Type } from 'typebox';
import type { App, Deps } from '../app.js';
import { isUniqueViolation, sqlParams, transaction } from '../db.js';
import { renderCrochetScoreDoc } from '../docs/render.js';
import {
  cleanComment,
  mayReview,
  REVIEW_COLUMNS,
  REVIEW_COMMENT_MAX,
  REVIEWED_CALL_SQL,
  type ReviewedCall,
  type ReviewRow,
  reviewView,
} from '../reviews.js';
import { AgentIdSchema, cursorId, Data, List, PageQuery, Timestamp } from '../schemas.js';

const ReviewSchema = Type.Object({
  id: Type.String({ description: 'rev_… id' }),
  rating: Type.Integer({ minimum: 1, maximum: 5 }),
  comment: Type.Union([Type.String(), Type.Null()], {
    description: 'plain text (never HTML): escape it wherever you display it',
  }),
  reviewer_id: AgentIdSchema,
  gateway_request_id: Type.String({ description: 'the paid call this review is about' }),
  created_at: Timestamp,
});

const Params = Type.Object({ id: Type.String({ maxLength: 64 }) });

/** §3.6: reviews of listings by the buyers of their paid calls, and the published Crochet Score formula. */
export const reviewRoutes = (app: App, { pool, config }: Deps): void => {
  /** The listing as reviews see it: archived listings exist only for their seller, as in GET /listings/:id. */
  const visibleListing = async (id: string, agentId: string | undefined): Promise<{ seller_id: string }> => {
    const { rows } = await pool.query<{ seller_id: string; status: string }>(
      'SELECT seller_id, status FROM listings WHERE id = $1',
      [id],
    );
    const listing = rows[0];
    if (!listing || (listing.status === 'archived' && listing.seller_id !== agentId)) {
      throw new ApiError('LISTING_NOT_FOUND');
    }
    return listing;
  };

  app.post(
    '/api/v1/listings/:id/reviews',
    {
      schema: {
        operationId: 'createReview',
        summary: 'Review a listing: rate one of your paid calls to it that completed (once per call)',
        description:
          'Only the buyer of a paid gateway request to this listing that completed (the seller answered 2xx and ' +
          'the payment settled) may review it, once per gateway request. The comment is stored as plain text: ' +
          'control characters are removed (line breaks are kept) and it is trimmed.',
        tags: ['listings', 'trust'],
        params: Params,
        body: Type.Object(
          {
            gateway_request_id: Type.String({
              pattern: idPattern('gatewayRequest'),
              description: 'gr_… id of your paid call to this listing (X-Crochet-Request-Id)',
            }),
            rating: Type.Integer({ minimum: 1, maximum: 5, description: '1 (worst) to 5 (best)' }),
            comment: Type.Optional(Type.String({ maxLength: REVIEW_COMMENT_MAX, description: 'plain text' })),
          },
          { additionalProperties: false },
        ),
        response: { 201: Data(ReviewSchema) },
      },
      config: {
        auth: 'api_key',
        errors: ['LISTING_NOT_FOUND', 'REVIEW_SELF_NOT_ALLOWED', 'REVIEW_NOT_ALLOWED', 'REVIEW_ALREADY_EXISTS'],
      },
    },
    async (request, reply) => {
      const { agentId } = request.agent!;
      const listingId = request.params.id;
      const body = request.body;
      const listing = await visibleListing(listingId, agentId);
      if (listing.seller_id === agentId) throw new ApiError('REVIEW_SELF_NOT_ALLOWED');
      const { rows: calls } = await pool.query<ReviewedCall>(REVIEWED_CALL_SQL, [body.gateway_request_id]);
      const days = config.historyRetentionDays;
      const pastHistory = days > 0 && ulidTimeMs(body.gateway_request_id.slice(3)) < Date.now() - days * 86_400_000;
      const decision = mayReview(calls[0], listingId, agentId, pastHistory ? days : null);
      if (!decision.ok) {
        throw new ApiError('REVIEW_NOT_ALLOWED', { message: `You cannot review this call: ${decision.reason}` });
      }
      try {
        const row = await transaction(pool, async (client) => {
          const { rows } = await client.query<ReviewRow>(
            `INSERT INTO reviews (id, listing_id, reviewer_id, gateway_request_id, rating, comment)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${REVIEW_COLUMNS}`,
            [newId('review'), listingId, agentId, body.gateway_request_id, body.rating, cleanComment(body.comment)],
          );
          await client.query('UPDATE listings SET review_count = review_count + 1 WHERE id = $1', [listingId]);
          return rows[0]!;
        });
        return reply.code(201).send({ data: reviewView(row) });
      } catch (error) {
        if (isUniqueViolation(error, 'reviews_gateway_request_key')) throw new ApiError('REVIEW_ALREADY_EXISTS');
        throw error;
      }
    },
  );

  app.get(
    '/api/v1/listings/:id/reviews',
    {
      schema: {
        operationId: 'listReviews',
        summary: "A listing's reviews, newest first",
        tags: ['listings', 'trust'],
        params: Params,
        querystring: Type.Object({ ...PageQuery }, { additionalProperties: false }),
        response: { 200: List(ReviewSchema) },
      },
      config: { auth: 'optional', errors: ['LISTING_NOT_FOUND'] },
    },
    async (request) => {
      const listingId = request.params.id;
      await visibleListing(listingId, request.agent?.agentId);
      const limit = request.query.limit ?? PAGE_LIMIT_DEFAULT;
      const { params, bind } = sqlParams();
      const where = [`listing_id = ${bind(listingId)}`];
      const after = cursorId(request.query.cursor, (id) => isId('review', id));
      if (after !== null) where.push(`id < ${bind(after)}`);
      const { rows } = await pool.query<ReviewRow>(
        `SELECT ${REVIEW_COLUMNS} FROM reviews WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT ${limit + 1}`,
        params,
      );
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return { data: page.map(reviewView), next_cursor: rows.length > limit && last ? encodeCursor([last.id]) : null };
    },
  );

  // The formula and its constants, as published (rendered from the constants the job computes with).
  const scoreDoc = renderCrochetScoreDoc({ baseUrl: config.publicBaseUrl });
  app.get('/docs/crochet-score', { config: { documented: false } }, async (_request, reply) =>
    reply.type('text/markdown; charset=utf-8').header('cache-control', 'public, max-age=300').send(scoreDoc),
  );
};
