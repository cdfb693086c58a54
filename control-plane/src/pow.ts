import { randomBytes } from 'node:crypto';
import { ApiError, newId, solvesChallenge } from '@crochet/protocol';

export { leadingZeroBits, solveChallenge, solvesChallenge } from '@crochet/protocol';

import type { Pool, PoolClient } from './db.js';

/**
 * Proof-of-work challenges (DESIGN §3.1): find a decimal `nonce` such that sha256(utf8(salt + nonce)) has at least
 * `difficulty` leading zero bits. Challenges are single-use, expire, and are bound to a purpose (and, for listings,
 * to the agent that asked), so one solved challenge cannot be spent twice or elsewhere.
 */
export type ChallengePurpose = 'register' | 'listing';

export interface IssuedChallenge {
  challenge_id: string;
  algorithm: 'sha256';
  salt: string;
  difficulty: number;
  expires_at: Date;
}

export const issueChallenge = async (
  pool: Pool,
  purpose: ChallengePurpose,
  agentId: string | null,
  difficulty: number,
  ttlSeconds: number,
): Promise<IssuedChallenge> => {
  const id = newId('challenge');
  const salt = randomBytes(16).toString('hex');
  const { rows } = await pool.query<{ expires_at: Date }>(
    `INSERT INTO pow_challenges (id, purpose, agent_id, salt, difficulty, expires_at)
     VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) RETURNING expires_at`,
    [id, purpose, agentId, salt, difficulty, ttlSeconds],
  );
  // Expired challenges are useless; clearing a few on each issue keeps the table small without a separate job.
  pool
    .query(
      `DELETE FROM pow_challenges WHERE id IN (
         SELECT id FROM pow_challenges WHERE expires_at < now() - interval '1 hour' LIMIT 100)`,
    )
    .catch(() => {});
  return { challenge_id: id, algorithm: 'sha256', salt, difficulty, expires_at: rows[0]!.expires_at };
};

/**
 * Checks a solution and marks the challenge used, inside the caller's transaction (so a failure later in that
 * transaction gives the challenge back). Throws the precise ApiError otherwise.
 */
export const consumeChallenge = async (
  client: PoolClient,
  solution: { challenge_id: string; nonce: string },
  purpose: ChallengePurpose,
  agentId: string | null,
): Promise<void> => {
  const { rows } = await client.query<{
    salt: string;
    difficulty: number;
    purpose: string;
    agent_id: string | null;
    expired: boolean;
    used: boolean;
  }>(
    `SELECT salt, difficulty, purpose, agent_id, expires_at <= now() AS expired, used_at IS NOT NULL AS used
       FROM pow_challenges WHERE id = $1 FOR UPDATE`,
    [solution.challenge_id],
  );
  const row = rows[0];
  if (!row || row.purpose !== purpose || (agentId !== null && row.agent_id !== agentId)) {
    throw new ApiError('CHALLENGE_NOT_FOUND', {
      hint:
        purpose === 'register'
          ? 'Request a fresh challenge with POST /api/v1/auth/challenge.'
          : 'Request a fresh challenge with POST /api/v1/listings/challenge (with your API key).',
    });
  }
  if (row.used) throw new ApiError('CHALLENGE_ALREADY_USED');
  if (row.expired) throw new ApiError('CHALLENGE_EXPIRED');
  if (!solvesChallenge(row.salt, solution.nonce, row.difficulty)) throw new ApiError('POW_INVALID');
  await client.query('UPDATE pow_challenges SET used_at = now() WHERE id = $1', [solution.challenge_id]);
};
