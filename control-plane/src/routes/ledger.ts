import { type Currency, encodeCursor, fromAtomic, PAGE_LIMIT_DEFAULT } from '@crochet/protocol';
import { type Static, Type } from 'typebox';
import type { App, Deps } from '../app.js';
import { sqlParams } from '../db.js';
import { cursorId, Data, isBigintId, List, ListingIdSchema, PageQuery, Timestamp } from '../schemas.js';

type AccountRole = 'buyer' | 'refund_payable' | 'seller_payable' | 'seller_paid';

interface EntryRow {
  id: string; // bigint columns arrive as strings
  journal_id: string;
  gateway_request_id: string | null;
  transfer_id: string | null;
  entry_type: string;
  amount_atomic: string;
  currency: string;
  role: AccountRole;
  listing_id: string | null;
  network: string | null;
  tx: string | null;
  created_at: Date;
}

const RoleSchema = Type.Union([Type.Literal('buyer'), Type.Literal('seller')], {
  description:
    'buyer: what you paid and what is owed back to you (debits, refunds); seller: what you earned and what was ' +
    'paid out to you (credits, reversals, payouts)',
});

/**
 * The caller's accounts, by what they hold: as buyer, `paid` (negative: what you paid for calls; a refund sent back
 * on chain cancels a debit) and `refund_due` (what the marketplace owes you back, until it is sent); as seller,
 * `payable` (what you earned and were not paid out yet) and `paid_out` (sent to your wallet).
 */
const ACCOUNT: Record<AccountRole, { role: 'buyer' | 'seller'; account: string }> = {
  buyer: { role: 'buyer', account: 'paid' },
  refund_payable: { role: 'buyer', account: 'refund_due' },
  seller_payable: { role: 'seller', account: 'payable' },
  seller_paid: { role: 'seller', account: 'paid_out' },
};
const AccountSchema = Type.Union(
  [Type.Literal('paid'), Type.Literal('refund_due'), Type.Literal('payable'), Type.Literal('paid_out')],
  {
    description:
      'paid: what you paid for calls (negative); refund_due: owed back to you until the refund is sent on chain; ' +
      'payable: earned and not paid out yet; paid_out: sent to your wallet',
  },
);

const Amount = {
  amount: Type.String({ description: 'signed decimal: negative is money out of the account (e.g. "-0.01")' }),
  amount_atomic: Type.String({ description: 'the same in integer atomic units of the currency' }),
  currency: Type.String({ description: 'e.g. USDC' }),
};

const LedgerEntry = Type.Object({
  id: Type.String({ description: 'entry id' }),
  journal_id: Type.String({ description: 'the balanced journal this entry belongs to' }),
  gateway_request_id: Type.Union([Type.String(), Type.Null()], {
    description: 'gr_… id of the paid call; null for a payout',
  }),
  transfer_id: Type.Union([Type.String(), Type.Null()], {
    description: 'po_… / rf_… id of the payout or refund sent on chain (GET /api/v1/payouts), when the entry books one',
  }),
  entry_type: Type.Union(
    [
      Type.Literal('buyer_debit'),
      Type.Literal('seller_credit'),
      Type.Literal('marketplace_fee'),
      Type.Literal('buyer_debit_reversal'),
      Type.Literal('seller_credit_reversal'),
      Type.Literal('marketplace_fee_reversal'),
      Type.Literal('refund_owed'),
      Type.Literal('refund_sent'),
      Type.Literal('seller_payout'),
      Type.Literal('payout_sent'),
    ],
    {
      description:
        'buyer_debit / seller_credit: a paid call; *_reversal and refund_owed: a refund (the call is not charged, ' +
        'its price is owed back); refund_sent with buyer_debit_reversal: the refund sent back on chain; ' +
        'seller_payout with payout_sent: a payout to your wallet',
    },
  ),
  role: RoleSchema,
  account: AccountSchema,
  ...Amount,
  listing_id: Type.Union([ListingIdSchema, Type.Null()]),
  payment: Type.Object({
    network: Type.Union([Type.String(), Type.Null()], {
      description: 'CAIP-2 network of the settlement (of the transfer, for a payout or a refund sent)',
    }),
    tx: Type.Union([Type.String(), Type.Null()], { description: 'its transaction' }),
  }),
  created_at: Timestamp,
});

const Balance = Type.Object({
  role: RoleSchema,
  account: AccountSchema,
  ...Amount,
  entries: Type.Integer({ description: 'number of entries summed' }),
});

const ROLE_OF: Record<'buyer' | 'seller', AccountRole[]> = {
  buyer: ['buyer', 'refund_payable'],
  seller: ['seller_payable', 'seller_paid'],
};

// The caller's accounts come first (a handful per agent), then their entries by the (account, id DESC) index.
const ENTRY_COLUMNS = `e.id::text, e.journal_id::text, j.gateway_request_id, j.transfer_id, e.entry_type,
  e.amount_atomic::text, a.currency, a.role, j.listing_id, j.network, j.tx, e.created_at`;

/**
 * §3.5: the caller's own ledger — entries of their buyer and seller-payable accounts, and their balances. The
 * marketplace's fee account and other agents' entries are never shown.
 */
export const ledgerRoutes = (app: App, { pool }: Deps): void => {
  app.get(
    '/api/v1/ledger',
    {
      schema: {
        operationId: 'listLedgerEntries',
        summary: 'Your ledger entries, newest first: debits and refunds as buyer, credits and reversals as seller',
        tags: ['gateway'],
        querystring: Type.Object(
          {
            role: Type.Optional(RoleSchema),
            gateway_request_id: Type.Optional(Type.String({ maxLength: 64, description: 'entries of one call' })),
            since: Type.Optional(Type.String({ format: 'date-time', description: 'entries created at or after' })),
            ...PageQuery,
          },
          { additionalProperties: false },
        ),
        response: { 200: List(LedgerEntry) },
      },
      config: { auth: 'api_key', errors: ['VALIDATION_FAILED'] },
    },
    async (request) => {
      const query = request.query;
      const limit = query.limit ?? PAGE_LIMIT_DEFAULT;
      const { params, bind } = sqlParams();
      const roles = query.role ? ROLE_OF[query.role] : Object.values(ROLE_OF).flat();
      const where = [`a.owner_id = ${bind(request.agent!.agentId)}`, `a.role = ANY (${bind(roles)}::text[])`];
      if (query.gateway_request_id) where.push(`j.gateway_request_id = ${bind(query.gateway_request_id)}`);
      if (query.since) where.push(`e.created_at >= ${bind(query.since)}::timestamptz`);
      const after = cursorId(query.cursor, isBigintId);
      if (after !== null) where.push(`e.id < ${bind(after)}::bigint`);
      const { rows } = await pool.query<EntryRow>(
        `SELECT ${ENTRY_COLUMNS}
           FROM ledger_accounts a
           JOIN ledger_entries e ON e.account_id = a.id
           JOIN ledger_journals j ON j.id = e.journal_id
          WHERE ${where.join(' AND ')}
          ORDER BY e.id DESC LIMIT ${limit + 1}`,
        params,
      );
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        data: page.map((row) => ({
          id: row.id,
          journal_id: row.journal_id,
          gateway_request_id: row.gateway_request_id,
          transfer_id: row.transfer_id,
          entry_type: row.entry_type as Static<typeof LedgerEntry>['entry_type'],
          ...(ACCOUNT[row.role] as { role: 'buyer' | 'seller'; account: Static<typeof AccountSchema> }),
          // Posting accepts only known currencies (the consumer checked them), so the cast holds.
          amount: fromAtomic(BigInt(row.amount_atomic), row.currency as Currency),
          amount_atomic: row.amount_atomic,
          currency: row.currency,
          listing_id: row.listing_id,
          payment: { network: row.network, tx: row.tx },
          created_at: row.created_at,
        })),
        next_cursor: rows.length > limit && last ? encodeCursor([last.id]) : null,
      };
    },
  );

  app.get(
    '/api/v1/ledger/balances',
    {
      schema: {
        operationId: 'getLedgerBalances',
        summary:
          'Your balances per account and currency: as buyer what you paid and what is owed back to you, as seller ' +
          'what is payable to you and what was paid out',
        tags: ['gateway'],
        response: { 200: Data(Type.Array(Balance)) },
      },
      config: { auth: 'api_key', errors: [] },
    },
    async (request) => {
      const { rows } = await pool.query<{ role: AccountRole; currency: string; total: string; entries: number }>(
        `SELECT a.role, a.currency, coalesce(sum(e.amount_atomic), 0)::text AS total, count(e.id)::int AS entries
           FROM ledger_accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id
          WHERE a.owner_id = $1 AND a.role = ANY ($2::text[])
          GROUP BY a.role, a.currency ORDER BY a.role, a.currency`,
        [request.agent!.agentId, Object.values(ROLE_OF).flat()],
      );
      return {
        data: rows.map((row) => ({
          ...(ACCOUNT[row.role] as { role: 'buyer' | 'seller'; account: Static<typeof AccountSchema> }),
          amount: fromAtomic(BigInt(row.total), row.currency as Currency),
          amount_atomic: row.total,
          currency: row.currency,
          entries: row.entries,
        })),
      };
    },
  );
};
