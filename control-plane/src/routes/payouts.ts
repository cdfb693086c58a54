import { ApiError, encodeCursor, fromAtomic, isId, PAGE_LIMIT_DEFAULT, toAtomic } from '@crochet/protocol';
import { type TSchema, Type } from 'typebox';
import type { App, Deps } from '../app.js';
import { sqlParams } from '../db.js';
import {
  chainOf,
  createPayout,
  payableAtomic,
  TRANSFER_COLUMNS,
  TRANSFER_CURRENCY,
  type TransferRow,
  transferView,
} from '../payouts/payouts.js';
import { cursorId, Data, List, PageQuery, Timestamp } from '../schemas.js';

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

const TransferView = Type.Object({
  id: Type.String({ description: 'po_… (a payout to you as seller) or rf_… (a refund to you as buyer)' }),
  kind: Type.Union([Type.Literal('payout'), Type.Literal('refund')]),
  status: Type.Union(
    [Type.Literal('pending'), Type.Literal('broadcast'), Type.Literal('confirmed'), Type.Literal('failed')],
    {
      description:
        'pending: waiting to be sent; broadcast: sent, not final on chain yet; confirmed: final on chain and booked ' +
        'in your ledger; failed: nothing was sent (error says why) — a payout’s amount is payable again',
    },
  ),
  amount: Type.String({ description: 'decimal USDC, e.g. "12.5"' }),
  amount_atomic: Type.String({ description: 'the same in atomic units (6 decimals)' }),
  currency: Type.String(),
  network: Type.String({ description: 'CAIP-2 network it is sent on' }),
  to: Type.String({ description: 'the wallet it is sent to' }),
  tx: Nullable(Type.String({ description: 'the transaction id (Solana signature, EVM hash), once signed' })),
  gateway_request_id: Nullable(Type.String({ description: 'a refund: the gr_… call it refunds' })),
  requested_by: Type.Union([Type.Literal('api'), Type.Literal('auto'), Type.Literal('refund')], {
    description: 'api: asked with POST /api/v1/payouts; auto: your automatic payout threshold; refund: a refund',
  }),
  error: Nullable(Type.String()),
  created_at: Timestamp,
  confirmed_at: Nullable(Timestamp),
});

const AutoPayout = Type.Object({
  network: Nullable(Type.String({ description: 'CAIP-2 network automatic payouts go out on; null: off' })),
  threshold: Nullable(Type.String({ description: 'decimal USDC: a payout starts once your payable reaches it' })),
  payable: Type.String({ description: 'what is payable to you now (decimal USDC), less payouts on their way' }),
});

const DecimalAmount = Type.String({
  maxLength: 40,
  description: 'decimal USDC, e.g. "12.5" (at most 6 decimals)',
});

const amountOrThrow = (amount: string, minimumAtomic: bigint): bigint => {
  const atomic = toAtomic(amount, TRANSFER_CURRENCY);
  if (atomic === null || atomic <= 0n) throw new ApiError('PAYOUT_AMOUNT_INVALID', { details: { amount } });
  // A payout to a fresh Solana wallet makes its token account at the treasury's cost: smaller ones cost more than they pay.
  if (atomic < minimumAtomic) {
    const minimum = fromAtomic(minimumAtomic, TRANSFER_CURRENCY);
    throw new ApiError('PAYOUT_AMOUNT_INVALID', {
      message: `The smallest payout (and automatic-payout threshold) is ${minimum} USDC.`,
      details: { amount, minimum },
    });
  }
  return atomic;
};

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/**
 * §3.9: sellers are paid out on chain, and see their payouts (and, as buyers, the refunds sent to them). Sending is
 * the transfers job's (payouts/transfers.ts): this answers at once with the payout pending, and the job sends it.
 */
export const payoutRoutes = (app: App, { pool, money, config }: Deps): void => {
  const treasuries = money?.treasuries ?? new Map();
  const minimum = config.payoutMinimumAtomic;

  app.post(
    '/api/v1/payouts',
    {
      schema: {
        operationId: 'createPayout',
        summary: 'Be paid out your payable balance (or part of it) in USDC, to a verified wallet of yours',
        description:
          'Pays what you earned as a seller (GET /api/v1/ledger/balances: payable) to your verified wallet on the ' +
          'chain of `network` (POST /api/v1/me/wallets adds one), from the marketplace’s treasury. Answers at once ' +
          'with the payout `pending`; it is sent within seconds and becomes `confirmed` (booked in your ledger: ' +
          'seller_payout / payout_sent) once final on chain — GET /api/v1/payouts/:id. Leave `amount` out to be ' +
          'paid everything payable. Send an `Idempotency-Key` header to make retries safe: the same key answers the ' +
          'same payout again (200) instead of a second one. Never pays more than is payable, also when asked many ' +
          'times at once.',
        tags: ['payouts', 'seller'],
        headers: Type.Object({
          'idempotency-key': Type.Optional(
            Type.String({ maxLength: 255, description: 'any unique string (1–255 printable ASCII characters)' }),
          ),
        }),
        body: Type.Object(
          {
            network: Type.String({ maxLength: 64, description: 'CAIP-2 network, e.g. solana:… or eip155:8453' }),
            amount: Type.Optional(DecimalAmount),
            to: Type.Optional(
              Type.String({
                maxLength: 100,
                description: 'one of your verified wallets; default: the latest verified',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 201: Data(TransferView), 200: Data(TransferView) },
      },
      config: {
        auth: 'api_key',
        errors: [
          'VALIDATION_FAILED',
          'PAYOUT_NETWORK_UNSUPPORTED',
          'PAYOUT_AMOUNT_INVALID',
          'WALLET_ADDRESS_INVALID',
          'PAYOUT_WALLET_REQUIRED',
          'NOTHING_TO_PAY_OUT',
          'PAYOUT_EXCEEDS_PAYABLE',
          'IDEMPOTENCY_KEY_REUSED',
        ],
      },
    },
    async (request, reply) => {
      const key = request.headers['idempotency-key'];
      if (key !== undefined && !IDEMPOTENCY_KEY.test(key)) {
        throw new ApiError('VALIDATION_FAILED', {
          message: 'Idempotency-Key must be 1–255 printable ASCII characters',
          details: { field: 'headers.idempotency-key' },
        });
      }
      const { transfer, created } = await createPayout(pool, treasuries, {
        ownerId: request.agent!.agentId,
        network: request.body.network,
        amountAtomic: request.body.amount === undefined ? null : amountOrThrow(request.body.amount, minimum),
        to: request.body.to ?? null,
        idempotencyKey: key ?? null,
        requestedBy: 'api',
        minimumAtomic: minimum,
      });
      if (created) {
        request.log.info(
          { payout: transfer.id, amount_atomic: transfer.amount_atomic, network: transfer.network },
          'payout requested',
        );
        money?.kick();
      }
      return reply.code(created ? 201 : 200).send({ data: transferView(transfer) });
    },
  );

  app.get(
    '/api/v1/payouts',
    {
      schema: {
        operationId: 'listPayouts',
        summary: 'Your payouts (as seller) and the refunds sent to you (as buyer), newest first',
        tags: ['payouts', 'seller'],
        querystring: Type.Object(
          {
            kind: Type.Optional(Type.Union([Type.Literal('payout'), Type.Literal('refund')])),
            status: Type.Optional(
              Type.Union([
                Type.Literal('pending'),
                Type.Literal('broadcast'),
                Type.Literal('confirmed'),
                Type.Literal('failed'),
              ]),
            ),
            ...PageQuery,
          },
          { additionalProperties: false },
        ),
        response: { 200: List(TransferView) },
      },
      config: { auth: 'api_key', errors: ['VALIDATION_FAILED'] },
    },
    async (request) => {
      const query = request.query;
      const limit = query.limit ?? PAGE_LIMIT_DEFAULT;
      const { params, bind } = sqlParams();
      const where = [`owner_id = ${bind(request.agent!.agentId)}`];
      if (query.kind) where.push(`kind = ${bind(query.kind)}`);
      if (query.status) where.push(`status = ${bind(query.status)}`);
      const after = cursorId(query.cursor, (id) => isId('payout', id) || isId('refund', id));
      // Ids are ULIDs behind a prefix: ordered by the ULID, newest first, whatever the kind.
      if (after !== null) where.push(`substr(id, strpos(id, '_') + 1) < substr(${bind(after)}, 4)`);
      const { rows } = await pool.query<TransferRow>(
        `SELECT ${TRANSFER_COLUMNS} FROM money_transfers WHERE ${where.join(' AND ')}
          ORDER BY substr(id, strpos(id, '_') + 1) DESC LIMIT ${limit + 1}`,
        params,
      );
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      return {
        data: page.map(transferView),
        next_cursor: rows.length > limit && last ? encodeCursor([last.id]) : null,
      };
    },
  );

  app.get(
    '/api/v1/payouts/:id',
    {
      schema: {
        operationId: 'getPayout',
        summary: 'One of your payouts or refunds',
        tags: ['payouts', 'seller'],
        params: Type.Object({ id: Type.String({ maxLength: 64, description: 'po_… or rf_…' }) }),
        response: { 200: Data(TransferView) },
      },
      config: { auth: 'api_key', errors: ['PAYOUT_NOT_FOUND'] },
    },
    async (request) => {
      const { rows } = await pool.query<TransferRow>(
        `SELECT ${TRANSFER_COLUMNS} FROM money_transfers WHERE id = $1 AND owner_id = $2`,
        [request.params.id, request.agent!.agentId],
      );
      if (!rows[0]) throw new ApiError('PAYOUT_NOT_FOUND');
      return { data: transferView(rows[0]) };
    },
  );

  const autoPayoutView = async (agentId: string) => {
    const [{ rows }, payable] = await Promise.all([
      pool.query<{ payout_network: string | null; payout_threshold_atomic: string | null }>(
        'SELECT payout_network, payout_threshold_atomic::text FROM agents WHERE id = $1',
        [agentId],
      ),
      payableAtomic(pool, agentId),
    ]);
    const row = rows[0];
    return {
      network: row?.payout_network ?? null,
      threshold:
        row?.payout_threshold_atomic == null
          ? null
          : fromAtomic(BigInt(row.payout_threshold_atomic), TRANSFER_CURRENCY),
      payable: fromAtomic(payable > 0n ? payable : 0n, TRANSFER_CURRENCY),
    };
  };

  app.get(
    '/api/v1/me/auto-payout',
    {
      schema: {
        operationId: 'getAutoPayout',
        summary: 'Your automatic payout setting, and what is payable to you now',
        tags: ['payouts', 'seller'],
        response: { 200: Data(AutoPayout) },
      },
      config: { auth: 'api_key', errors: [] },
    },
    async (request) => ({ data: await autoPayoutView(request.agent!.agentId) }),
  );

  app.put(
    '/api/v1/me/auto-payout',
    {
      schema: {
        operationId: 'setAutoPayout',
        summary: 'Be paid out automatically whenever your payable balance reaches a threshold',
        description:
          'Whenever what is payable to you reaches `threshold` (and no payout is on its way), a payout of all of it ' +
          'starts on `network`, to your latest verified wallet of that chain — as POST /api/v1/payouts would. ' +
          'DELETE turns it off.',
        tags: ['payouts', 'seller'],
        body: Type.Object(
          {
            network: Type.String({ maxLength: 64, description: 'CAIP-2 network' }),
            threshold: DecimalAmount,
          },
          { additionalProperties: false },
        ),
        response: { 200: Data(AutoPayout) },
      },
      config: {
        auth: 'api_key',
        errors: ['VALIDATION_FAILED', 'PAYOUT_NETWORK_UNSUPPORTED', 'PAYOUT_AMOUNT_INVALID', 'PAYOUT_WALLET_REQUIRED'],
      },
    },
    async (request) => {
      const { agentId } = request.agent!;
      const { network } = request.body;
      const chain = chainOf(network);
      if (!treasuries.has(network) || !chain) {
        throw new ApiError('PAYOUT_NETWORK_UNSUPPORTED', {
          message: `This gateway does not pay out on ${network}.`,
          details: { networks: [...treasuries.keys()] },
        });
      }
      const threshold = amountOrThrow(request.body.threshold, minimum);
      const { rows } = await pool.query(
        'SELECT 1 FROM wallets WHERE agent_id = $1 AND chain = $2 AND verified_at IS NOT NULL LIMIT 1',
        [agentId, chain],
      );
      if (rows.length === 0) throw new ApiError('PAYOUT_WALLET_REQUIRED');
      await pool.query('UPDATE agents SET payout_network = $2, payout_threshold_atomic = $3 WHERE id = $1', [
        agentId,
        network,
        threshold.toString(),
      ]);
      money?.kick();
      return { data: await autoPayoutView(agentId) };
    },
  );

  app.delete(
    '/api/v1/me/auto-payout',
    {
      schema: {
        operationId: 'deleteAutoPayout',
        summary: 'Stop automatic payouts (payouts on their way still go out)',
        tags: ['payouts', 'seller'],
        response: { 200: Data(AutoPayout) },
      },
      config: { auth: 'api_key', errors: [] },
    },
    async (request) => {
      const { agentId } = request.agent!;
      await pool.query('UPDATE agents SET payout_network = NULL, payout_threshold_atomic = NULL WHERE id = $1', [
        agentId,
      ]);
      return { data: await autoPayoutView(agentId) };
    },
  );
};
