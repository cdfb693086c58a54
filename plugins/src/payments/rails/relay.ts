import type { Hash, PublicClient } from 'viem';
import type { EvmRailConfig, RelayRailConfig } from '../config.js';
import { type Proof, txProofId } from '../proof.js';
import { createRelayClient, RelayApiError, type RelayClient, RelayError } from '../relay-client.js';
import { checkEvmPayment, evmClient } from './evm-transfer.js';
import { type PaymentCall, type PaymentRail, pending, refuse, type Verdict } from './types.js';

const IN_FLIGHT = new Set(['waiting', 'depositing', 'pending', 'submitted', 'delayed']);

/**
 * `X-Crochet-Relay-Request-Id: 0x…` — a Relay request whose status is `success`, whose recipient, currency and amount
 * are the marketplace's, and whose destination fill transaction really paid the marketplace on chain. The request
 * id and its fill transaction are consumed together, so the fill cannot be spent again as a direct transfer.
 */
export const relayRail = (
  relay: RelayRailConfig,
  evm: EvmRailConfig,
  options: { timeoutMs: number; client?: RelayClient; chain?: PublicClient },
): PaymentRail => {
  const client =
    options.client ??
    createRelayClient({
      baseUrl: relay.apiUrl,
      timeoutMs: options.timeoutMs,
      ...(relay.apiKey ? { apiKey: relay.apiKey } : {}),
    });
  const chain = options.chain ?? evmClient(evm);
  return {
    name: 'relay',
    accepts: (proof: Proof) => proof.kind === 'relay',
    async verify(proof: Proof, call: PaymentCall): Promise<Verdict> {
      if (proof.kind !== 'relay') return refuse('PAYMENT_INVALID');
      let status: Awaited<ReturnType<RelayClient['getStatus']>>;
      let request: Awaited<ReturnType<RelayClient['getRequest']>>;
      try {
        status = await client.getStatus(proof.requestId);
        if (IN_FLIGHT.has(status.status)) return pending('PAYMENT_PENDING', `The Relay request is ${status.status}.`);
        if (status.status !== 'success') {
          return refuse('PAYMENT_RELAY_FAILED', `The Relay request ended with status ${status.status}.`);
        }
        request = await client.getRequest(proof.requestId);
      } catch (error) {
        // Relay slow, down or erroring on its side: the payment may well be fine — never "failed".
        if (error instanceof RelayApiError && !error.retryable) throw error;
        if (error instanceof RelayError) return pending('PAYMENT_PENDING', 'Relay did not answer in time.');
        throw error;
      }
      if (!request) return pending('PAYMENT_PENDING', 'Relay does not list the request yet.');
      // Relay request ids are public: only the agent whose verified wallet made the request may spend it.
      const user = (request.user ?? request.metadata.sender ?? '').toLowerCase();
      if (!call.buyerEvmWallets.includes(user)) return refuse('PAYMENT_SENDER_MISMATCH');
      const out = request.metadata.currencyOut;
      const recipient = (request.recipient ?? request.metadata.recipient ?? '').toLowerCase();
      if (recipient !== evm.payTo.toLowerCase()) return refuse('PAYMENT_WRONG_RECIPIENT');
      if (
        !out ||
        out.currency.chainId !== evm.chainId ||
        out.currency.address.toLowerCase() !== evm.usdcAddress.toLowerCase()
      ) {
        return refuse('PAYMENT_WRONG_ASSET');
      }
      if (BigInt(out.amount) < call.priceAtomic) return refuse('PAYMENT_UNDERPAID');
      const fill = request.outTxs.find((t) => t.chainId === evm.chainId)?.hash ?? status.txHashes[0];
      if (!fill) return pending('PAYMENT_PENDING', 'The Relay fill transaction is not known yet.');
      const checked = await checkEvmPayment(chain, evm, fill as Hash, call.priceAtomic);
      if (!checked.ok) return checked.verdict;
      return {
        ok: true,
        payment: {
          rail: 'relay',
          network: evm.network,
          payer: request.user ?? 'relay',
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
