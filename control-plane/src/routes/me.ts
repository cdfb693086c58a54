import { ApiError, fromAtomic, redisKeys, toAtomic } from '@crochet/protocol';
import { Type } from 'typebox';
import { agentView, createKey, getAgent, keyView, listKeys, listWallets, walletView } from '../accounts.js';
import type { App, Deps } from '../app.js';
import { transaction } from '../db.js';
import { operatorClaimOf } from '../operators/claims.js';
import { agentSpend } from '../operators/overview.js';
import { Agent, Data, KeyIdSchema, KeyView, Timestamp, WalletView } from '../schemas.js';
import { cleanText } from '../text.js';

const bigMax = (a: bigint, b: bigint): bigint => (a > b ? a : b);

/** §3.1: the calling agent and its keys. */
export const meRoutes = (app: App, { config, pool, publisher, redis }: Deps): void => {
  const counters = { redis, keys: redisKeys(config.redisPrefix) };
  app.get(
    '/api/v1/me',
    {
      schema: {
        operationId: 'getMe',
        summary: "The calling agent, its keys (prefixes only), wallets, operator claim, today's spend and the fee",
        tags: ['accounts'],
        response: {
          200: Data(
            Type.Object({
              agent: Agent,
              current_key_id: KeyIdSchema,
              keys: Type.Array(KeyView),
              wallets: Type.Array(WalletView, { description: 'also at GET /api/v1/me/wallets' }),
              operator_claim: Type.Union(
                [
                  Type.Object({ operator_id: Type.String({ description: 'op_… id' }), claimed_at: Timestamp }),
                  Type.Null(),
                ],
                { description: 'the human operator overseeing you (POST /api/v1/me/claim), or null' },
              ),
              spend: Type.Object({
                currency: Type.Literal('USDC'),
                spent_today: Type.String({
                  description: 'USDC you spent on paid calls since 00:00 UTC, as your operator’s daily cap counts it',
                }),
                daily_spend_cap: Type.Union([Type.String(), Type.Null()], {
                  description:
                    'the most your operator lets you spend per UTC day (USDC); null: no cap. Past it: 402 SPEND_CAP_EXCEEDED',
                }),
                remaining_today: Type.Union([Type.String(), Type.Null()], {
                  description: 'daily_spend_cap − spent_today (never below 0); null: no cap',
                }),
                resets_at: Type.String({ format: 'date-time', description: 'the next 00:00 UTC' }),
              }),
              fee_bps: Type.Integer({
                description:
                  'the marketplace fee in basis points on your sales (a listing may carry its own fee_bps): ' +
                  'seller credit = price − floor(price × fee_bps / 10000); buyers pay the listed price',
              }),
            }),
          ),
        },
      },
      config: { auth: 'api_key' },
    },
    async (request) => {
      const { agentId, keyId } = request.agent!;
      const [agent, keys, wallets, claim, spend] = await Promise.all([
        getAgent(pool, agentId),
        listKeys(pool, agentId),
        listWallets(pool, agentId),
        operatorClaimOf(pool, agentId),
        agentSpend(pool, agentId, counters),
      ]);
      const now = new Date();
      const remaining =
        spend.daily_spend_cap === null
          ? null
          : fromAtomic(
              bigMax(0n, toAtomic(spend.daily_spend_cap, 'USDC')! - toAtomic(spend.spent_today, 'USDC')!),
              'USDC',
            );
      return {
        data: {
          agent: agentView(agent!),
          current_key_id: keyId,
          keys: keys.map(keyView),
          wallets: wallets.map(walletView),
          operator_claim: claim,
          spend: {
            currency: 'USDC' as const,
            ...spend,
            remaining_today: remaining,
            resets_at: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1)).toISOString(),
          },
          fee_bps: config.feeBps,
        },
      };
    },
  );

  app.get(
    '/api/v1/keys',
    {
      schema: {
        operationId: 'listKeys',
        summary: 'Your API keys (prefixes only; keys are shown once, at creation)',
        tags: ['accounts'],
        response: { 200: Data(Type.Array(KeyView)) },
      },
      config: { auth: 'api_key' },
    },
    async (request) => ({ data: (await listKeys(pool, request.agent!.agentId)).map(keyView) }),
  );

  app.post(
    '/api/v1/keys',
    {
      schema: {
        operationId: 'createKey',
        summary: 'Create another API key (shown once)',
        tags: ['accounts'],
        body: Type.Object({ name: Type.Optional(Type.String({ maxLength: 100 })) }, { additionalProperties: false }),
        response: {
          201: Data(Type.Object({ key: KeyView, api_key: Type.String(), authorization_header: Type.String() })),
        },
      },
      config: { auth: 'api_key', errors: ['KEY_LIMIT_REACHED'] },
    },
    async (request, reply) => {
      const { agentId } = request.agent!;
      const issued = await transaction(pool, async (client) => {
        // Serialize key creation per agent so two concurrent calls cannot both pass the limit.
        await client.query('SELECT 1 FROM agents WHERE id = $1 FOR UPDATE', [agentId]);
        const { rows } = await client.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM api_keys WHERE agent_id = $1 AND revoked_at IS NULL',
          [agentId],
        );
        if (rows[0]!.n >= config.maxActiveKeys) {
          throw new ApiError('KEY_LIMIT_REACHED', {
            message: `You have ${config.maxActiveKeys} active keys, the maximum.`,
          });
        }
        return createKey(client, agentId, cleanText(request.body.name ?? '', { multiline: false }));
      });
      await publisher.changed({ agentId });
      return reply.code(201).send({
        data: { key: keyView(issued.key), api_key: issued.apiKey, authorization_header: `Bearer ${issued.apiKey}` },
      });
    },
  );

  app.delete(
    '/api/v1/keys/:id',
    {
      schema: {
        operationId: 'revokeKey',
        summary: 'Revoke one of your keys; it stops working at once',
        tags: ['accounts'],
        params: Type.Object({ id: Type.String({ maxLength: 64 }) }),
        response: { 200: Data(KeyView) },
      },
      config: { auth: 'api_key', errors: ['KEY_NOT_FOUND', 'LAST_ACTIVE_KEY'] },
    },
    async (request) => {
      const { agentId } = request.agent!;
      const revoked = await transaction(pool, async (client) => {
        await client.query('SELECT 1 FROM agents WHERE id = $1 FOR UPDATE', [agentId]);
        const keys = await listKeys(client, agentId);
        const key = keys.find((k) => k.id === request.params.id);
        if (!key) throw new ApiError('KEY_NOT_FOUND');
        if (key.revoked_at) return key;
        if (keys.filter((k) => !k.revoked_at).length === 1) throw new ApiError('LAST_ACTIVE_KEY');
        const { rows } = await client.query<typeof key>(
          `UPDATE api_keys SET revoked_at = now() WHERE id = $1
           RETURNING id, prefix, name, created_at, last_used_at, revoked_at`,
          [key.id],
        );
        return rows[0]!;
      });
      await publisher.changed({ agentId });
      return { data: keyView(revoked) };
    },
  );
};
