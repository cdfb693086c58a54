import { randomBytes } from 'node:crypto';
import type { Pool, PoolClient } from './db.js';
import {
  buildSignInMessage,
  RECOVERY_STATEMENT,
  type SignInSite,
  signInMessageMatches,
  signInMessageNonce,
  verificationStatement,
  verifyWalletSignature,
  type WalletChain,
} from './wallets.js';

/**
 * Wallet sign-in challenges (DESIGN §3.1, §3.9), shared by recovery and verification: a message with a single-use
 * nonce that expires, stored as issued, so the only message that can be consumed is the exact one we handed out, for
 * the same purpose, wallet and (for verification) agent.
 */
export type WalletChallengePurpose = { purpose: 'recover' } | { purpose: 'verify'; agentId: string };

export interface WalletChallengeRequest {
  chain: WalletChain;
  /** Normalized (see normalizeWalletAddress). */
  address: string;
}

export interface IssuedWalletChallenge {
  message: string;
  nonce: string;
  expires_at: Date;
}

const statementFor = (p: WalletChallengePurpose): string =>
  p.purpose === 'recover' ? RECOVERY_STATEMENT : verificationStatement(p.agentId);
const agentOf = (p: WalletChallengePurpose): string | null => (p.purpose === 'verify' ? p.agentId : null);

export const issueWalletChallenge = async (
  pool: Pool,
  site: SignInSite,
  ttlSeconds: number,
  p: WalletChallengePurpose,
  { chain, address }: WalletChallengeRequest,
): Promise<IssuedWalletChallenge> => {
  const issuedAt = new Date();
  const expiresAt = new Date(issuedAt.getTime() + ttlSeconds * 1000);
  const nonce = randomBytes(12).toString('hex');
  const message = buildSignInMessage({ chain, address, statement: statementFor(p), site, nonce, issuedAt, expiresAt });
  await pool.query(
    `INSERT INTO wallet_challenges (nonce, purpose, agent_id, chain, address, message, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [nonce, p.purpose, agentOf(p), chain, address, message, expiresAt],
  );
  // As with proof-of-work challenges: clearing a few expired ones on each issue keeps the table small.
  pool
    .query(
      `DELETE FROM wallet_challenges WHERE nonce IN (
         SELECT nonce FROM wallet_challenges WHERE expires_at < now() - interval '1 hour' LIMIT 100)`,
    )
    .catch(() => {});
  return { message, nonce, expires_at: expiresAt };
};

/** Why a signed message was not accepted: the message is not a live one we issued, or the wallet did not sign it. */
export type WalletProofRefusal = 'message_invalid' | 'signature_invalid';

/**
 * Checks a signed message against the challenge it names and marks the challenge used, inside the caller's
 * transaction (a failure later in it gives the challenge back). A wrong signature leaves the challenge usable, so
 * nobody can burn another's challenge by posting garbage. Returns null when accepted.
 */
export const consumeWalletChallenge = async (
  client: PoolClient,
  site: SignInSite,
  p: WalletChallengePurpose,
  proof: WalletChallengeRequest & { message: string; signature: string },
): Promise<WalletProofRefusal | null> => {
  const { chain, address, message, signature } = proof;
  const nonce = signInMessageNonce(message);
  if (nonce === null) return 'message_invalid';
  const { rows } = await client.query<{ message: string; live: boolean }>(
    `SELECT message, used_at IS NULL AND expires_at > now() AS live FROM wallet_challenges
      WHERE nonce = $1 AND purpose = $2 AND agent_id IS NOT DISTINCT FROM $3 AND chain = $4 AND address = $5
        FOR UPDATE`,
    [nonce, p.purpose, agentOf(p), chain, address],
  );
  const challenge = rows[0];
  const statement = statementFor(p);
  if (
    !challenge?.live ||
    challenge.message !== message ||
    !signInMessageMatches({ chain, address, statement, site, nonce, message, now: new Date() })
  ) {
    return 'message_invalid';
  }
  if (!(await verifyWalletSignature(chain, address, message, signature))) return 'signature_invalid';
  await client.query('UPDATE wallet_challenges SET used_at = now() WHERE nonce = $1', [nonce]);
  return null;
};
