import { randomBytes } from 'node:crypto';
import { ApiError, newId } from '@crochet/protocol';
import { Type } from 'typebox';
import { type AgentRow, createKey, issuedKeyView } from '../accounts.js';
import type { App, Deps } from '../app.js';
import { isUniqueViolation, transaction } from '../db.js';
import { consumeChallenge, issueChallenge } from '../pow.js';
import { Data, IssuedKey, PowChallenge, PowSolution, Timestamp, WalletChainSchema } from '../schemas.js';
import { cleanRequiredText, cleanText } from '../text.js';
import {
  buildRecoveryMessage,
  normalizeWalletAddress,
  recoveryMessageMatches,
  recoveryMessageNonce,
  verifyWalletSignature,
  type WalletChain,
} from '../wallets.js';

const WalletInput = Type.Object(
  { chain: WalletChainSchema, address: Type.String({ minLength: 1, maxLength: 100 }) },
  { additionalProperties: false },
);

const normalizeOrThrow = (chain: WalletChain, address: string): string => {
  const normalized = normalizeWalletAddress(chain, address);
  if (normalized === null) throw new ApiError('WALLET_ADDRESS_INVALID');
  return normalized;
};

/** §3.1: proof-of-work registration and wallet recovery. */
export const authRoutes = (app: App, { config, pool, publisher }: Deps): void => {
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
        address: normalizeOrThrow(body.wallet.chain, body.wallet.address),
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
        tags: ['accounts'],
        body: WalletInput,
        response: { 201: Data(Type.Object({ message: Type.String(), nonce: Type.String(), expires_at: Timestamp })) },
      },
      config: { errors: ['WALLET_ADDRESS_INVALID', 'WALLET_NOT_FOUND'] },
    },
    async (request, reply) => {
      const { chain } = request.body;
      const address = normalizeOrThrow(chain, request.body.address);
      const { rowCount } = await pool.query('SELECT 1 FROM wallets WHERE chain = $1 AND address = $2', [
        chain,
        address,
      ]);
      if (!rowCount) throw new ApiError('WALLET_NOT_FOUND');
      const base = new URL(config.publicBaseUrl);
      const issuedAt = new Date();
      const expiresAt = new Date(issuedAt.getTime() + config.recoveryTtlSeconds * 1000);
      const nonce = randomBytes(12).toString('hex');
      const message = buildRecoveryMessage({
        chain,
        address,
        domain: base.host,
        uri: base.origin,
        nonce,
        issuedAt,
        expiresAt,
        evmChainId: config.evmChainId,
        solanaChainId: config.solanaChainId,
      });
      await pool.query(
        'INSERT INTO recovery_challenges (nonce, chain, address, message, expires_at) VALUES ($1, $2, $3, $4, $5)',
        [nonce, chain, address, message, expiresAt],
      );
      return reply.code(201).send({ data: { message, nonce, expires_at: expiresAt } });
    },
  );

  app.post(
    '/api/v1/auth/recover',
    {
      schema: {
        operationId: 'recover',
        summary: 'Prove control of a registered wallet; returns a new API key and revokes the earlier ones',
        tags: ['accounts'],
        body: Type.Object(
          {
            chain: WalletChainSchema,
            address: Type.String({ minLength: 1, maxLength: 100 }),
            message: Type.String({ minLength: 1, maxLength: 4000 }),
            signature: Type.String({
              minLength: 1,
              maxLength: 200,
              description: 'EVM: 0x-hex personal_sign signature; Solana: base58 (or base64) ed25519 signature',
            }),
          },
          { additionalProperties: false },
        ),
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
      const address = normalizeOrThrow(chain, request.body.address);
      const nonce = recoveryMessageNonce(message);
      const domain = new URL(config.publicBaseUrl).host;
      const result = await transaction(pool, async (client) => {
        const { rows } = await client.query<{ message: string; live: boolean }>(
          `SELECT message, used_at IS NULL AND expires_at > now() AS live FROM recovery_challenges
            WHERE nonce = $1 AND chain = $2 AND address = $3 FOR UPDATE`,
          [nonce ?? '', chain, address],
        );
        const challenge = rows[0];
        if (
          !challenge?.live ||
          challenge.message !== message ||
          !recoveryMessageMatches({ chain, address, domain, nonce: nonce!, message, now: new Date() })
        ) {
          throw new ApiError('RECOVERY_MESSAGE_INVALID');
        }
        if (!(await verifyWalletSignature(chain, address, message, signature))) {
          throw new ApiError('RECOVERY_SIGNATURE_INVALID');
        }
        await client.query('UPDATE recovery_challenges SET used_at = now() WHERE nonce = $1', [nonce]);
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
