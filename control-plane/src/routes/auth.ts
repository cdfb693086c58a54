import { ApiError, newId } from '@crochet/protocol';
import { Type } from 'typebox';
import { type AgentRow, createKey, issuedKeyView } from '../accounts.js';
import type { App, Deps } from '../app.js';
import { isUniqueViolation, transaction } from '../db.js';
import { consumeChallenge, issueChallenge } from '../pow.js';
import {
  Data,
  IssuedKey,
  PowChallenge,
  PowSolution,
  SignedWalletMessage,
  WalletChallenge,
  WalletInput,
} from '../schemas.js';
import { cleanRequiredText, cleanText } from '../text.js';
import { consumeWalletChallenge, issueWalletChallenge } from '../wallet-challenges.js';
import { signInSite, walletAddressOrThrow } from '../wallets.js';

const RECOVER = { purpose: 'recover' } as const;

/** §3.1: proof-of-work registration and wallet recovery. */
export const authRoutes = (app: App, { config, pool, publisher }: Deps): void => {
  const site = signInSite(config.publicBaseUrl, config.evmChainId, config.solanaChainId);

  app.post(
    '/api/v1/auth/challenge',
    {
      schema: {
        operationId: 'createChallenge',
        summary: 'Get a proof-of-work challenge for registration',
        description:
          'Find a decimal string nonce such that sha256(utf8(salt + nonce)) has at least `difficulty` leading zero ' +
          'bits, then call POST /api/v1/register before expires_at. Single use.',
        tags: ['accounts'],
        response: { 201: Data(PowChallenge) },
      },
    },
    async (_request, reply) => {
      const challenge = await issueChallenge(pool, 'register', null, config.powDifficulty, config.powTtlSeconds);
      return reply.code(201).send({ data: challenge });
    },
  );

  app.post(
    '/api/v1/register',
    {
      schema: {
        operationId: 'register',
        summary: 'Register an agent with a solved challenge; returns its first API key (shown once)',
        tags: ['accounts'],
        body: Type.Object(
          {
            ...PowSolution,
            name: Type.String({
              minLength: 1,
              maxLength: 100,
              description: 'one line; stored without control or bidirectional formatting characters, trimmed',
            }),
            description: Type.Optional(
              Type.String({ maxLength: 2000, description: 'plain text, cleaned like a listing description' }),
            ),
            wallet: Type.Optional(WalletInput),
          },
          { additionalProperties: false },
        ),
        response: { 201: Data(IssuedKey) },
      },
      config: {
        errors: [
          'CHALLENGE_NOT_FOUND',
          'CHALLENGE_EXPIRED',
          'CHALLENGE_ALREADY_USED',
          'POW_INVALID',
          'WALLET_ADDRESS_INVALID',
          'WALLET_ALREADY_REGISTERED',
        ],
      },
    },
    async (request, reply) => {
      const body = request.body;
      const wallet = body.wallet && {
        chain: body.wallet.chain,
        address: walletAddressOrThrow(body.wallet.chain, body.wallet.address),
      };
      const result = await transaction(pool, async (client) => {
        await consumeChallenge(client, body, 'register', null);
        const { rows } = await client.query<AgentRow>(
          `INSERT INTO agents (id, name, description) VALUES ($1, $2, $3)
           RETURNING id, name, description, status, created_at`,
          [
            newId('agent'),
            cleanRequiredText(body.name, 'body.name', { multiline: false }),
            cleanText(body.description ?? '', { multiline: true }),
          ],
        );
        const agent = rows[0]!;
        if (wallet) {
          try {
            await client.query('INSERT INTO wallets (chain, address, agent_id) VALUES ($1, $2, $3)', [
              wallet.chain,
              wallet.address,
              agent.id,
            ]);
          } catch (error) {
            if (isUniqueViolation(error)) throw new ApiError('WALLET_ALREADY_REGISTERED');
            throw error;
          }
        }
        return issuedKeyView(agent, await createKey(client, agent.id, 'default'));
      });
      await publisher.changed({ agentId: result.agent.id });
      return reply.code(201).send({ data: result });
    },
  );

  app.post(
    '/api/v1/auth/recover/challenge',
    {
      schema: {
        operationId: 'createRecoveryChallenge',
        summary: 'Get a message to sign with a registered wallet (EIP-4361 on EVM, its Solana equivalent)',
        description:
          'For lost keys: signing it with POST /api/v1/auth/recover revokes every key of the wallet’s agent. To add or ' +
          'verify a wallet and keep your keys, use POST /api/v1/me/wallets/challenge instead.',
        tags: ['accounts'],
        body: WalletInput,
        response: { 201: Data(WalletChallenge) },
      },
      config: { errors: ['WALLET_ADDRESS_INVALID', 'WALLET_NOT_FOUND'] },
    },
    async (request, reply) => {
      const { chain } = request.body;
      const address = walletAddressOrThrow(chain, request.body.address);
      const { rowCount } = await pool.query('SELECT 1 FROM wallets WHERE chain = $1 AND address = $2', [
        chain,
        address,
      ]);
      if (!rowCount) throw new ApiError('WALLET_NOT_FOUND');
      const challenge = await issueWalletChallenge(pool, site, config.recoveryTtlSeconds, RECOVER, { chain, address });
      return reply.code(201).send({ data: challenge });
    },
  );

  app.post(
    '/api/v1/auth/recover',
    {
      schema: {
        operationId: 'recover',
        summary: 'Prove control of a registered wallet; returns a new API key and revokes the earlier ones',
        tags: ['accounts'],
        body: SignedWalletMessage,
        response: { 200: Data(IssuedKey) },
      },
      config: {
        errors: [
          'WALLET_ADDRESS_INVALID',
          'WALLET_NOT_FOUND',
          'RECOVERY_MESSAGE_INVALID',
          'RECOVERY_SIGNATURE_INVALID',
        ],
      },
    },
    async (request) => {
      const { chain, message, signature } = request.body;
      const address = walletAddressOrThrow(chain, request.body.address);
      const result = await transaction(pool, async (client) => {
        const refusal = await consumeWalletChallenge(client, site, RECOVER, { chain, address, message, signature });
        if (refusal === 'message_invalid') throw new ApiError('RECOVERY_MESSAGE_INVALID');
        if (refusal === 'signature_invalid') throw new ApiError('RECOVERY_SIGNATURE_INVALID');
        const wallet = await client.query<AgentRow>(
          `UPDATE wallets SET verified_at = coalesce(verified_at, now()) WHERE chain = $1 AND address = $2
           RETURNING agent_id AS id`,
          [chain, address],
        );
        const agentId = wallet.rows[0]?.id;
        if (!agentId) throw new ApiError('WALLET_NOT_FOUND');
        await client.query('UPDATE api_keys SET revoked_at = now() WHERE agent_id = $1 AND revoked_at IS NULL', [
          agentId,
        ]);
        const agent = await client.query<AgentRow>(
          'SELECT id, name, description, status, created_at FROM agents WHERE id = $1',
          [agentId],
        );
        return issuedKeyView(agent.rows[0]!, await createKey(client, agentId, 'recovered'));
      });
      await publisher.changed({ agentId: result.agent.id });
      return { data: result };
    },
  );
};
