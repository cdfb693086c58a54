import { ApiError } from '@crochet/protocol';
import { Type } from 'typebox';
import { listWallets, type WalletRow, walletView } from '../accounts.js';
import type { App, Deps } from '../app.js';
import type { Pool, PoolClient } from '../db.js';
import { transaction } from '../db.js';
import { Data, SignedWalletMessage, WalletChallenge, WalletInput, WalletView } from '../schemas.js';
import { consumeWalletChallenge, issueWalletChallenge } from '../wallet-challenges.js';
import { signInSite, type WalletChain, walletAddressOrThrow } from '../wallets.js';

/**
 * §3.9 wallets: an agent adds a wallet by signing a sign-in message with it, using its API key — its keys stay as they
 * are (recovery, §3.1, is for lost keys). A wallet belongs to one agent. Who holds it decides:
 * - verified by another agent: refused (WALLET_ALREADY_VERIFIED). That agent proved control, and its payments and
 *   payouts depend on it; only that agent can let it go (DELETE), or the signer can recover that agent.
 * - named by another agent at registration but never verified: it moves to the signer. The signature is the proof
 *   that recovery already honours (the signer could recover that agent with it), and a claim without a proof must
 *   not keep the wallet's owner from using it.
 */
export const meWalletRoutes = (app: App, { config, pool, publisher }: Deps): void => {
  const site = signInSite(config.publicBaseUrl, config.evmChainId, config.solanaChainId);

  app.get(
    '/api/v1/me/wallets',
    {
      schema: {
        operationId: 'listWallets',
        summary: 'Your wallets, with whether each is verified',
        tags: ['accounts'],
        response: { 200: Data(Type.Array(WalletView)) },
      },
      config: { auth: 'api_key' },
    },
    async (request) => ({ data: (await listWallets(pool, request.agent!.agentId)).map(walletView) }),
  );

  app.post(
    '/api/v1/me/wallets/challenge',
    {
      schema: {
        operationId: 'createWalletChallenge',
        summary: 'Get a message to sign with a wallet you want to add (EIP-4361 on EVM, its Solana equivalent)',
        description:
          'The message names your agent, this site (domain, URI, chain id) and a single-use nonce. Sign it unchanged ' +
          'with the wallet (EVM: personal_sign, EIP-191; Solana: ed25519 signMessage) and send it with POST ' +
          '/api/v1/me/wallets, with the same agent’s key, before expires_at. It works once, and only for your agent.',
        tags: ['accounts'],
        body: WalletInput,
        response: { 201: Data(WalletChallenge) },
      },
      config: {
        auth: 'api_key',
        errors: ['WALLET_ADDRESS_INVALID', 'WALLET_ALREADY_VERIFIED', 'WALLET_LIMIT_REACHED'],
      },
    },
    async (request, reply) => {
      const { agentId } = request.agent!;
      const { chain } = request.body;
      const address = walletAddressOrThrow(chain, request.body.address);
      // Checked again when the signature comes back; refusing here spares the agent a signature that cannot count.
      await checkCanAdd(pool, config.maxWallets, agentId, chain, address);
      const challenge = await issueWalletChallenge(
        pool,
        site,
        config.recoveryTtlSeconds,
        { purpose: 'verify', agentId },
        { chain, address },
      );
      return reply.code(201).send({ data: challenge });
    },
  );

  app.post(
    '/api/v1/me/wallets',
    {
      schema: {
        operationId: 'addWallet',
        summary: 'Add a wallet to the calling agent, verified by its signature; your keys are not touched',
        description:
          'Send the message from POST /api/v1/me/wallets/challenge and the wallet’s signature of it. The wallet is ' +
          'verified at once: the gateway accepts direct EVM transfers and Relay payments from it for your calls ' +
          '(every proxy within a second of this answer), and payouts may go to it. 201 when the wallet is new to ' +
          'you, 200 when it was already yours. A wallet belongs to one agent: one verified by another agent is ' +
          'refused (409 WALLET_ALREADY_VERIFIED); one another agent only named at registration and never verified ' +
          'moves to you, since your signature proves it is yours.',
        tags: ['accounts'],
        body: SignedWalletMessage,
        response: { 201: Data(WalletView), 200: Data(WalletView) },
      },
      config: {
        auth: 'api_key',
        errors: [
          'WALLET_ADDRESS_INVALID',
          'WALLET_MESSAGE_INVALID',
          'WALLET_SIGNATURE_INVALID',
          'WALLET_ALREADY_VERIFIED',
          'WALLET_LIMIT_REACHED',
        ],
      },
    },
    async (request, reply) => {
      const { agentId } = request.agent!;
      const { chain, message, signature } = request.body;
      const address = walletAddressOrThrow(chain, request.body.address);
      const { wallet, added, movedFrom } = await transaction(pool, async (client) => {
        // One agent's additions run one at a time, so two concurrent ones cannot both pass the limit.
        await client.query('SELECT 1 FROM agents WHERE id = $1 FOR UPDATE', [agentId]);
        const refusal = await consumeWalletChallenge(
          client,
          site,
          { purpose: 'verify', agentId },
          { chain, address, message, signature },
        );
        if (refusal === 'message_invalid') throw new ApiError('WALLET_MESSAGE_INVALID');
        if (refusal === 'signature_invalid') throw new ApiError('WALLET_SIGNATURE_INVALID');
        const holder = await checkCanAdd(client, config.maxWallets, agentId, chain, address, { lock: true });
        // The conflict branch re-checks under the row lock what checkCanAdd saw, for an agent that inserted the
        // wallet after that read (its row did not exist to be locked): no row back means it was verified there.
        const { rows } = await client.query<WalletRow>(
          `INSERT INTO wallets (chain, address, agent_id, verified_at) VALUES ($1, $2, $3, now())
           ON CONFLICT (chain, address) DO UPDATE
              SET agent_id = excluded.agent_id,
                  verified_at = coalesce(wallets.verified_at, now()),
                  created_at = CASE WHEN wallets.agent_id = excluded.agent_id THEN wallets.created_at ELSE now() END
            WHERE wallets.agent_id = excluded.agent_id OR wallets.verified_at IS NULL
           RETURNING chain, address, verified_at, created_at`,
          [chain, address, agentId],
        );
        if (!rows[0]) throw new ApiError('WALLET_ALREADY_VERIFIED');
        return {
          wallet: rows[0],
          added: holder?.agent_id !== agentId,
          movedFrom: holder && holder.agent_id !== agentId ? holder.agent_id : null,
        };
      });
      if (movedFrom) {
        request.log.info(
          { chain, address, agentId, movedFrom },
          'unverified wallet claim moved to the agent that signed',
        );
      }
      await publisher.changed({ agentId });
      return reply.code(added ? 201 : 200).send({ data: walletView(wallet) });
    },
  );

  app.delete(
    '/api/v1/me/wallets/:address',
    {
      schema: {
        operationId: 'removeWallet',
        summary: 'Remove one of your wallets',
        description:
          'From this answer on (every proxy within a second) transfers and Relay payments from the wallet no longer ' +
          'pay for your calls — including one made but not yet presented — it receives no new payouts, and it no ' +
          'longer recovers this agent: without a wallet, lost keys cannot be recovered. Calls already paid from it ' +
          'and payouts already sent are not affected. Any agent may then add it again with a new signature. The ' +
          'chain follows from the address (0x… is EVM, base58 is Solana).',
        tags: ['accounts'],
        params: Type.Object({ address: Type.String({ minLength: 1, maxLength: 100 }) }),
        response: { 200: Data(WalletView) },
      },
      config: { auth: 'api_key', errors: ['WALLET_ADDRESS_INVALID', 'WALLET_NOT_FOUND'] },
    },
    async (request) => {
      const { agentId } = request.agent!;
      const raw = request.params.address;
      // Base58 has no 0, so no Solana address starts with 0x: the address alone names its chain.
      const chain: WalletChain = /^0x/i.test(raw.trim()) ? 'evm' : 'solana';
      const address = walletAddressOrThrow(chain, raw);
      const { rows } = await pool.query<WalletRow>(
        `DELETE FROM wallets WHERE chain = $1 AND address = $2 AND agent_id = $3
         RETURNING chain, address, verified_at, created_at`,
        [chain, address, agentId],
      );
      if (!rows[0]) {
        throw new ApiError('WALLET_NOT_FOUND', {
          message: 'None of your wallets has this address.',
          hint: 'GET /api/v1/me/wallets lists your wallets.',
        });
      }
      request.log.info({ chain, address, agentId }, 'wallet removed');
      await publisher.changed({ agentId });
      return { data: walletView(rows[0]) };
    },
  );
};

/**
 * Whether `agentId` may add the wallet: not verified by another agent, and within the wallet limit unless the
 * wallet is already the agent's. Returns the wallet's current holder (null when nobody has it).
 */
const checkCanAdd = async (
  db: Pool | PoolClient,
  maxWallets: number,
  agentId: string,
  chain: WalletChain,
  address: string,
  options: { lock?: boolean } = {},
): Promise<{ agent_id: string; verified: boolean } | null> => {
  const { rows } = await db.query<{ agent_id: string; verified: boolean }>(
    `SELECT agent_id, verified_at IS NOT NULL AS verified FROM wallets WHERE chain = $1 AND address = $2
     ${options.lock ? 'FOR UPDATE' : ''}`,
    [chain, address],
  );
  const holder = rows[0] ?? null;
  if (holder?.agent_id === agentId) return holder;
  if (holder?.verified) throw new ApiError('WALLET_ALREADY_VERIFIED');
  const { rows: counted } = await db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM wallets WHERE agent_id = $1',
    [agentId],
  );
  if (counted[0]!.n >= maxWallets) {
    throw new ApiError('WALLET_LIMIT_REACHED', { message: `You have ${maxWallets} wallets, the maximum.` });
  }
  return holder;
};
