/**
 * Test/`npm start` helpers for the Solana dev chain. Everything goes through the chain's JSON-RPC server with real
 * signed transactions built with `@solana/kit` + `@solana-program/*`, as a buyer's wallet would do it.
 */

import { randomBytes } from 'node:crypto';
import {
  type Address,
  address,
  appendTransactionMessageInstructions,
  createKeyPairSignerFromPrivateKeyBytes,
  createTransactionMessage,
  getAddressEncoder,
  getBase64EncodedWireTransaction,
  getSignatureFromTransaction,
  type Instruction,
  type KeyPairSigner,
  pipe,
  type Signature,
  setTransactionMessageFeePayerSigner,
  setTransactionMessageLifetimeUsingBlockhash,
  signTransactionMessageWithSigners,
} from '@solana/kit';
import { getAddMemoInstruction, LEGACY_MEMO_PROGRAM_ADDRESS_V3 } from '@solana-program/memo';
import {
  findAssociatedTokenPda,
  getCreateAssociatedTokenIdempotentInstruction,
  getMintToCheckedInstruction,
  getTransferCheckedInstruction,
  TOKEN_PROGRAM_ADDRESS,
} from '@solana-program/token';
import { LAMPORTS_PER_SOL, type SolanaDevChain } from './rpc-server.js';

export interface FundedWallet {
  /** A `@solana/kit` KeyPairSigner (usable as an x402 `ClientSvmSigner`). */
  signer: KeyPairSigner;
  address: Address;
  /** The wallet's USDC associated token account (created, possibly with a zero balance). */
  tokenAccount: Address;
  /** 64-byte Solana secret key (32-byte seed + 32-byte public key), e.g. to configure a service with it. */
  secretKey: Uint8Array;
}

/** A new extractable keypair plus its 64-byte Solana secret key. */
export async function generateWallet(): Promise<{ signer: KeyPairSigner; secretKey: Uint8Array }> {
  const seed = new Uint8Array(randomBytes(32));
  const signer = await createKeyPairSignerFromPrivateKeyBytes(seed, true);
  const secretKey = new Uint8Array(64);
  secretKey.set(seed, 0);
  secretKey.set(getAddressEncoder().encode(signer.address), 32);
  return { signer, secretKey };
}

/**
 * Builds, signs and sends a transaction through the chain's JSON-RPC server (with preflight), then waits for it to be
 * confirmed. Throws the RPC's error (a `SolanaError`) when preflight fails.
 */
export async function sendInstructions(
  chain: SolanaDevChain,
  feePayer: KeyPairSigner,
  instructions: readonly Instruction[],
): Promise<Signature> {
  const { value: latest } = await chain.rpc.getLatestBlockhash().send();
  const message = pipe(
    createTransactionMessage({ version: 0 }),
    (m) => setTransactionMessageFeePayerSigner(feePayer, m),
    (m) => setTransactionMessageLifetimeUsingBlockhash(latest, m),
    (m) => appendTransactionMessageInstructions(instructions, m),
  );
  const signed = await signTransactionMessageWithSigners(message);
  const signature = getSignatureFromTransaction(signed);
  await chain.rpc.sendTransaction(getBase64EncodedWireTransaction(signed), { encoding: 'base64' }).send();
  await waitForConfirmation(chain, signature);
  return signature;
}

/** Polls `getSignatureStatuses` until the transaction is confirmed; throws if it failed on chain. */
export async function waitForConfirmation(chain: SolanaDevChain, signature: Signature, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { value } = await chain.rpc.getSignatureStatuses([signature]).send();
    const status = value[0];
    if (status && (status.confirmationStatus === 'confirmed' || status.confirmationStatus === 'finalized')) {
      if (status.err) throw new Error(`Transaction ${signature} failed: ${JSON.stringify(status.err)}`);
      return status;
    }
    if (Date.now() > deadline) throw new Error(`Transaction ${signature} not confirmed after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The owner's USDC associated token account address (derivation only). */
export async function usdcAtaAddress(chain: SolanaDevChain, owner: string): Promise<Address> {
  const [ata] = await findAssociatedTokenPda({
    owner: address(owner),
    mint: chain.usdcMint,
    tokenProgram: TOKEN_PROGRAM_ADDRESS,
  });
  return ata;
}

/** The owner's USDC associated token account; created (rent paid by `chain.payer`) unless it exists. */
export async function usdcTokenAccount(chain: SolanaDevChain, owner: string): Promise<Address> {
  const ata = await usdcAtaAddress(chain, owner);
  const { value } = await chain.rpc.getAccountInfo(ata, { encoding: 'base64' }).send();
  if (!value) {
    await sendInstructions(chain, chain.payer, [
      getCreateAssociatedTokenIdempotentInstruction({
        payer: chain.payer,
        ata,
        owner: address(owner),
        mint: chain.usdcMint,
      }),
    ]);
  }
  return ata;
}

/** Mints `amountAtomic` USDC to the owner's ATA (creating it if needed), signed by the mint authority. */
export async function mintUsdc(chain: SolanaDevChain, owner: string, amountAtomic: bigint): Promise<Signature> {
  const ata = await usdcAtaAddress(chain, owner);
  return sendInstructions(chain, chain.payer, [
    getCreateAssociatedTokenIdempotentInstruction({
      payer: chain.payer,
      ata,
      owner: address(owner),
      mint: chain.usdcMint,
    }),
    getMintToCheckedInstruction({
      mint: chain.usdcMint,
      token: ata,
      mintAuthority: chain.mintAuthority,
      amount: amountAtomic,
      decimals: chain.usdcDecimals,
    }),
  ]);
}

/**
 * A fresh wallet with `sol` SOL (default 1, via the faucet) and `usdcAtomic` USDC (default 0) in its ATA, which is
 * always created.
 */
export async function createFundedWallet(
  chain: SolanaDevChain,
  options: { sol?: number; usdcAtomic?: bigint } = {},
): Promise<FundedWallet> {
  const { signer, secretKey } = await generateWallet();
  const lamports = BigInt(Math.round((options.sol ?? 1) * Number(LAMPORTS_PER_SOL)));
  if (lamports > 0n) await chain.airdrop(signer.address, lamports);
  const usdc = options.usdcAtomic ?? 0n;
  if (usdc > 0n) await mintUsdc(chain, signer.address, usdc);
  const tokenAccount = await usdcTokenAccount(chain, signer.address);
  return { signer, address: signer.address, tokenAccount, secretKey };
}

/**
 * A buyer's direct USDC payment: `TransferChecked` from `from`'s ATA to `toOwner`'s ATA plus an SPL Memo (v3,
 * `MemoSq4g…`) carrying `memo`, signed by `from` (who also pays the fee unless `feePayer` is given) and sent through
 * the JSON-RPC server. Creates the recipient's ATA in the same transaction if it does not exist yet. Returns the
 * transaction signature.
 */
export async function transferUsdcWithMemo(
  chain: SolanaDevChain,
  from: KeyPairSigner,
  toOwner: string,
  amountAtomic: bigint,
  memo: string,
  /** `createDestination`: put the idempotent ATA creation in the transaction even when the ATA exists (as wallets do). */
  options: { feePayer?: KeyPairSigner; createDestination?: boolean } = {},
): Promise<Signature> {
  const feePayer = options.feePayer ?? from;
  const source = await usdcAtaAddress(chain, from.address);
  const destination = await usdcAtaAddress(chain, toOwner);
  const instructions: Instruction[] = [];
  const { value: destinationAccount } = await chain.rpc.getAccountInfo(destination, { encoding: 'base64' }).send();
  if (!destinationAccount || options.createDestination) {
    instructions.push(
      getCreateAssociatedTokenIdempotentInstruction({
        payer: feePayer,
        ata: destination,
        owner: address(toOwner),
        mint: chain.usdcMint,
      }),
    );
  }
  instructions.push(
    getTransferCheckedInstruction({
      source,
      mint: chain.usdcMint,
      destination,
      authority: from,
      amount: amountAtomic,
      decimals: chain.usdcDecimals,
    }),
    getAddMemoInstruction({ memo }, { programAddress: LEGACY_MEMO_PROGRAM_ADDRESS_V3 }),
  );
  return sendInstructions(chain, feePayer, instructions);
}

/** The owner's USDC balance in atomic units (0 when the ATA does not exist), read through the RPC server. */
export async function usdcBalanceOf(chain: SolanaDevChain, owner: string): Promise<bigint> {
  const ata = await usdcAtaAddress(chain, owner);
  const { value } = await chain.rpc.getAccountInfo(ata, { encoding: 'jsonParsed' }).send();
  if (!value) return 0n;
  const data = value.data as { parsed?: { info?: { tokenAmount?: { amount?: string } } } };
  return BigInt(data.parsed?.info?.tokenAmount?.amount ?? '0');
}

/** The account's lamports, read through the RPC server. */
export async function solBalanceOf(chain: SolanaDevChain, owner: string): Promise<bigint> {
  const { value } = await chain.rpc.getBalance(address(owner)).send();
  return value;
}
