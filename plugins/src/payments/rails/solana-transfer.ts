import { createSolanaRpc, type Signature } from '@solana/kit';
import type { SolanaRailConfig } from '../config.js';
import { type Proof, txProofId } from '../proof.js';
import { askVerifier, type PaymentCall, type PaymentRail, pending, refuse, type Verdict } from './types.js';

type SolanaRpc = ReturnType<typeof createSolanaRpc>;

interface TokenBalance {
  accountIndex: number;
  mint: string;
  owner?: string;
  uiTokenAmount: { amount: string };
}

interface ParsedInstruction {
  program?: string;
  programId?: string;
  parsed?: unknown;
}

/** The SPL Memo programs whose memo names the payment request: v3 first, then the legacy v1 (the documents list them). */
export const SOLANA_MEMO_PROGRAMS = [
  'MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr',
  'Memo1UhkJRfHyvLMcVucJwxXeuD728EqVTDhgvAS9Gm',
] as const;
const MEMO_PROGRAMS = new Set<string>(SOLANA_MEMO_PROGRAMS);

/** The memo texts of a transaction: parsed memo instructions, top level and inner. */
const memos = (instructions: ParsedInstruction[]): string[] =>
  instructions
    .filter((i) => i.program === 'spl-memo' || (i.programId !== undefined && MEMO_PROGRAMS.has(i.programId)))
    .map((i) => (typeof i.parsed === 'string' ? i.parsed : ''));

/** A Solana RPC call; its failure is the verifier's (503 naming the chain), not the payment's. */
const askSolanaRpc = <T>(config: SolanaRailConfig, call: () => Promise<T>): Promise<T> =>
  askVerifier(`Solana RPC (${config.network})`, call);

/** Confirmed blocks on top of a transaction's before it is rooted (finalized), and a slot's length, on mainnet. */
const FINALITY_DEPTH_SLOTS = 32;
const SLOT_SECONDS = 0.4;

/**
 * Why a transaction is not there at the required commitment: not landed (or not confirmed) yet, or — when finality
 * is required — confirmed and on its way to being finalized, with a Retry-After from the blocks still to come.
 */
const notFinalYet = async (config: SolanaRailConfig, rpc: SolanaRpc, signature: Signature): Promise<Verdict> => {
  if (config.commitment !== 'finalized') return pending('PAYMENT_UNCONFIRMED', 'The transaction is not confirmed yet.');
  const { value } = await askSolanaRpc(config, () => rpc.getSignatureStatuses([signature]).send());
  const status = value[0];
  if (!status) return pending('PAYMENT_UNCONFIRMED', 'The transaction is not confirmed yet.');
  if (status.confirmationStatus === 'finalized') {
    // Finalized between our two questions: ask again at once.
    return pending('PAYMENT_UNCONFIRMED', 'The transaction was just finalized.', 1);
  }
  const confirmations = Number(status.confirmations ?? 0);
  const seconds = Math.ceil(Math.max(1, FINALITY_DEPTH_SLOTS - confirmations) * SLOT_SECONDS);
  return pending(
    'PAYMENT_UNCONFIRMED',
    `The transaction is ${status.confirmationStatus ?? 'processed'} (${confirmations} confirmations), not finalized ` +
      'yet; this gateway accepts finalized Solana payments only.',
    Math.min(15, Math.max(1, seconds)),
  );
};

/**
 * `X-Crochet-Payment-Tx: solana:<network>:<signature>` — a USDC transfer to the marketplace's token account, at the
 * rail's commitment (`confirmed`, or `finalized` — the mainnet default), whose memo is the payment_request_id issued
 * for this call (DESIGN §3.4). What arrived is read from the pre/post token balances, so any way of moving the USDC
 * (transfer, transferChecked, a program) counts the same.
 */
export const solanaTransferRail = (
  config: SolanaRailConfig,
  rpc: SolanaRpc = createSolanaRpc(config.rpcUrl),
  /** This gateway's fee payer: a transaction it paid fees for settled an x402 payment already. */
  ownFeePayers: readonly string[] = [],
): PaymentRail => ({
  name: 'solana-transfer',
  accepts: (proof: Proof) => proof.kind === 'tx' && proof.network.startsWith('solana:'),
  async verify(proof: Proof, call: PaymentCall): Promise<Verdict> {
    if (proof.kind !== 'tx') return refuse('PAYMENT_INVALID');
    if (proof.network !== config.network) return refuse('PAYMENT_NETWORK_UNSUPPORTED');
    const signature = proof.tx as Signature;
    const tx = await askSolanaRpc(config, () =>
      rpc
        .getTransaction(signature, {
          commitment: config.commitment,
          encoding: 'jsonParsed',
          maxSupportedTransactionVersion: 0,
        })
        .send(),
    );
    if (!tx) return notFinalYet(config, rpc, signature);
    const meta = tx.meta as unknown as {
      err: unknown;
      preTokenBalances?: TokenBalance[];
      postTokenBalances?: TokenBalance[];
      innerInstructions?: { instructions: ParsedInstruction[] }[];
    } | null;
    if (!meta || meta.err) return refuse('PAYMENT_TX_FAILED');

    const before = new Map((meta.preTokenBalances ?? []).map((b) => [b.accountIndex, b]));
    const changes = (meta.postTokenBalances ?? []).map((after) => {
      const was = before.get(after.accountIndex);
      return {
        mint: after.mint,
        owner: after.owner ?? '',
        delta: BigInt(after.uiTokenAmount.amount) - BigInt(was?.uiTokenAmount.amount ?? '0'),
      };
    });
    const toUs = changes.filter((c) => c.owner === config.payTo && c.delta > 0n);
    if (toUs.length === 0) return refuse('PAYMENT_WRONG_RECIPIENT');
    if (!toUs.some((c) => c.mint === config.usdcMint)) return refuse('PAYMENT_WRONG_ASSET');
    // The net change over all of the marketplace's USDC accounts: moving USDC between them pays nothing.
    const paid = changes
      .filter((c) => c.owner === config.payTo && c.mint === config.usdcMint)
      .reduce((sum, c) => sum + c.delta, 0n);
    if (paid < call.priceAtomic) {
      return refuse('PAYMENT_UNDERPAID', `The transaction paid ${paid} of ${call.priceAtomic} atomic USDC.`);
    }

    const message = (
      tx.transaction as unknown as {
        message: { instructions: ParsedInstruction[]; accountKeys: (string | { pubkey: string })[] };
      }
    ).message;
    const feePayer = message.accountKeys[0];
    if (ownFeePayers.includes(typeof feePayer === 'string' ? feePayer : (feePayer?.pubkey ?? ''))) {
      return refuse('PAYMENT_ALREADY_USED', 'This transaction settled an x402 payment; it cannot pay again.');
    }
    const inner = (meta.innerInstructions ?? []).flatMap((i) => i.instructions);
    const requestIds = memos([...message.instructions, ...inner]).map((m) => m.trim());
    const requestId = requestIds.find((m) => m.startsWith('pay_'));
    const request = requestId ? await call.paymentRequest(requestId) : null;
    if (!request || request.listing_id !== call.listingId || request.buyer_id !== call.buyerId) {
      return refuse('PAYMENT_MEMO_MISMATCH');
    }
    // When the money moved decides both the request's expiry and the acceptance window: without it, no verdict yet.
    const blockTime = tx.blockTime ?? (await askSolanaRpc(config, () => rpc.getBlockTime(tx.slot).send()));
    if (blockTime === null)
      return pending('PAYMENT_UNCONFIRMED', 'The block time of the transaction is not known yet.');
    if (Number(blockTime) * 1000 > request.expires_at) return refuse('PAYMENT_REQUEST_EXPIRED');
    const payer = changes.find((c) => c.mint === config.usdcMint && c.delta < 0n)?.owner ?? 'unknown';
    return {
      ok: true,
      payment: {
        rail: 'solana-transfer',
        network: config.network,
        payer,
        amountAtomic: paid.toString(),
        asset: config.usdcMint,
        tx: proof.tx,
        proofIds: [txProofId(config.network, proof.tx)],
        paymentRequestId: request.id,
        paidAtMs: Number(blockTime) * 1000,
      },
    };
  },
});
