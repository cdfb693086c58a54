import type { EvmRailConfig, PaymentsConfig, SolanaRailConfig } from '@crochet/plugins';
import {
  type Address,
  address,
  appendTransactionMessageInstructions,
  createKeyPairSignerFromBytes,
  createSolanaRpc,
  createTransactionMessage,
  getBase58Encoder,
  getBase64EncodedWireTransaction,
  getSignatureFromTransaction,
  pipe,
  type Signature,
  setTransactionMessageFeePayerSigner,
  setTransactionMessageLifetimeUsingBlockhash,
  signTransactionMessageWithSigners,
} from '@solana/kit';
import {
  findAssociatedTokenPda,
  getCreateAssociatedTokenIdempotentInstruction,
  getTransferCheckedInstruction,
  TOKEN_PROGRAM_ADDRESS,
} from '@solana-program/token';
import {
  createPublicClient,
  encodeFunctionData,
  type Hex,
  http,
  keccak256,
  type PublicClient,
  parseAbi,
  TransactionReceiptNotFoundError,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';

/**
 * The marketplace's treasury on one network (DESIGN §3.9): the pay-to account whose key the control plane holds
 * (`CROCHET_SOLANA_TREASURY_KEY`, `CROCHET_EVM_TREASURY_KEY`), sending USDC out — seller payouts and buyer refunds.
 *
 * Every transfer is signed before it is sent, and its id (the signature, or the transaction hash) is known from the
 * signed bytes: the transfers module stores both before broadcasting, so a process that dies after the broadcast
 * finds the transaction on chain, and one that dies before it sends the very same bytes (it can never pay twice).
 */
export interface Treasury {
  network: string;
  chain: 'solana' | 'evm';
  /** The sending (pay-to) address. */
  address: string;
  /** Signs a USDC transfer of `amountAtomic` to `to` (creating its token account if needed, on Solana). */
  sign(to: string, amountAtomic: bigint): Promise<SignedTransfer>;
  /** Sends signed bytes (again, after a crash: the same bytes are the same transaction). */
  broadcast(signedTx: string): Promise<void>;
  /**
   * What became of a transaction: `confirmed` (final enough to book), `failed` (included and reverted, final: nothing
   * moved), `landed` (included, not final yet: wait), `pending` (not seen: it may still land — send the same bytes and
   * look again), `dropped` (can never land, and the chain can still say so: its blockhash expired a moment ago and
   * every node still holds the statuses of that age — sign anew), `unknown` (not seen, and the chain can no longer
   * be trusted to say it never landed: an expiry long past, which an RPC without history answers "not found" for a
   * transaction that did land; an EVM nonce taken with no receipt — never signed anew, held for an operator).
   */
  status(tx: string, validUntil: bigint | null): Promise<TransferState>;
}

export type TransferState = 'confirmed' | 'failed' | 'landed' | 'pending' | 'dropped' | 'unknown';

/**
 * Solana: how many blocks past a blockhash's expiry a "not found" still proves the transaction never landed. Nodes
 * keep the statuses of the last 300 blocks' transactions in memory (the status cache) whatever history they keep on
 * disk, and a transaction can only have landed before its expiry: within 150 blocks after it, every synced node
 * that does not know it never saw it land.
 */
export const SOLANA_STATUS_WINDOW_BLOCKS = 150n;
/** Solana: how far past a blockhash's expiry a node must be before "expired" is believed (nodes differ a little). */
const SOLANA_EXPIRY_MARGIN_BLOCKS = 32n;

export interface SignedTransfer {
  tx: string;
  signedTx: string;
  /** Solana: the last block height its blockhash is valid for; EVM: the nonce. */
  validUntil: bigint;
}

// --- Solana ------------------------------------------------------------------------------------------------------

const USDC_DECIMALS = 6;

const usdcAccount = async (owner: Address, mint: Address): Promise<Address> =>
  (await findAssociatedTokenPda({ owner, mint, tokenProgram: TOKEN_PROGRAM_ADDRESS }))[0];

export const solanaTreasury = async (config: SolanaRailConfig, secretKey: string): Promise<Treasury> => {
  const rpc = createSolanaRpc(config.rpcUrl);
  const signer = await createKeyPairSignerFromBytes(getBase58Encoder().encode(secretKey));
  const mint = address(config.usdcMint);
  const source = await usdcAccount(signer.address, mint);
  return {
    network: config.network,
    chain: 'solana',
    address: signer.address,
    async sign(to, amountAtomic) {
      const owner = address(to);
      const destination = await usdcAccount(owner, mint);
      const instructions = [
        // The recipient's USDC account is created when missing (idempotent), paid by the treasury.
        getCreateAssociatedTokenIdempotentInstruction({ payer: signer, ata: destination, owner, mint }),
        getTransferCheckedInstruction({
          source,
          mint,
          destination,
          authority: signer,
          amount: amountAtomic,
          decimals: USDC_DECIMALS,
        }),
      ];
      const { value: latest } = await rpc.getLatestBlockhash({ commitment: 'confirmed' }).send();
      const message = pipe(
        createTransactionMessage({ version: 0 }),
        (m) => setTransactionMessageFeePayerSigner(signer, m),
        (m) => setTransactionMessageLifetimeUsingBlockhash(latest, m),
        (m) => appendTransactionMessageInstructions(instructions, m),
      );
      const signed = await signTransactionMessageWithSigners(message);
      return {
        tx: getSignatureFromTransaction(signed),
        signedTx: getBase64EncodedWireTransaction(signed),
        validUntil: BigInt(latest.lastValidBlockHeight),
      };
    },
    async broadcast(signedTx) {
      try {
        await rpc.sendTransaction(signedTx as never, { encoding: 'base64', preflightCommitment: 'confirmed' }).send();
      } catch (error) {
        // The same bytes sent twice (after a crash): the chain has them already. Nothing else to do.
        if (!/already been processed|AlreadyProcessed/i.test(String((error as Error).message))) throw error;
      }
    },
    async status(tx, validUntil) {
      const { value } = await rpc.getSignatureStatuses([tx as Signature], { searchTransactionHistory: true }).send();
      // Booked, or failed, once as final as a payment must be (CROCHET_SOLANA_COMMITMENT): a fork may yet include the
      // same transaction another way.
      const final = config.commitment === 'finalized' ? ['finalized'] : ['confirmed', 'finalized'];
      const found = value[0];
      if (found) {
        if (!final.includes(found.confirmationStatus ?? '')) return 'landed';
        return found.err ? 'failed' : 'confirmed';
      }
      // Not seen: it can still land while its blockhash is valid; after that, never. It may have landed between the
      // two looks, so once expired it is looked up once more: not seen then, it never will be — if the chain can still
      // tell (SOLANA_STATUS_WINDOW_BLOCKS); later, "not found" may be an RPC that forgot it. Behind a load balancer the
      // looks may reach different nodes: "expired" is taken with a margin (a node ahead by a few blocks proves
      // nothing), and the second look counts only if its node has seen the slot the expiry was read at.
      const { blockHeight: height, absoluteSlot } = await rpc.getEpochInfo({ commitment: 'confirmed' }).send();
      if (validUntil === null || height <= validUntil + SOLANA_EXPIRY_MARGIN_BLOCKS) return 'pending';
      const { context, value: again } = await rpc
        .getSignatureStatuses([tx as Signature], { searchTransactionHistory: true })
        .send();
      if (again[0]) return 'landed'; // landed after all: judged at the next look
      if (context.slot < absoluteSlot) return 'pending'; // a node behind the expiry: asked again at the next run
      return height - validUntil <= SOLANA_STATUS_WINDOW_BLOCKS ? 'dropped' : 'unknown';
    },
  };
};

// --- EVM ---------------------------------------------------------------------------------------------------------

const ERC20 = parseAbi(['function transfer(address to, uint256 amount) returns (bool)']);

export const evmTreasury = (config: EvmRailConfig, key: Hex, client?: PublicClient): Treasury => {
  const account = privateKeyToAccount(key);
  const chain = createPublicClient({ transport: http(config.rpcUrl, { retryCount: 0 }), cacheTime: 0 }) as PublicClient;
  const rpc = client ?? chain;
  return {
    network: config.network,
    chain: 'evm',
    address: account.address,
    async sign(to, amountAtomic) {
      // One transfer at a time per network (the transfers module's lock), so the pending nonce is ours to take.
      const nonce = await rpc.getTransactionCount({ address: account.address, blockTag: 'pending' });
      const data = encodeFunctionData({ abi: ERC20, functionName: 'transfer', args: [to as Hex, amountAtomic] });
      const fees = await rpc.estimateFeesPerGas();
      const gas = await rpc.estimateGas({ account: account.address, to: config.usdcAddress, data });
      const signedTx = await account.signTransaction({
        type: 'eip1559',
        chainId: config.chainId,
        to: config.usdcAddress,
        data,
        nonce,
        gas: (gas * 12n) / 10n,
        maxFeePerGas: fees.maxFeePerGas,
        maxPriorityFeePerGas: fees.maxPriorityFeePerGas,
      });
      return { tx: keccak256(signedTx), signedTx, validUntil: BigInt(nonce) };
    },
    async broadcast(signedTx) {
      try {
        await rpc.sendRawTransaction({ serializedTransaction: signedTx as Hex });
      } catch (error) {
        // The same bytes sent twice (after a crash): the node already has them. Nothing else to do.
        if (!/already known|nonce too low|already imported/i.test((error as Error).message)) throw error;
      }
    },
    async status(tx, nonce) {
      const receipt = async () => {
        try {
          return await rpc.getTransactionReceipt({ hash: tx as Hex });
        } catch (error) {
          if (error instanceof TransactionReceiptNotFoundError) return null;
          throw error;
        }
      };
      let mined = await receipt();
      if (!mined) {
        // Not mined while the treasury's nonce has not moved past this one: it can still be, as the same bytes (sent
        // again). Moved: some transaction took the nonce — this one, mined between the two looks, or another. Only
        // the treasury's key signs for it and the transfers job signs one transaction per nonce, so "another" means a
        // receipt this node no longer serves, or a key used outside Crochet: never signed anew — held for an operator.
        const count = await rpc.getTransactionCount({ address: account.address, blockTag: 'latest' });
        if (nonce === null || BigInt(count) <= nonce) return 'pending';
        mined = await receipt();
        if (!mined) return 'unknown';
      }
      const head = await rpc.getBlockNumber({ cacheTime: 0 });
      // Reverted or not, it is judged once as deep as a payment must be: a reorg may yet include it another way.
      if (head - mined.blockNumber + 1n < BigInt(config.confirmations)) return 'landed';
      return mined.status === 'success' ? 'confirmed' : 'failed';
    },
  };
};

/** The marketplace's treasuries by network: those whose pay-to key this control plane holds (payouts and refunds). */
export const treasuriesFrom = async (
  payments: Pick<PaymentsConfig, 'evm' | 'solana'>,
): Promise<Map<string, Treasury>> => {
  const treasuries = new Map<string, Treasury>();
  if (payments.solana?.treasuryKey) {
    treasuries.set(payments.solana.network, await solanaTreasury(payments.solana, payments.solana.treasuryKey));
  }
  if (payments.evm?.treasuryKey) {
    treasuries.set(payments.evm.network, evmTreasury(payments.evm, payments.evm.treasuryKey));
  }
  return treasuries;
};
