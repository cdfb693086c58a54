import { ApiError, type Currency, fromAtomic, newId } from '@crochet/protocol';
import { type Pool, type PoolClient, transaction } from '../db.js';
import { walletAddressOrThrow } from '../wallets.js';
import type { Treasury } from './treasury.js';

/**
 * §3.9 payouts: a seller asks to be paid its payable balance (or part of it) on a network, to a verified wallet of
 * theirs on that chain. Asking writes a `money_transfers` row (pending); the transfers job signs, sends and books it
 * (transfers.ts). What may be asked for is the seller's payable balance in the ledger less the payouts on their way
 * (pending or broadcast): one seller's requests are taken one at a time (an advisory lock per seller), so concurrent
 * requests can never together ask for more than is payable.
 */

export type TransferKind = 'payout' | 'refund';
export type TransferStatus = 'pending' | 'broadcast' | 'confirmed' | 'failed';

/** All money out is USDC (6 decimals on every network the gateway takes payments on). */
export const TRANSFER_CURRENCY: Currency = 'USDC';

export interface TransferRow {
  id: string;
  kind: TransferKind;
  owner_id: string;
  gateway_request_id: string | null;
  idempotency_key: string | null;
  network: string;
  to_address: string;
  amount_atomic: string;
  currency: string;
  status: TransferStatus;
  tx: string | null;
  signed_tx: string | null;
  valid_until: string | null;
  error: string | null;
  requested_by: 'api' | 'auto' | 'refund';
  /** Why an open transfer is held for an operator (its fate cannot be told on chain), else null. */
  review: string | null;
  created_at: Date;
  confirmed_at: Date | null;
}

export const TRANSFER_COLUMNS = `id, kind, owner_id, gateway_request_id, idempotency_key, network, to_address,
  amount_atomic::text, currency, status, tx, signed_tx, valid_until::text, error, requested_by, review, created_at,
  confirmed_at`;

/** How a transfer is shown to its owner (never the signed bytes). */
export const transferView = (row: TransferRow) => ({
  id: row.id,
  kind: row.kind,
  status: row.status,
  amount: fromAtomic(BigInt(row.amount_atomic), row.currency as Currency),
  amount_atomic: row.amount_atomic,
  currency: row.currency,
  network: row.network,
  to: row.to_address,
  tx: row.status === 'pending' && row.signed_tx === null ? null : row.tx,
  gateway_request_id: row.gateway_request_id,
  requested_by: row.requested_by,
  error: row.error,
  created_at: row.created_at,
  confirmed_at: row.confirmed_at,
});

/** The chain of a CAIP-2 network, as wallets name it. */
export const chainOf = (network: string): 'solana' | 'evm' | null =>
  network.startsWith('solana:') ? 'solana' : network.startsWith('eip155:') ? 'evm' : null;

// The seller's payable balance in the ledger, less its payouts on their way. Booked payouts are in the ledger already
// (their journal is written with their confirmation), so each payout counts once, whatever its state.
const PAYABLE_SQL = `
  SELECT (SELECT coalesce(sum(e.amount_atomic), 0) FROM ledger_accounts a JOIN ledger_entries e ON e.account_id = a.id
           WHERE a.owner_id = $1 AND a.role = 'seller_payable' AND a.currency = $2)
       - (SELECT coalesce(sum(amount_atomic), 0) FROM money_transfers
           WHERE owner_id = $1 AND kind = 'payout' AND currency = $2 AND status IN ('pending', 'broadcast'))
         AS payable`;

/** What a seller may still be paid out: its payable balance less the payouts on their way. */
export const payableAtomic = async (db: Pool | PoolClient, ownerId: string): Promise<bigint> => {
  const { rows } = await db.query<{ payable: string }>(PAYABLE_SQL, [ownerId, TRANSFER_CURRENCY]);
  return BigInt(rows[0]!.payable);
};

export interface PayoutRequest {
  ownerId: string;
  network: string;
  /** Null: the whole payable balance. */
  amountAtomic: bigint | null;
  /** A verified wallet of the seller on the network's chain; null: the one verified last. */
  to: string | null;
  /** The request's Idempotency-Key: the same key answers the same payout again. */
  idempotencyKey: string | null;
  requestedBy: 'api' | 'auto';
  /** `CROCHET_PAYOUT_MINIMUM`: a smaller payout is refused (PAYOUT_AMOUNT_INVALID). */
  minimumAtomic: bigint;
}

/**
 * Creates a payout (pending), or answers the one created earlier under the same Idempotency-Key (`created: false`).
 * Throws the registry's errors for what the seller can fix.
 */
export const createPayout = async (
  pool: Pool,
  treasuries: ReadonlyMap<string, Treasury>,
  request: PayoutRequest,
): Promise<{ transfer: TransferRow; created: boolean }> => {
  const chain = chainOf(request.network);
  const treasury = treasuries.get(request.network);
  if (!treasury || !chain) {
    throw new ApiError('PAYOUT_NETWORK_UNSUPPORTED', {
      message: `This gateway does not pay out on ${request.network}.`,
      details: { networks: [...treasuries.keys()] },
    });
  }
  const to = request.to === null ? null : walletAddressOrThrow(chain, request.to);
  return transaction(pool, async (client) => {
    // One seller's payout requests one at a time: two cannot both take the same payable money.
    await client.query(`SELECT pg_advisory_xact_lock(hashtextextended('crochet:payout:' || $1, 0))`, [request.ownerId]);
    // The request as asked (not what it came to: "everything payable" is not "0.5", even if that is what it paid).
    const asked = JSON.stringify({
      network: request.network,
      amount_atomic: request.amountAtomic?.toString() ?? null,
      to,
    });
    if (request.idempotencyKey !== null) {
      const { rows } = await client.query<TransferRow & { idempotency_request: string | null }>(
        `SELECT ${TRANSFER_COLUMNS}, idempotency_request FROM money_transfers WHERE owner_id = $1 AND idempotency_key = $2`,
        [request.ownerId, request.idempotencyKey],
      );
      const earlier = rows[0];
      if (earlier) {
        const { idempotency_request: earlierAsked, ...transfer } = earlier;
        // A payout from before the request was stored with its key: compared by what it came to.
        const same =
          earlierAsked === null
            ? earlier.network === request.network &&
              (request.amountAtomic === null || BigInt(earlier.amount_atomic) === request.amountAtomic) &&
              (to === null || earlier.to_address === to)
            : earlierAsked === asked;
        if (!same) {
          throw new ApiError('IDEMPOTENCY_KEY_REUSED', { details: { payout_id: earlier.id } });
        }
        return { transfer, created: false };
      }
    }
    // FOR SHARE: a wallet removed meanwhile (DELETE takes the row lock) waits for this payout or is gone before it.
    const { rows: wallets } = await client.query<{ address: string }>(
      `SELECT address FROM wallets
        WHERE agent_id = $1 AND chain = $2 AND verified_at IS NOT NULL AND ($3::text IS NULL OR address = $3)
        ORDER BY verified_at DESC LIMIT 1 FOR SHARE`,
      [request.ownerId, chain, to],
    );
    const wallet = wallets[0];
    if (!wallet) {
      throw new ApiError('PAYOUT_WALLET_REQUIRED', {
        message:
          request.to === null
            ? `You have no verified ${chain === 'evm' ? 'EVM' : 'Solana'} wallet to be paid to on ${request.network}.`
            : `${to} is not a verified wallet of yours.`,
      });
    }
    const payable = await payableAtomic(client, request.ownerId);
    if (payable <= 0n) throw new ApiError('NOTHING_TO_PAY_OUT');
    const amount = request.amountAtomic ?? payable;
    if (amount < request.minimumAtomic) {
      const minimum = fromAtomic(request.minimumAtomic, TRANSFER_CURRENCY);
      throw new ApiError('PAYOUT_AMOUNT_INVALID', {
        message:
          request.amountAtomic === null
            ? `What is payable to you (${fromAtomic(payable, TRANSFER_CURRENCY)} USDC) is below the smallest payout, ${minimum} USDC.`
            : `The smallest payout is ${minimum} USDC.`,
        details: { minimum, payable: fromAtomic(payable, TRANSFER_CURRENCY) },
      });
    }
    if (amount > payable) {
      throw new ApiError('PAYOUT_EXCEEDS_PAYABLE', {
        message: `The payout is larger than what is payable to you (${fromAtomic(payable, TRANSFER_CURRENCY)} USDC).`,
        details: { payable: fromAtomic(payable, TRANSFER_CURRENCY), payable_atomic: payable.toString() },
      });
    }
    const { rows } = await client.query<TransferRow>(
      `INSERT INTO money_transfers (id, kind, owner_id, idempotency_key, network, to_address, amount_atomic, currency,
                                    status, requested_by, idempotency_request)
       VALUES ($1, 'payout', $2, $3, $4, $5, $6, $7, 'pending', $8, $9)
       RETURNING ${TRANSFER_COLUMNS}`,
      [
        newId('payout'),
        request.ownerId,
        request.idempotencyKey,
        request.network,
        wallet.address,
        amount.toString(),
        TRANSFER_CURRENCY,
        request.requestedBy,
        request.idempotencyKey === null ? null : asked,
      ],
    );
    return { transfer: rows[0]!, created: true };
  });
};
