import type { EvmRailConfig, SolanaRailConfig } from '@crochet/plugins';
import {
  AccountRole,
  type Address,
  address,
  appendTransactionMessageInstructions,
  createKeyPairSignerFromBytes,
  createSolanaRpc,
  createTransactionMessage,
  getAddressEncoder,
  getBase58Encoder,
  getBase64EncodedWireTransaction,
  getProgramDerivedAddress,
  getSignatureFromTransaction,
  type Instruction,
  pipe,
  type Signature,
  setTransactionMessageFeePayerSigner,
  setTransactionMessageLifetimeUsingBlockhash,
  signTransactionMessageWithSigners,
} from '@solana/kit';
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
   * What became of a transaction: `confirmed` (final enough to book), `failed` (included, reverted: nothing moved),
   * `pending` (not seen yet, may still land: send again and wait), `dropped` (can never land — its blockhash expired,
   * or its nonce went to another transaction: sign anew).
   */
  status(tx: string, validUntil: bigint | null): Promise<'confirmed' | 'failed' | 'pending' | 'dropped'>;
  /** A recipient address of this chain, normalised; null when it is not one. */
  normalise(address: string): string | null;
}

export interface SignedTransfer {
  tx: string;
  signedTx: string;
  /** Solana: the last block height its blockhash is valid for; EVM: the nonce. */
  validUntil: bigint;
}

// --- Solana ------------------------------------------------------------------------------------------------------

const TOKEN_PROGRAM = address('TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA');
const ASSOCIATED_TOKEN_PROGRAM = address('ATokenGPvbdGVxr1b2hdZbsiqW5xWH25efTNr4qEPq8');
const SYSTEM_PROGRAM = address('11111111111111111111111111111111');
const BASE58 = /^[1-9A-HJ-NP-Za-km-z]{32,44}$/;

const associatedTokenAccount = async (owner: Address, mint: Address): Promise<Address> => {
  const encoder = getAddressEncoder();
  const [ata] = await getProgramDerivedAddress({
    programAddress: ASSOCIATED_TOKEN_PROGRAM,
    seeds: [encoder.encode(owner), encoder.encode(TOKEN_PROGRAM), encoder.encode(mint)],
  });
  return ata;
};

export const solanaTreasury = async (config: SolanaRailConfig, secretKey: string): Promise<Treasury> => {
  const rpc = createSolanaRpc(config.rpcUrl);
  const signer = await createKeyPairSignerFromBytes(getBase58Encoder().encode(secretKey));
  const mint = address(config.usdcMint);
  const source = await associatedTokenAccount(signer.address, mint);
  return {
    network: config.network,
    chain: 'solana',
    address: signer.address,
    normalise: (value) => (BASE58.test(value) ? value : null),
    async sign(to, amountAtomic) {
      const owner = address(to);
      const destination = await associatedTokenAccount(owner, mint);
      // The recipient's USDC account is created when missing (idempotent), paid by the treasury.
      const createAccount: Instruction = {
        programAddress: ASSOCIATED_TOKEN_PROGRAM,
        accounts: [
          { address: signer.address, role: AccountRole.WRITABLE_SIGNER, signer } as never,
          { address: destination, role: AccountRole.WRITABLE },
          { address: owner, role: AccountRole.READONLY },
          { address: mint, role: AccountRole.READONLY },
          { address: SYSTEM_PROGRAM, role: AccountRole.READONLY },
          { address: TOKEN_PROGRAM, role: AccountRole.READONLY },
        ],
        data: new Uint8Array([1]),
      };
      // SPL Token TransferChecked: [12, amount u64 LE, decimals u8].
      const data = new Uint8Array(10);
      data[0] = 12;
      new DataView(data.buffer).setBigUint64(1, amountAtomic, true);
      data[9] = 6;
      const transfer: Instruction = {
        programAddress: TOKEN_PROGRAM,
        accounts: [
          { address: source, role: AccountRole.WRITABLE },
          { address: mint, role: AccountRole.READONLY },
          { address: destination, role: AccountRole.WRITABLE },
          { address: signer.address, role: AccountRole.READONLY_SIGNER, signer } as never,
        ],
        data,
      };
      const { value: latest } = await rpc.getLatestBlockhash({ commitment: 'confirmed' }).send();
      const message = pipe(
        createTransactionMessage({ version: 0 }),
        (m) => setTransactionMessageFeePayerSigner(signer, m),
        (m) => setTransactionMessageLifetimeUsingBlockhash(latest, m),
        (m) => appendTransactionMessageInstructions([createAccount, transfer], m),
      );
      const signed = await signTransactionMessageWithSigners(message);
      return {
        tx: getSignatureFromTransaction(signed),
        signedTx: getBase64EncodedWireTransaction(signed),
        validUntil: BigInt(latest.lastValidBlockHeight),
      };
    },
    async broadcast(signedTx) {
      await rpc.sendTransaction(signedTx as never, { encoding: 'base64', preflightCommitment: 'confirmed' }).send();
    },
    async status(tx, validUntil) {
      const { value } = await rpc.getSignatureStatuses([tx as Signature], { searchTransactionHistory: true }).send();
      const found = value[0];
      if (found) {
        if (found.err) return 'failed';
        return found.confirmationStatus === 'finalized' || found.confirmationStatus === 'confirmed'
          ? 'confirmed'
          : 'pending';
      }
      // Not seen: it can still land while its blockhash is valid; after that, never. It may have landed between the
      // two looks, so once expired it is looked up once more: not seen then, it never will be.
      const height = await rpc.getBlockHeight({ commitment: 'confirmed' }).send();
      if (validUntil === null || height <= validUntil) return 'pending';
      const { value: again } = await rpc
        .getSignatureStatuses([tx as Signature], { searchTransactionHistory: true })
        .send();
      return again[0] ? (again[0].err ? 'failed' : 'confirmed') : 'dropped';
    },
  };
};

// --- EVM ---------------------------------------------------------------------------------------------------------

const ERC20 = parseAbi(['function transfer(address to, uint256 amount) returns (bool)']);
const HEX_ADDRESS = /^0x[0-9a-fA-F]{40}$/;

export const evmTreasury = (config: EvmRailConfig, key: Hex, client?: PublicClient): Treasury => {
  const account = privateKeyToAccount(key);
  const chain = createPublicClient({ transport: http(config.rpcUrl, { retryCount: 0 }), cacheTime: 0 }) as PublicClient;
  const rpc = client ?? chain;
  return {
    network: config.network,
    chain: 'evm',
    address: account.address,
    normalise: (value) => (HEX_ADDRESS.test(value) ? value.toLowerCase() : null),
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
        // Not mined: if the treasury's nonce has moved past this one, some transaction took it — this one, mined
        // between the two looks, or another. Looked up once more: not mined then, it never will be.
        const count = await rpc.getTransactionCount({ address: account.address, blockTag: 'latest' });
        if (nonce === null || BigInt(count) <= nonce) return 'pending';
        mined = await receipt();
        if (!mined) return 'dropped';
      }
      if (mined.status !== 'success') return 'failed';
      const head = await rpc.getBlockNumber({ cacheTime: 0 });
      return head - mined.blockNumber + 1n >= BigInt(config.confirmations) ? 'confirmed' : 'pending';
    },
  };
};
