import { ApiError, type Currency, encodeCursor, fromAtomic, isId, type RedisKeys, utcDay } from '@crochet/protocol';
import type { Redis } from 'ioredis';
import type { Pool, PoolClient } from '../db.js';
import { pausedBy } from '../listings.js';
import { cursorId, isBigintId } from '../schemas.js';

/**
 * What an operator sees of the agents they claimed (DESIGN §3.7): each agent with its controls, spend and earnings
 * from the ledger, keys and listings; and the gateway requests and ledger entries of those agents. Every query is
 * scoped by the operator's claims in SQL, so nothing outside them can be read.
 */

type Db = Pool | PoolClient;

/** The claimed agents of an operator, as a subquery over parameter `$1`. */
const CLAIMED = 'SELECT agent_id FROM operator_agents WHERE operator_id = $1';

// Buyer entries are negative (debits) and positive (refunds, owed or sent back): spend is their negated sum over the
// buyer and refund_payable accounts. Seller entries are credits and their reversals; a payout moves them from payable
// to paid out: earnings are the sum over both. Only USDC is priced today.
const SPENT_TODAY_SQL = `
         greatest(0, -coalesce((SELECT sum(e.amount_atomic) FROM ledger_accounts la
                    JOIN ledger_entries e ON e.account_id = la.id
                   WHERE la.owner_id = a.id AND la.role IN ('buyer', 'refund_payable') AND la.currency = 'USDC'
                     AND e.created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'), 0))::text
           AS spent_today`;
const AGENTS_SQL = `
  SELECT a.id, a.name, a.status, a.daily_spend_cap_atomic::text, oa.claimed_at,${SPENT_TODAY_SQL},
         (-coalesce((SELECT sum(e.amount_atomic) FROM ledger_accounts la JOIN ledger_entries e ON e.account_id = la.id
                      WHERE la.owner_id = a.id AND la.role IN ('buyer', 'refund_payable') AND la.currency = 'USDC'), 0))::text
           AS spent_total,
         coalesce((SELECT sum(e.amount_atomic) FROM ledger_accounts la JOIN ledger_entries e ON e.account_id = la.id
                    WHERE la.owner_id = a.id AND la.role IN ('seller_payable', 'seller_paid') AND la.currency = 'USDC'), 0)::text
           AS earned_total
    FROM operator_agents oa JOIN agents a ON a.id = oa.agent_id
   WHERE oa.operator_id = $1 AND ($2::text IS NULL OR oa.agent_id = $2)
   ORDER BY oa.claimed_at, a.id`;

const KEY_COLUMNS = 'id, agent_id, prefix, name, revoked_at, created_at, last_used_at';
const LISTING_COLUMNS =
  'id, seller_id, name, status, pricing_model, price_atomic::text, currency, crochet_score, verified, review_count, ' +
  'operator_paused_at';

interface AgentRow {
  id: string;
  name: string;
  status: 'active' | 'paused';
  daily_spend_cap_atomic: string | null;
  claimed_at: Date;
  spent_today: string;
  spent_total: string;
  earned_total: string;
}

export interface KeyRow {
  id: string;
  agent_id: string;
  prefix: string;
  name: string;
  revoked_at: Date | null;
  created_at: Date;
  last_used_at: Date | null;
}

export interface ListingRow {
  id: string;
  seller_id: string;
  name: string;
  status: 'active' | 'paused' | 'archived';
  pricing_model: 'free' | 'per_call';
  price_atomic: string;
  currency: string;
  crochet_score: number | null;
  verified: boolean;
  review_count: number;
  operator_paused_at: Date | null;
}

const usdc = (atomic: string): string => fromAtomic(BigInt(atomic), 'USDC');

export const keySummary = (row: KeyRow) => ({
  id: row.id,
  prefix: row.prefix,
  name: row.name,
  status: row.revoked_at === null ? ('active' as const) : ('revoked' as const),
  created_at: row.created_at,
  last_used_at: row.last_used_at,
});

// Listings accept only known currencies, so the cast holds.
export const listingSummary = (row: ListingRow) => ({
  id: row.id,
  name: row.name,
  status: row.status,
  paused_by: pausedBy(row),
  pricing_model: row.pricing_model,
  price: fromAtomic(BigInt(row.price_atomic), row.currency as Currency),
  currency: row.currency,
  crochet_score: row.crochet_score,
  verified: row.verified,
  review_count: row.review_count,
});

export type AgentSummary = ReturnType<typeof agentSummary>;

const agentSummary = (row: AgentRow, keys: KeyRow[], listings: ListingRow[]) => ({
  id: row.id,
  name: row.name,
  status: row.status,
  daily_spend_cap: row.daily_spend_cap_atomic === null ? null : usdc(row.daily_spend_cap_atomic),
  spent_today: usdc(row.spent_today),
  spent_total: usdc(row.spent_total),
  earned_total: usdc(row.earned_total),
  claimed_at: row.claimed_at,
  keys: keys.filter((k) => k.agent_id === row.id).map(keySummary),
  listings: listings.filter((l) => l.seller_id === row.id).map(listingSummary),
});

/** The operator's agents (or the one given, when it is theirs) with everything the overview shows of each. */
/**
 * Where today's spend is read from: the per-agent, per-UTC-day counters the proxies enforce the cap with (so the
 * dashboard's meter and the cap agree). Without them (or with Redis unreachable) the ledger's sum for today is shown.
 */
export interface SpendCounters {
  redis: Redis;
  keys: RedisKeys;
}

/**
 * One agent's daily cap and today's spend (USDC decimals), read as the proxies enforce the cap: the Redis counter of
 * the UTC day, or the ledger's sum for today when Redis does not answer. For GET /api/v1/me.
 */
export const agentSpend = async (
  db: Db,
  agentId: string,
  counters: SpendCounters,
): Promise<{ daily_spend_cap: string | null; spent_today: string }> => {
  const [row] = (
    await db.query<{ daily_spend_cap_atomic: string | null; spent_today: string }>(
      `SELECT a.daily_spend_cap_atomic::text,${SPENT_TODAY_SQL} FROM agents a WHERE a.id = $1`,
      [agentId],
    )
  ).rows;
  const counted = await counters.redis.get(counters.keys.spend(agentId, utcDay())).catch(() => undefined);
  const spentAtomic = counted === undefined ? (row?.spent_today ?? '0') : (counted ?? '0');
  const cap = row?.daily_spend_cap_atomic ?? null;
  return { daily_spend_cap: cap === null ? null : usdc(cap), spent_today: usdc(spentAtomic) };
};

export const agentSummaries = async (
  db: Db,
  operatorId: string,
  agentId?: string,
  counters?: SpendCounters,
): Promise<AgentSummary[]> => {
  const agents = (await db.query<AgentRow>(AGENTS_SQL, [operatorId, agentId ?? null])).rows;
  if (agents.length === 0) return [];
  const ids = agents.map((a) => a.id);
  if (counters) {
    const day = utcDay();
    const spent = await counters.redis.mget(ids.map((id) => counters.keys.spend(id, day))).catch(() => null);
    if (spent) for (const [i, agent] of agents.entries()) agent.spent_today = spent[i] ?? '0';
  }
  const [keys, listings] = await Promise.all([
    db.query<KeyRow>(`SELECT ${KEY_COLUMNS} FROM api_keys WHERE agent_id = ANY ($1) ORDER BY created_at, id`, [ids]),
    db.query<ListingRow>(`SELECT ${LISTING_COLUMNS} FROM listings WHERE seller_id = ANY ($1) ORDER BY created_at, id`, [
      ids,
    ]),
  ]);
  return agents.map((a) => agentSummary(a, keys.rows, listings.rows));
};

/** One agent of the operator, or AGENT_NOT_FOUND (also for an agent that exists but is someone else's). */
export const agentSummaryOf = async (
  db: Db,
  operatorId: string,
  agentId: string,
  counters?: SpendCounters,
): Promise<AgentSummary> => {
  const [summary] = await agentSummaries(db, operatorId, agentId, counters);
  if (!summary) throw new ApiError('AGENT_NOT_FOUND');
  return summary;
};

interface GatewayRow {
  id: string;
  created_at: Date;
  listing_id: string;
  listing_name: string | null;
  buyer_id: string | null;
  seller_id: string | null;
  method: string | null;
  http_status: number | null;
  latency_ms: number | null;
  price_atomic: string | null;
  currency: string | null;
  payment_outcome: string | null;
}

/** Gateway requests where one of the operator's agents is the buyer or the seller, newest first. */
export const operatorGatewayRequests = async (
  db: Db,
  operatorId: string,
  page: { limit: number; cursor?: string | undefined },
) => {
  const after = cursorId(page.cursor, (id) => isId('gatewayRequest', id));
  // A page's worth per claimed agent and role, each from its own index (buyer_id, id / seller_id, id), then merged:
  // the cost follows the page size and the number of agents, not the size of the history.
  const { rows } = await db.query<GatewayRow>(
    `WITH claimed AS (${CLAIMED}),
     picked AS (
       SELECT g.id FROM claimed c CROSS JOIN LATERAL (
         SELECT id FROM gateway_requests WHERE buyer_id = c.agent_id AND ($2::text IS NULL OR id < $2)
          ORDER BY id DESC LIMIT $3) g
       UNION
       SELECT g.id FROM claimed c CROSS JOIN LATERAL (
         SELECT id FROM gateway_requests WHERE seller_id = c.agent_id AND ($2::text IS NULL OR id < $2)
          ORDER BY id DESC LIMIT $3) g)
     SELECT g.id, g.created_at, g.listing_id, l.name AS listing_name, g.buyer_id, g.seller_id, g.method,
            g.http_status, g.latency_ms, g.price_atomic::text, g.currency,
            g.payment -> 'outcome' ->> 'status' AS payment_outcome
       FROM (SELECT id FROM picked ORDER BY id DESC LIMIT $3) p
       JOIN gateway_requests g ON g.id = p.id
       LEFT JOIN listings l ON l.id = g.listing_id
      ORDER BY g.id DESC`,
    [operatorId, after, page.limit + 1],
  );
  const data = rows.slice(0, page.limit).map((row) => ({
    id: row.id,
    created_at: row.created_at,
    listing_id: row.listing_id,
    listing_name: row.listing_name,
    buyer_id: row.buyer_id,
    seller_id: row.seller_id,
    method: row.method,
    status_code: row.http_status,
    duration_ms: row.latency_ms,
    // The consumer records only known currencies, so the cast holds.
    price:
      row.price_atomic === null || row.currency === null
        ? null
        : fromAtomic(BigInt(row.price_atomic), row.currency as Currency),
    payment_outcome: row.payment_outcome,
  }));
  const last = data[data.length - 1];
  return { data, next_cursor: rows.length > page.limit && last ? encodeCursor([last.id]) : null };
};

interface EntryRow {
  id: string;
  created_at: Date;
  agent_id: string;
  kind: string;
  amount_atomic: string;
  currency: string;
  gateway_request_id: string | null;
  transfer_id: string | null;
}

/** Ledger entries of the operator's agents (as buyers and as sellers; never the marketplace's), newest first. */
export const operatorLedger = async (
  db: Db,
  operatorId: string,
  page: { limit: number; cursor?: string | undefined },
) => {
  const after = cursorId(page.cursor, isBigintId);
  const { rows } = await db.query<EntryRow>(
    `SELECT e.id::text, e.created_at, a.owner_id AS agent_id, e.entry_type AS kind, e.amount_atomic::text, a.currency,
            j.gateway_request_id, j.transfer_id
       FROM ledger_accounts a
       -- A page's worth per account from its index (account_id, id), then merged: the cost follows the page size.
       CROSS JOIN LATERAL (
         SELECT e.id, e.created_at, e.entry_type, e.amount_atomic, e.journal_id FROM ledger_entries e
          WHERE e.account_id = a.id AND ($2::bigint IS NULL OR e.id < $2::bigint)
          ORDER BY e.id DESC LIMIT $3) e
       JOIN ledger_journals j ON j.id = e.journal_id
      WHERE a.owner_id IN (${CLAIMED}) AND a.role IN ('buyer', 'refund_payable', 'seller_payable', 'seller_paid')
      ORDER BY e.id DESC LIMIT $3`,
    [operatorId, after, page.limit + 1],
  );
  const data = rows.slice(0, page.limit).map((row) => ({
    id: row.id,
    created_at: row.created_at,
    agent_id: row.agent_id,
    kind: row.kind,
    // Posting accepts only known currencies, so the cast holds.
    amount: fromAtomic(BigInt(row.amount_atomic), row.currency as Currency),
    currency: row.currency,
    gateway_request_id: row.gateway_request_id,
    transfer_id: row.transfer_id,
  }));
  const last = data[data.length - 1];
  return { data, next_cursor: rows.length > page.limit && last ? encodeCursor([last.id]) : null };
};

interface TransferSummaryRow {
  id: string;
  kind: 'payout' | 'refund';
  owner_id: string;
  status: 'pending' | 'broadcast' | 'confirmed' | 'failed';
  amount_atomic: string;
  currency: string;
  network: string;
  to_address: string;
  tx: string | null;
  signed: boolean;
  gateway_request_id: string | null;
  requested_by: 'api' | 'auto' | 'refund';
  error: string | null;
  created_at: Date;
  confirmed_at: Date | null;
}

/**
 * Money out to the operator's agents (§3.9), newest first: payouts to them as sellers and refunds sent back to them as
 * buyers, each with its state, amount, network and transaction. Ids are ULIDs behind a three-character prefix
 * (po_, rf_), so the ULID orders both kinds together.
 */
export const operatorTransfers = async (
  db: Db,
  operatorId: string,
  page: { limit: number; cursor?: string | undefined },
) => {
  const after = cursorId(page.cursor, (id) => isId('payout', id) || isId('refund', id));
  const { rows } = await db.query<TransferSummaryRow>(
    `SELECT t.id, t.kind, t.owner_id, t.status, t.amount_atomic::text, t.currency, t.network, t.to_address, t.tx,
            t.signed_tx IS NOT NULL AS signed, t.gateway_request_id, t.requested_by, t.error, t.created_at,
            t.confirmed_at
       FROM money_transfers t
      WHERE t.owner_id IN (${CLAIMED}) AND ($2::text IS NULL OR substr(t.id, 4) < substr($2, 4))
      ORDER BY substr(t.id, 4) DESC LIMIT $3`,
    [operatorId, after, page.limit + 1],
  );
  const data = rows.slice(0, page.limit).map((row) => ({
    id: row.id,
    kind: row.kind,
    agent_id: row.owner_id,
    status: row.status,
    // Transfers are only ever made in known currencies (USDC), so the cast holds.
    amount: fromAtomic(BigInt(row.amount_atomic), row.currency as Currency),
    currency: row.currency,
    network: row.network,
    to: row.to_address,
    // As GET /api/v1/payouts: a transaction id is shown once the transaction it names was signed.
    tx: row.signed ? row.tx : null,
    gateway_request_id: row.gateway_request_id,
    requested_by: row.requested_by,
    error: row.error,
    created_at: row.created_at,
    confirmed_at: row.confirmed_at,
  }));
  const last = data[data.length - 1];
  return { data, next_cursor: rows.length > page.limit && last ? encodeCursor([last.id]) : null };
};
