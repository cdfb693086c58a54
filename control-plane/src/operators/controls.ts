import { ApiError } from '@crochet/protocol';
import type { Pool } from '../db.js';
import type { KeyRow, ListingRow } from './overview.js';

/**
 * The operator's controls (DESIGN §3.7), each one conditional UPDATE scoped by the operator's claims: an agent,
 * listing or key outside them is answered exactly like one that does not exist. The caller publishes the change to
 * the proxies once it committed.
 */

const OWNS_AGENT = 'IN (SELECT agent_id FROM operator_agents WHERE operator_id = $1)';

/** Sets (or, with null, removes) an agent's daily spend cap in atomic USDC units. */
export const setSpendCap = async (pool: Pool, operatorId: string, agentId: string, capAtomic: bigint | null) => {
  const { rowCount } = await pool.query(
    `UPDATE agents SET daily_spend_cap_atomic = $3, updated_at = now() WHERE id = $2 AND id ${OWNS_AGENT}`,
    [operatorId, agentId, capAtomic === null ? null : capAtomic.toString()],
  );
  if (rowCount === 0) throw new ApiError('AGENT_NOT_FOUND');
};

/** Pauses or resumes an agent: a paused agent's gateway calls are refused (AGENT_PAUSED). */
export const setAgentStatus = async (pool: Pool, operatorId: string, agentId: string, status: 'active' | 'paused') => {
  const { rowCount } = await pool.query(
    `UPDATE agents SET status = $3, updated_at = CASE WHEN status = $3 THEN updated_at ELSE now() END
      WHERE id = $2 AND id ${OWNS_AGENT}`,
    [operatorId, agentId, status],
  );
  if (rowCount === 0) throw new ApiError('AGENT_NOT_FOUND');
};

/**
 * Pauses or resumes a listing of one of the operator's agents; an archived listing stays archived. The pause is the
 * operator's (operator_paused_at): the seller agent cannot lift it, only a resume here does (DESIGN §3.7).
 */
export const setListingStatus = async (
  pool: Pool,
  operatorId: string,
  listingId: string,
  status: 'active' | 'paused',
): Promise<ListingRow> => {
  const { rows } = await pool.query<ListingRow>(
    `UPDATE listings SET status = CASE WHEN status = 'archived' THEN status ELSE $3 END,
            operator_paused_at = CASE WHEN status = 'archived' THEN operator_paused_at
                                      WHEN $3::text = 'paused' THEN coalesce(operator_paused_at, now()) END,
            updated_at = CASE WHEN status = 'archived'
                                OR (status = $3 AND (operator_paused_at IS NOT NULL) = ($3::text = 'paused'))
                              THEN updated_at ELSE now() END
      WHERE id = $2 AND seller_id ${OWNS_AGENT}
     RETURNING id, seller_id, name, status, pricing_model, price_atomic::text, currency, crochet_score, verified,
               review_count, operator_paused_at`,
    [operatorId, listingId, status],
  );
  const row = rows[0];
  if (!row) throw new ApiError('LISTING_NOT_FOUND');
  if (row.status === 'archived') throw new ApiError('LISTING_ARCHIVED');
  return row;
};

/** Revokes a key of one of the operator's agents (its last active one too: the operator may lock an agent out). */
export const revokeAgentKey = async (
  pool: Pool,
  operatorId: string,
  agentId: string,
  keyId: string,
): Promise<KeyRow> => {
  const owned = await pool.query(`SELECT 1 FROM agents WHERE id = $2 AND id ${OWNS_AGENT}`, [operatorId, agentId]);
  if (owned.rowCount === 0) throw new ApiError('AGENT_NOT_FOUND');
  const { rows } = await pool.query<KeyRow>(
    `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $2 AND agent_id = $1
     RETURNING id, agent_id, prefix, name, revoked_at, created_at, last_used_at`,
    [agentId, keyId],
  );
  const row = rows[0];
  if (!row) throw new ApiError('KEY_NOT_FOUND', { message: 'No key with this id belongs to this agent.' });
  return row;
};
