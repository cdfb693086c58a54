import {
  type Address,
  createPublicClient,
  type Hash,
  http,
  type PublicClient,
  parseEventLogs,
  type TransactionReceipt,
} from 'viem';
import type { EvmRailConfig } from '../config.js';
import { type Proof, txProofId } from '../proof.js';
import { askVerifier, type PaymentCall, type PaymentRail, pending, refuse, type Verdict } from './types.js';

const TRANSFER_EVENT = [
  {
    type: 'event',
    name: 'Transfer',
    inputs: [
      { indexed: true, name: 'from', type: 'address' },
      { indexed: true, name: 'to', type: 'address' },
      { indexed: false, name: 'value', type: 'uint256' },
    ],
  },
] as const;

/** An EVM RPC call; its failure is the verifier's (503 naming the chain), not the payment's. */
const askEvmRpc = <T>(config: Pick<EvmRailConfig, 'network'>, call: () => Promise<T>): Promise<T> =>
  askVerifier(`EVM RPC (${config.network})`, call);

export const evmClient = (config: EvmRailConfig): PublicClient =>
  // cacheTime 0: the block number used for confirmations must be read, not remembered.
  createPublicClient({ transport: http(config.rpcUrl, { retryCount: 0 }), cacheTime: 0 }) as PublicClient;

/**
 * What a confirmed EVM transaction paid the marketplace: USDC `Transfer` logs to `payTo`, summed. Shared by direct
 * transfers and Relay fills.
 */
export const checkEvmPayment = async (
  client: PublicClient,
  config: EvmRailConfig,
  hash: Hash,
  priceAtomic: bigint,
): Promise<
  | { ok: true; receipt: TransactionReceipt; paid: bigint; paidBy: Map<string, bigint>; paidAtMs: number }
  | { ok: false; verdict: Verdict }
> => {
  const receipt: TransactionReceipt | null = await askEvmRpc(config, () =>
    client.getTransactionReceipt({ hash }).catch((error: Error) => {
      if (error.name === 'TransactionReceiptNotFoundError') return null;
      throw error;
    }),
  );
  if (!receipt) return { ok: false, verdict: pending('PAYMENT_UNCONFIRMED', 'The transaction is not mined yet.') };
  if (receipt.status !== 'success') return { ok: false, verdict: refuse('PAYMENT_TX_FAILED') };
  const head = await askEvmRpc(config, () => client.getBlockNumber({ cacheTime: 0 }));
  const confirmations = head - receipt.blockNumber + 1n;
  if (confirmations < BigInt(config.confirmations)) {
    return {
      ok: false,
      verdict: pending(
        'PAYMENT_UNCONFIRMED',
        `The transaction has ${confirmations} of ${config.confirmations} confirmations.`,
      ),
    };
  }
  const transfers = parseEventLogs({ abi: TRANSFER_EVENT, logs: receipt.logs, eventName: 'Transfer' });
  const toUs = transfers.filter((t) => t.args.to.toLowerCase() === config.payTo.toLowerCase());
  if (toUs.length === 0) return { ok: false, verdict: refuse('PAYMENT_WRONG_RECIPIENT') };
  const inUsdc = toUs.filter((t) => t.address.toLowerCase() === config.usdcAddress.toLowerCase());
  if (inUsdc.length === 0) return { ok: false, verdict: refuse('PAYMENT_WRONG_ASSET') };
  const paid = inUsdc.reduce((sum, t) => sum + t.args.value, 0n);
  if (paid < priceAtomic) {
    return {
      ok: false,
      verdict: refuse('PAYMENT_UNDERPAID', `The transaction paid ${paid} of ${priceAtomic} atomic USDC.`),
    };
  }
  const paidBy = new Map<string, bigint>();
  for (const t of inUsdc)
    paidBy.set(t.args.from.toLowerCase(), (paidBy.get(t.args.from.toLowerCase()) ?? 0n) + t.args.value);
  // When the money moved: a proof older than the acceptance window is refused by the payment step.
  const { blockNumber } = receipt;
  const block = await askEvmRpc(config, () => client.getBlock({ blockNumber }));
  return { ok: true, receipt, paid, paidBy, paidAtMs: Number(block.timestamp) * 1000 };
};

/** `X-Crochet-Payment-Tx: eip155:<chain>:0x<hash>` — a USDC transfer to the marketplace from the caller's wallet. */
export const evmTransferRail = (
  config: EvmRailConfig,
  client: PublicClient = evmClient(config),
  /** Addresses this gateway sends settlements from: their transactions settled an x402 payment already. */
  ownSenders: readonly string[] = [],
): PaymentRail => ({
  name: 'evm-transfer',
  accepts: (proof: Proof) => proof.kind === 'tx' && proof.network.startsWith('eip155:'),
  async verify(proof: Proof, call: PaymentCall): Promise<Verdict> {
    if (proof.kind !== 'tx') return refuse('PAYMENT_INVALID');
    if (proof.network !== config.network) return refuse('PAYMENT_NETWORK_UNSUPPORTED');
    if (call.priceAtomic < config.minPriceAtomic) return refuse('PAYMENT_ROUTE_MINIMUM_NOT_MET');
    const checked = await checkEvmPayment(client, config, proof.tx as Hash, call.priceAtomic);
    if (!checked.ok) return checked.verdict;
    if (ownSenders.includes(checked.receipt.from.toLowerCase())) {
      return refuse('PAYMENT_ALREADY_USED', 'This transaction settled an x402 payment; it cannot pay again.');
    }
    // The payer is whoever the USDC came from (a relayer may send an EIP-3009 transfer); only the caller's own
    // wallets' USDC counts toward the price.
    const payer = [...checked.paidBy.keys()].find((p) => call.buyerEvmWallets.includes(p));
    if (!payer) return refuse('PAYMENT_SENDER_MISMATCH');
    const paidByBuyer = [...checked.paidBy]
      .filter(([from]) => call.buyerEvmWallets.includes(from))
      .reduce((sum, [, value]) => sum + value, 0n);
    if (paidByBuyer < call.priceAtomic) return refuse('PAYMENT_UNDERPAID');
    return {
      ok: true,
      payment: {
        rail: 'evm-transfer',
        network: config.network,
        payer: payer as Address,
        amountAtomic: paidByBuyer.toString(),
        asset: config.usdcAddress,
        tx: proof.tx.toLowerCase(),
        proofIds: [txProofId(config.network, proof.tx)],
        paidAtMs: checked.paidAtMs,
      },
    };
  },
});
