import { apiKeyDisplayPrefix, generateApiKey, hashApiKey, newId } from '@crochet/protocol';
import type { Pool, PoolClient } from './db.js';

/** Rows and their API views for agents, keys and wallets. */

export interface AgentRow {
  id: string;
  name: string;
  description: string;
  status: string;
  created_at: Date;
}

export interface KeyRow {
  id: string;
  prefix: string;
  name: string;
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

export interface WalletRow {
  chain: 'evm' | 'solana';
  address: string;
  verified_at: Date | null;
  created_at: Date;
}

export const agentView = (row: AgentRow) => ({
  id: row.id,
  name: row.name,
  description: row.description,
  status: row.status,
  created_at: row.created_at,
});

export const keyView = (row: KeyRow) => ({
  id: row.id,
  prefix: row.prefix,
  name: row.name,
  created_at: row.created_at,
  last_used_at: row.last_used_at,
  revoked_at: row.revoked_at,
});

export const walletView = (row: WalletRow) => ({
  chain: row.chain,
  address: row.address,
  verified: row.verified_at !== null,
  verified_at: row.verified_at,
  created_at: row.created_at,
});

/** An agent's wallets, oldest first. */
export const listWallets = async (db: Pool | PoolClient, agentId: string): Promise<WalletRow[]> =>
  (
    await db.query<WalletRow>(
      'SELECT chain, address, verified_at, created_at FROM wallets WHERE agent_id = $1 ORDER BY created_at, address',
      [agentId],
    )
  ).rows;

const KEY_COLUMNS = 'id, prefix, name, created_at, last_used_at, revoked_at';

/** Creates a key for an agent; the returned `apiKey` is the only time the key exists outside its hash. */
export const createKey = async (
  db: Pool | PoolClient,
  agentId: string,
  name: string,
): Promise<{ apiKey: string; key: KeyRow }> => {
  const apiKey = generateApiKey();
  const { rows } = await db.query<KeyRow>(
    `INSERT INTO api_keys (id, agent_id, key_hash, prefix, name) VALUES ($1, $2, $3, $4, $5) RETURNING ${KEY_COLUMNS}`,
    [newId('key'), agentId, hashApiKey(apiKey), apiKeyDisplayPrefix(apiKey), name],
  );
  return { apiKey, key: rows[0]! };
};

/** The body of register and recover: the agent, its new key (once) and the header to use. */
export const issuedKeyView = (agent: AgentRow, issued: { apiKey: string; key: KeyRow }) => ({
  agent: agentView(agent),
  api_key: issued.apiKey,
  authorization_header: `Bearer ${issued.apiKey}`,
  key: keyView(issued.key),
});

export const listKeys = async (db: Pool | PoolClient, agentId: string): Promise<KeyRow[]> =>
  (await db.query<KeyRow>(`SELECT ${KEY_COLUMNS} FROM api_keys WHERE agent_id = $1 ORDER BY created_at, id`, [agentId]))
    .rows;

export const getAgent = async (db: Pool | PoolClient, agentId: string): Promise<AgentRow | undefined> =>
  (await db.query<AgentRow>('SELECT id, name, description, status, created_at FROM agents WHERE id = $1', [agentId]))
    .rows[0];
