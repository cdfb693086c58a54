import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import {
  type Address,
  BaseError,
  type Chain,
  type Hash,
  type Hex,
  HttpRequestError,
  keccak256,
  type LocalAccount,
  type PublicClient,
  RpcRequestError,
  TimeoutError,
  type WalletClient,
} from 'viem';

/**
 * Nonces for one EVM settler account (`CROCHET_EVM_SETTLER_KEY`) shared by every proxy.
 *
 * An account's transactions must carry consecutive nonces. viem's nonce manager counts per process, so two proxies
 * settling x402 payments with one key pick the same nonce: one broadcast is rejected ("nonce too low", "replacement
 * transaction underpriced") and its settlement fails, or replaces the other.
 *
 * Design: a short lease in Redis around "pick the nonce, sign, broadcast" — and nothing else: gas and fees are
 * estimated before it, the receipt is awaited after it.
 *
 *   1. Take the lease: `SET lease <token> NX PX leaseMs`; while another proxy holds it, wait (a few ms, jittered).
 *   2. nonce = max(the chain's pending nonce, `next`). `next` is the nonce after the last broadcast any proxy made: it
 *      covers RPC nodes behind a balancer whose view of the pool lags behind the node that took the broadcast.
 *   3. Sign locally, `eth_sendRawTransaction`:
 *      - accepted → `next` = nonce + 1;
 *      - the nonce is taken ("nonce too low", "already known", "replacement transaction underpriced": a broadcast
 *        the chain saw and we did not count) → nonce + 1, try again;
 *      - refused for another reason (insufficient funds, …) → nothing moves; the error goes to the facilitator, which
 *        reports the settlement failed (nothing was broadcast);
 *      - no answer (timeout, connection lost) → the same bytes are sent again (same hash) twice; still no answer:
 *        counted as sent (`next` = nonce + 1) and the hash is returned — the facilitator waits for that receipt and,
 *        not seeing it in time, records the settlement pending under that hash, so a retry waits for it instead of
 *        broadcasting again. (Had the node not taken it after all, the hole below refills its nonce; that buyer's
 *        settlement then stays pending until its authorization expires — no money moves twice, none is lost.)
 *   4. Give the lease back (if still ours).
 *
 * A proxy that dies holding the lease: the lease expires after `leaseMs`; the next holder asks the chain, whose
 * pending nonce counts whatever the dead proxy broadcast. A nonce is never held outside the lease — it is chosen and
 * used within one lease, and `next` only moves past a broadcast the chain accepted — so a proxy that dies cannot
 * leave a hole that blocks the settlements after it.
 *
 * A hole can still come from the chain's side: a broadcast transaction dropped from every pool. Then the pending
 * nonce stands still below `next` while later transactions wait behind the hole. When it has not moved for `gapMs`,
 * `next` is distrusted and the chain's pending nonce is used: the next settlement fills the hole.
 *
 * The lease makes conflicts rare; the chain makes them harmless (it never accepts one nonce twice). Two holders can
 * overlap only when one stalls past its lease; the second then meets "nonce too low" and moves on. Throughput is one
 * broadcast per lease (two RPC round trips and a few Redis commands) per settler key across all proxies; more keys
 * would scale it, one coordinator each.
 */
export interface SettlerNonceOptions {
  redis: Redis;
  /** `settlerLease` and `settlerNonce` of protocol's redisKeys, for this chain and account. */
  keys: { lease: string; nonce: string };
  /** How long a lease lasts if its holder never gives it back (it dies). Default 10 s. */
  leaseMs?: number;
  /** How long to wait for the lease before giving up (nothing is broadcast then). Default 30 s. */
  acquireTimeoutMs?: number;
  /** How long the chain's pending nonce may stand still below `next` before the hole is refilled. Default 15 s. */
  gapMs?: number;
  log?: { warn(details: object, message: string): void };
}

/** The transaction a settlement sends: the facilitator's `transferWithAuthorization` call (or a wallet deployment). */
export interface SettlerTransaction {
  to: Address;
  data: Hex;
  value?: bigint;
  gas?: bigint;
}

/** The settler could not broadcast: no lease (Redis down, or held past the wait), or the nonce kept being taken. */
export class SettlerUnavailableError extends Error {
  override name = 'SettlerUnavailableError';
}

const MAX_TAKEN = 16;
const RESENDS = 2;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** "This nonce is used already": by a transaction the chain accepted, maybe our own. */
const NONCE_TAKEN =
  /nonce too low|already known|already imported|known transaction|replacement transaction underpriced/i;

const messagesOf = (error: unknown): string => {
  const parts: string[] = [];
  if (error instanceof BaseError) {
    error.walk((e) => {
      const be = e as BaseError & { details?: string };
      parts.push(be.shortMessage ?? '', be.details ?? '', (e as Error).message ?? '');
      return false;
    });
  } else if (error instanceof Error) {
    parts.push(error.message);
  }
  return parts.join(' | ');
};

/** No answer from the RPC (we cannot know whether the node took the transaction). */
const noAnswer = (error: unknown): boolean =>
  error instanceof BaseError
    ? error.walk((e) => e instanceof HttpRequestError || e instanceof TimeoutError) !== null &&
      error.walk((e) => e instanceof RpcRequestError) === null
    : false;

export const createSettlerSender = (
  client: PublicClient,
  wallet: WalletClient,
  account: LocalAccount,
  chain: Chain,
  options: SettlerNonceOptions,
) => {
  const { redis, keys } = options;
  const leaseMs = options.leaseMs ?? 10_000;
  const acquireTimeoutMs = options.acquireTimeoutMs ?? 30_000;
  const gapMs = options.gapMs ?? 15_000;

  const acquire = async (): Promise<string> => {
    const token = randomUUID();
    const giveUpAt = Date.now() + acquireTimeoutMs;
    for (;;) {
      if ((await redis.set(keys.lease, token, 'PX', leaseMs, 'NX')) === 'OK') return token;
      if (Date.now() > giveUpAt) {
        throw new SettlerUnavailableError(`the settler lease stayed taken for ${acquireTimeoutMs} ms`);
      }
      await sleep(2 + Math.random() * 8);
    }
  };

  // Not atomic (no script): deleting a lease that expired and went to another proxy in between lets two holders
  // overlap once, which the chain makes harmless (see above).
  const release = async (token: string): Promise<void> => {
    if ((await redis.get(keys.lease)) === token) await redis.del(keys.lease);
  };

  const pickNonce = async (): Promise<number> => {
    const [pending, hint] = await Promise.all([
      client.getTransactionCount({ address: account.address, blockTag: 'pending' }),
      redis.hgetall(keys.nonce),
    ]);
    const next = Number(hint['next'] ?? 0);
    if (next <= pending) return pending;
    // `next` is ahead of what the chain shows: a lagging node (the pending nonce moves) or a hole (it stands still).
    const now = Date.now();
    if (Number(hint['stuck_at'] ?? -1) !== pending) {
      await redis.hset(keys.nonce, { stuck_at: pending, stuck_since: now });
      return next;
    }
    if (now - Number(hint['stuck_since'] ?? now) < gapMs) return next;
    options.log?.warn(
      { address: account.address, pending, next },
      'settler nonce hole: the chain stood still below the nonces broadcast; refilling it',
    );
    await redis.hset(keys.nonce, { next: pending, stuck_at: -1, stuck_since: 0 });
    return pending;
  };

  const advance = (nonce: number) =>
    redis.hset(keys.nonce, { next: nonce + 1, stuck_at: -1, stuck_since: 0 }).catch(() => {
      // The next holder asks the chain as well: a lost hint costs at most a "nonce too low" or a refilled hole.
    });

  /** accepted | taken | no answer | refused (the node's error). */
  const broadcast = async (
    serializedTransaction: Hex,
    hash: Hash,
  ): Promise<'accepted' | 'taken' | 'unknown' | { refused: unknown }> => {
    for (let attempt = 0; attempt <= RESENDS; attempt++) {
      try {
        await wallet.sendRawTransaction({ serializedTransaction });
        return 'accepted';
      } catch (error) {
        if (noAnswer(error)) continue;
        if (!NONCE_TAKEN.test(messagesOf(error))) return { refused: error };
        if (attempt === 0) return 'taken';
        // Sent again after no answer: the nonce may be taken by our own first send. The chain knows.
        const ours = await client.getTransaction({ hash }).then(
          () => true,
          () => false,
        );
        return ours ? 'accepted' : 'taken';
      }
    }
    return 'unknown';
  };

  return {
    address: account.address,
    /** Signs `tx` with the next nonce of the account across all proxies and broadcasts it; its hash. */
    async send(tx: SettlerTransaction): Promise<Hash> {
      // Outside the lease: what does not depend on the nonce (gas, fees, transaction type).
      const prepared = await client.prepareTransactionRequest({
        account,
        chain,
        to: tx.to,
        data: tx.data,
        ...(tx.value === undefined ? {} : { value: tx.value }),
        ...(tx.gas === undefined ? {} : { gas: tx.gas }),
        parameters: ['fees', 'gas', 'type', 'chainId'],
      });
      let token: string;
      try {
        token = await acquire();
      } catch (error) {
        throw error instanceof SettlerUnavailableError
          ? error
          : new SettlerUnavailableError('the settler lease could not be taken (Redis)', { cause: error });
      }
      try {
        let nonce = await pickNonce();
        for (let taken = 0; taken < MAX_TAKEN; taken++) {
          const serialized = await account.signTransaction({ ...prepared, nonce } as never);
          const hash = keccak256(serialized);
          const outcome = await broadcast(serialized, hash);
          if (outcome === 'accepted') {
            await advance(nonce);
            return hash;
          }
          // No answer: counted as sent. Had the node not taken it, the hole is refilled (gapMs); counting it unsent
          // instead could let a later settlement replace it in the pool and orphan this one.
          if (outcome === 'unknown') {
            await advance(nonce);
            return hash;
          }
          if (outcome !== 'taken') throw outcome.refused;
          await advance(nonce);
          nonce = await pickNonce();
        }
        throw new SettlerUnavailableError(`the settler's nonce was taken ${MAX_TAKEN} times in a row`);
      } finally {
        await release(token).catch(() => {
          // It expires by itself.
        });
      }
    },
  };
};

export type SettlerSender = ReturnType<typeof createSettlerSender>;
