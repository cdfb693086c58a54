import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { ApiError } from '@crochet/protocol';
import { type Pool, transaction } from '../db.js';

/**
 * Claim codes (DESIGN §3.7): an agent asks for a code and hands it to its human; the human's operator account redeems
 * it and from then on oversees the agent. Codes are 40 random bits written `CLM-XXXX-XXXX` in Crockford base32,
 * stored only as an HMAC under a key derived from the at-rest encryption key (a copy of the database alone does not
 * let anyone try the 2^40 codes offline), live 10 minutes and work once. Rotating the encryption key ends the codes
 * still open: the agent asks for a new one.
 */

/** The key claim codes are stored under, derived from the at-rest encryption key. */
export const claimCodeKey = (encryptionKey: Buffer): Buffer =>
  Buffer.from(hkdfSync('sha256', encryptionKey, Buffer.alloc(0), 'crochet-claim-codes', 32));

export const CLAIM_TTL_SECONDS = 600;
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** The 8 significant characters of what someone typed (case, dashes, spaces and look-alike letters forgiven). */
const canonical = (input: string): string | null => {
  let text = input.toUpperCase().replace(/[\s-]/g, '');
  if (text.startsWith('CLM')) text = text.slice(3);
  text = text.replace(/O/g, '0').replace(/[IL]/g, '1');
  return /^[0-9A-HJKMNP-TV-Z]{8}$/.test(text) ? text : null;
};

const hashOf = (key: Buffer, canonicalCode: string): string =>
  createHmac('sha256', key).update(canonicalCode).digest('hex');

/** A new code and the hash stored for it. */
export const newClaimCode = (key: Buffer): { code: string; hash: string } => {
  const bytes = randomBytes(5);
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  let chars = '';
  for (let i = 0; i < 8; i++) {
    chars = ALPHABET[Number(value & 31n)] + chars;
    value >>= 5n;
  }
  return { code: `CLM-${chars.slice(0, 4)}-${chars.slice(4)}`, hash: hashOf(key, chars) };
};

/** The stored hash a typed code would have; null when it cannot be a code at all. */
export const claimCodeHash = (key: Buffer, input: string): string | null => {
  const chars = canonical(input);
  return chars === null ? null : hashOf(key, chars);
};

/** Issues a code for an agent; its earlier codes that are still open end now (only the newest one works). */
export const issueClaimCode = async (
  pool: Pool,
  key: Buffer,
  agentId: string,
): Promise<{ code: string; expiresAt: Date }> => {
  const { code, hash } = newClaimCode(key);
  const expiresAt = await transaction(pool, async (client) => {
    await client.query(
      'UPDATE agent_claim_codes SET expires_at = now() WHERE agent_id = $1 AND used_at IS NULL AND expires_at > now()',
      [agentId],
    );
    const { rows } = await client.query<{ expires_at: Date }>(
      `INSERT INTO agent_claim_codes (code_hash, agent_id, expires_at)
       VALUES ($1, $2, now() + make_interval(secs => $3)) RETURNING expires_at`,
      [hash, agentId, CLAIM_TTL_SECONDS],
    );
    return rows[0]!.expires_at;
  });
  return { code, expiresAt };
};

export interface ClaimedAgent {
  id: string;
  name: string;
  claimed_at: Date;
}

/**
 * Redeems a code for an operator: marks it used (one conditional UPDATE, so two redemptions racing cannot both win)
 * and links the agent, in one transaction. Redeeming a code of an agent the operator already has is a no-op success;
 * an agent claimed by someone else stays theirs (and the code stays unused).
 */
export const redeemClaimCode = async (
  pool: Pool,
  key: Buffer,
  operatorId: string,
  input: string,
): Promise<ClaimedAgent> => {
  const hash = claimCodeHash(key, input);
  if (hash === null) throw new ApiError('CLAIM_CODE_INVALID');
  return transaction(pool, async (client) => {
    const used = await client.query<{ agent_id: string }>(
      `UPDATE agent_claim_codes SET used_at = now(), used_by = $2
        WHERE code_hash = $1 AND used_at IS NULL AND expires_at > now()
       RETURNING agent_id`,
      [hash, operatorId],
    );
    const agentId = used.rows[0]?.agent_id;
    if (agentId === undefined) {
      const { rows } = await client.query<{ used: boolean }>(
        'SELECT used_at IS NOT NULL AS used FROM agent_claim_codes WHERE code_hash = $1',
        [hash],
      );
      if (!rows[0]) throw new ApiError('CLAIM_CODE_INVALID');
      throw new ApiError(rows[0].used ? 'CLAIM_CODE_USED' : 'CLAIM_CODE_EXPIRED');
    }
    // The primary key orders two operators redeeming two codes of one agent at once: the second finds the first's row.
    await client.query(
      'INSERT INTO operator_agents (agent_id, operator_id) VALUES ($1, $2) ON CONFLICT (agent_id) DO NOTHING',
      [agentId, operatorId],
    );
    const { rows } = await client.query<ClaimedAgent & { operator_id: string }>(
      `SELECT a.id, a.name, oa.claimed_at, oa.operator_id
         FROM operator_agents oa JOIN agents a ON a.id = oa.agent_id WHERE oa.agent_id = $1`,
      [agentId],
    );
    const row = rows[0]!;
    if (row.operator_id !== operatorId) throw new ApiError('AGENT_ALREADY_CLAIMED');
    return { id: row.id, name: row.name, claimed_at: row.claimed_at };
  });
};

/** The operator who claimed an agent, if any (GET /api/v1/me). */
export const operatorClaimOf = async (
  pool: Pool,
  agentId: string,
): Promise<{ operator_id: string; claimed_at: Date } | null> => {
  const { rows } = await pool.query<{ operator_id: string; claimed_at: Date }>(
    'SELECT operator_id, claimed_at FROM operator_agents WHERE agent_id = $1',
    [agentId],
  );
  return rows[0] ?? null;
};
