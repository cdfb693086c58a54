import { decodeReceipt } from '@crochet/plugins';
import {
  ApiError,
  type Currency,
  encodeCursor,
  fromAtomic,
  type GatewayStatus,
  isId,
  PAGE_LIMIT_DEFAULT,
} from '@crochet/protocol';
import { type Static, type TSchema, Type } from 'typebox';
import type { App, Deps } from '../app.js';
import { sqlParams } from '../db.js';
import { AgentIdSchema, cursorId, Data, List, ListingIdSchema, PageQuery, Price, Timestamp } from '../schemas.js';

interface GatewayRequestRow {
  id: string;
  listing_id: string;
  seller_id: string | null;
  buyer_id: string | null;
  method: string | null;
  path: string | null;
  status: GatewayStatus;
  http_status: number | null;
  error_code: string | null;
  latency_ms: number | null;
  upstream_latency_ms: number | null;
  bytes_in: string | null; // bigint columns arrive as strings
  bytes_out: string | null;
  price_atomic: string | null;
  currency: string | null;
  payment: unknown;
  created_at: Date;
  completed_at: Date | null;
  refund_transfer: { id: string; status: string; tx: string | null } | null;
}

const COLUMNS =
  'id, listing_id, seller_id, buyer_id, method, path, status, http_status, error_code, latency_ms, ' +
  'upstream_latency_ms, bytes_in, bytes_out, price_atomic, currency, payment, created_at, completed_at, ' +
  // The refund sent on chain for this call, if any: the latest (one that failed on chain is followed by another).
  "(SELECT json_build_object('id', t.id, 'status', t.status, 'tx', t.tx) FROM money_transfers t " +
  'WHERE t.gateway_request_id = gateway_requests.id ORDER BY t.created_at DESC, t.id DESC LIMIT 1) AS refund_transfer';

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

const GatewayStatusSchema = Type.Union(
  [
    Type.Literal('forwarded'),
    Type.Literal('completed'),
    Type.Literal('upstream_error'),
    Type.Literal('client_aborted'),
    Type.Literal('refused'),
    Type.Literal('payment_required'),
    Type.Literal('payment_pending'),
  ],
  {
    description:
      'forwarded until the request finished; then its final state: completed (the seller answered), upstream_error ' +
      '(the seller failed), client_aborted (you went away before the answer was out), refused (stopped before ' +
      'forwarding), payment_required (answered 402 with payment requirements) or payment_pending (answered ' +
      '402/503 telling you to retry with the same proof)',
  },
);
// Fails to compile when the protocol's GatewayStatus gains or loses a value this schema does not.
const _statusesMatch: [GatewayStatus, Static<typeof GatewayStatusSchema>] extends [
  Static<typeof GatewayStatusSchema>,
  GatewayStatus,
]
  ? true
  : never = true;

const GatewayRequest = Type.Object({
  id: Type.String({ description: 'gr_… id of the gateway call' }),
  listing_id: ListingIdSchema,
  buyer_id: Nullable(AgentIdSchema),
  seller_id: Nullable(AgentIdSchema),
  method: Nullable(Type.String()),
  path: Nullable(Type.String()),
  status: GatewayStatusSchema,
  http_status: Nullable(Type.Integer({ description: 'status the buyer received; null while forwarded' })),
  error_code: Nullable(Type.String({ description: 'registry code when the gateway answered instead of the seller' })),
  latency_ms: Nullable(Type.Integer()),
  upstream_latency_ms: Nullable(Type.Integer({ description: 'time the seller took' })),
  bytes_in: Nullable(Type.Integer()),
  bytes_out: Nullable(Type.Integer()),
  price: Nullable(Price),
  payment: Nullable(Type.Unknown({ description: 'the payment that paid this request, when it was paid' })),
  refund: Nullable(
    Type.Union([Type.Literal('refund_due'), Type.Literal('refunded')], {
      description:
        'refund_due: the payment moved but the seller did not serve the call, so its price is owed back to you ' +
        '(reversed in the ledger) until the refund is sent; refunded: the refund was sent back on chain and is final',
    }),
  ),
  refund_transfer: Nullable(
    Type.Object(
      {
        id: Type.String({ description: 'rf_… (GET /api/v1/payouts/:id)' }),
        status: Type.String({ description: 'pending, broadcast, confirmed or failed' }),
        tx: Nullable(Type.String()),
      },
      { description: 'the refund sent on chain to the wallet that paid, once one is on its way' },
    ),
  ),
  created_at: Timestamp,
  completed_at: Nullable(Timestamp),
});

/** The refund state of a paid request: due from its payment outcome, refunded once the transfer back is final. */
const refundOf = (row: GatewayRequestRow): 'refund_due' | 'refunded' | null => {
  const outcome = (row.payment as { outcome?: { status?: unknown } } | null)?.outcome?.status;
  if (outcome !== 'refund_due') return null;
  return row.refund_transfer?.status === 'confirmed' ? 'refunded' : 'refund_due';
};

const view = (row: GatewayRequestRow) => ({
  id: row.id,
  listing_id: row.listing_id,
  buyer_id: row.buyer_id,
  seller_id: row.seller_id,
  method: row.method,
  path: row.path,
  status: row.status,
  http_status: row.http_status,
  error_code: row.error_code,
  latency_ms: row.latency_ms,
  upstream_latency_ms: row.upstream_latency_ms,
  bytes_in: row.bytes_in === null ? null : Number(row.bytes_in),
  bytes_out: row.bytes_out === null ? null : Number(row.bytes_out),
  // The consumer accepts only known currencies, so the cast holds for every row it wrote.
  price:
    row.price_atomic === null || row.currency === null
      ? null
      : {
          amount: fromAtomic(BigInt(row.price_atomic), row.currency as Currency),
          currency: row.currency,
          amount_atomic: row.price_atomic,
        },
  payment: row.payment ?? null,
  refund: refundOf(row),
  refund_transfer: row.refund_transfer
    ? { id: row.refund_transfer.id, status: row.refund_transfer.status, tx: row.refund_transfer.tx }
    : null,
  created_at: row.created_at,
  completed_at: row.completed_at,
});

/**
 * §3.5: the history of gateway calls, as the buyer who made them or the seller who served them — enough for a
 * buyer to find out what happened to a call whose connection dropped. To anyone else a request does not exist.
 */
export const gatewayRequestRoutes = (app: App, { pool, config }: Deps): void => {
  app.get(
    '/api/v1/gateway-requests',
    {
      schema: {
        operationId: 'listGatewayRequests',
        summary: 'Your gateway requests, newest first: as buyer (default) or as seller',
        tags: ['gateway'],
        querystring: Type.Object(
          {
            role: Type.Optional(
              Type.Union([Type.Literal('buyer'), Type.Literal('seller')], {
                default: 'buyer',
                description: 'buyer: calls you made; seller: calls to your listings',
              }),
            ),
            listing_id: Type.Optional(ListingIdSchema),
            status: Type.Optional(GatewayStatusSchema),
            payment_proof: Type.Optional(
              Type.String({ minLength: 1, maxLength: 2048, description: 'the proof a payment was made with' }),
            ),
            ...PageQuery,
          },
          { additionalProperties: false },
        ),
        response: { 200: List(GatewayRequest) },
      },
      config: { auth: 'api_key', errors: ['VALIDATION_FAILED'] },
    },
    async (request) => {
      const query = request.query;
      const limit = query.limit ?? PAGE_LIMIT_DEFAULT;
      const { params, bind } = sqlParams();
      // Each role has its own (agent, id DESC) index, which serves every filter below and the keyset.
      const where = [`${query.role === 'seller' ? 'seller_id' : 'buyer_id'} = ${bind(request.agent!.agentId)}`];
      if (query.listing_id) where.push(`listing_id = ${bind(query.listing_id)}`);
      if (query.status) where.push(`status = ${bind(query.status)}`);
      if (query.payment_proof) {
        // What a buyer holds: a transaction id, a Relay request id, or a proof id as the gateway names it; for x402,
        // the settlement transaction of the PAYMENT-RESPONSE (known only once settled: in the outcome).
        const proof = bind(query.payment_proof);
        where.push(
          `(payment -> 'proof_ids' ? ${proof} OR payment ->> 'tx' = ${proof} OR payment ->> 'tx' = lower(${proof})` +
            ` OR payment -> 'proof_ids' ? ('relay:' || lower(${proof}))` +
            ` OR payment -> 'outcome' ->> 'tx' = ${proof} OR payment -> 'outcome' ->> 'tx' = lower(${proof}))`,
        );
      }
      const after = cursorId(query.cursor, (id) => isId('gatewayRequest', id));
      if (after !== null) where.push(`id < ${bind(after)}`);
      const { rows } = await pool.query<GatewayRequestRow>(
        `SELECT ${COLUMNS} FROM gateway_requests WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT ${limit + 1}`,
        params,
      );
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return { data: page.map(view), next_cursor: rows.length > limit && last ? encodeCursor([last.id]) : null };
    },
  );

  app.get(
    '/api/v1/gateway-requests/:id',
    {
      schema: {
        operationId: 'getGatewayRequest',
        summary: 'One of your gateway requests (as its buyer or its seller): status, timing, price, payment',
        tags: ['gateway'],
        params: Type.Object({ id: Type.String({ maxLength: 64 }) }),
        response: { 200: Data(GatewayRequest) },
      },
      config: { auth: 'api_key', errors: ['GATEWAY_REQUEST_NOT_FOUND'] },
    },
    async (request) => {
      const { agentId } = request.agent!;
      const { rows } = await pool.query<GatewayRequestRow>(
        `SELECT ${COLUMNS} FROM gateway_requests WHERE id = $1 AND (buyer_id = $2 OR seller_id = $2)`,
        [request.params.id, agentId],
      );
      if (!rows[0]) throw new ApiError('GATEWAY_REQUEST_NOT_FOUND');
      return { data: view(rows[0]) };
    },
  );
  app.get(
    '/api/v1/gateway-requests/:id/receipt',
    {
      schema: {
        operationId: 'getGatewayRequestReceipt',
        summary: 'The full receipt of one of your paid gateway requests: a JWS to verify with /.well-known/jwks.json',
        description:
          "The receipt the gateway signed once the seller's answer had streamed to its end (the same JWS as the " +
          'X-Crochet-Receipt trailer): request id, listing, amount, asset, network, payment proof, request and ' +
          'response body hashes, status. `claims` is its payload decoded for reading; trust it only after verifying ' +
          'the JWS against the keys at `jwks_url`.',
        tags: ['gateway'],
        params: Type.Object({ id: Type.String({ maxLength: 64 }) }),
        response: {
          200: Data(
            Type.Object({
              receipt: Type.String({ description: 'compact JWS (EdDSA, Ed25519), typ crochet-receipt+jwt' }),
              claims: Type.Unknown({ description: 'the JWS payload, decoded (not verified)' }),
              jwks_url: Type.String({ description: 'the keys that verify it' }),
            }),
          ),
        },
      },
      config: { auth: 'api_key', errors: ['GATEWAY_REQUEST_NOT_FOUND', 'RECEIPT_NOT_AVAILABLE'] },
    },
    async (request) => {
      const { agentId } = request.agent!;
      const { rows } = await pool.query<{ receipt: string | null }>(
        'SELECT receipt FROM gateway_requests WHERE id = $1 AND (buyer_id = $2 OR seller_id = $2)',
        [request.params.id, agentId],
      );
      if (!rows[0]) throw new ApiError('GATEWAY_REQUEST_NOT_FOUND');
      const { receipt } = rows[0];
      // Free calls have none; a paid one gets it with its completion event, a moment after the answer finished.
      if (receipt === null) throw new ApiError('RECEIPT_NOT_AVAILABLE');
      return {
        data: { receipt, claims: decodeReceipt(receipt), jwks_url: `${config.publicBaseUrl}/.well-known/jwks.json` },
      };
    },
  );
};
