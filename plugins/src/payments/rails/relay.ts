import type { Hash, PublicClient } from 'viem';
import type { EvmRailConfig, RelayRailConfig } from '../config.js';
import { type Proof, txProofId } from '../proof.js';
import {
  createRelayClient,
  RelayApiError,
  type RelayClient,
  RelayError,
  RelayTimeoutError,
  RelayUnavailableError,
} from '../relay-client.js';
import { checkEvmPayment, evmClient } from './evm-transfer.js';
import {
  type PaymentCall,
  type PaymentRail,
  pending,
  refuse,
  type Verdict,
  VerifierUnavailableError,
} from './types.js';

/** Statuses of a Relay request still on its way: the buyer retries with the same id (PAYMENT_PENDING). */
const IN_FLIGHT = new Set(['waiting', 'depositing', 'pending', 'submitted', 'delayed']);

/**
 * Relay could not tell us now — slow, down, erroring, refusing our API key, or answering something we cannot read.
 * That is the verifier's failure (503 PAYMENT_VERIFIER_UNAVAILABLE), never the payment's.
 */
const relayUnavailable = (error: RelayError): VerifierUnavailableError => {
  let reason = 'answered something the gateway cannot read';
  if (error instanceof RelayTimeoutError) reason = `did not answer within ${error.timeoutMs} ms`;
  else if (error instanceof RelayUnavailableError) reason = 'could not be reached';
  else if (error instanceof RelayApiError) {
    reason =
      error.status === 401 || error.status === 403
        ? `refused the gateway's API key (HTTP ${error.status})`
        : `answered HTTP ${error.status}`;
  }
  const slowDown = error instanceof RelayApiError && error.status === 429;
  return new VerifierUnavailableError('Relay API', reason, {
    cause: error,
    ...(slowDown ? { retryAfterSeconds: 10 } : {}),
  });
};

const askRelay = async <T>(call: () => Promise<T>): Promise<T> => {
  try {
    return await call();
  } catch (error) {
    throw error instanceof RelayError ? relayUnavailable(error) : error;
  }
};

/** Relay's answers do not add up (its two APIs disagree, or a success names no delivery): ask again later. */
const inconsistent = (what: string) => new VerifierUnavailableError('Relay API', what);

/**
 * `X-Crochet-Relay-Request-Id: 0x…` — a Relay request whose status is `success`, whose recipient, currency and amount
 * are the marketplace's, and whose destination fill transaction really paid the marketplace on chain. The request
 * id and its fill transaction are consumed together, so the fill cannot be spent again as a direct transfer.
 *
 * The status comes from `GET /intents/status/v3`, the request's details from `GET /requests/v3` (relay-client.ts).
 * A request Relay says is in flight is PAYMENT_PENDING; Relay failing to answer is PAYMENT_VERIFIER_UNAVAILABLE
 * (thrown as `VerifierUnavailableError`); a request that failed or was refunded is refused.
 */
export const relayRail = (
  relay: RelayRailConfig,
  evm: EvmRailConfig,
  options: { timeoutMs: number; client?: RelayClient; chain?: PublicClient },
): PaymentRail => {
  const client =
    options.client ?? createRelayClient({ baseUrl: relay.apiUrl, apiKey: relay.apiKey, timeoutMs: options.timeoutMs });
  const chain = options.chain ?? evmClient(evm);
  return {
    name: 'relay',
    accepts: (proof: Proof) => proof.kind === 'relay',
    async verify(proof: Proof, call: PaymentCall): Promise<Verdict> {
      if (proof.kind !== 'relay') return refuse('PAYMENT_INVALID');
      const status = await askRelay(() => client.getStatus(proof.requestId));
      if (IN_FLIGHT.has(status.status)) return pending('PAYMENT_PENDING', `The Relay request is ${status.status}.`);
      if (status.status !== 'success') {
        return refuse('PAYMENT_RELAY_FAILED', `The Relay request ended with status ${status.status}.`);
      }
      const request = await askRelay(() => client.getRequest(proof.requestId));
      if (!request) throw inconsistent('reports the request succeeded but does not list it yet');
      if (request.status !== 'success') {
        throw inconsistent(`reports the request as success and as ${request.status} at once`);
      }
      // Relay request ids are public: only the agent whose verified wallet made the request may spend it.
      const user = (request.user ?? request.sender ?? '').toLowerCase();
      if (!call.buyerEvmWallets.includes(user)) return refuse('PAYMENT_SENDER_MISMATCH');
      if ((request.recipient ?? '').toLowerCase() !== evm.payTo.toLowerCase()) return refuse('PAYMENT_WRONG_RECIPIENT');
      const out = request.delivered;
      if (!out) throw inconsistent('does not say what the succeeded request delivered');
      if (
        out.currency.chainId !== evm.chainId ||
        out.currency.address.toLowerCase() !== evm.usdcAddress.toLowerCase()
      ) {
        return refuse('PAYMENT_WRONG_ASSET');
      }
      if (BigInt(out.amount) < call.priceAtomic) return refuse('PAYMENT_UNDERPAID');
      const fill = request.outTxs.find((t) => t.chainId === evm.chainId)?.txHash ?? status.txHashes[0];
      if (!fill) throw inconsistent('does not name the fill transaction of the succeeded request');
      const checked = await checkEvmPayment(chain, evm, fill as Hash, call.priceAtomic);
      if (!checked.ok) return checked.verdict;
      return {
        ok: true,
        payment: {
          rail: 'relay',
          network: evm.network,
          payer: request.user ?? request.sender ?? 'relay',
          amountAtomic: checked.paid.toString(),
          asset: evm.usdcAddress,
          tx: fill.toLowerCase(),
          proofIds: [proof.id, txProofId(evm.network, fill)],
          paidAtMs: checked.paidAtMs,
        },
      };
    },
  };
};
