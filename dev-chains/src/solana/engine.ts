/**
 * The chain behind the Solana dev RPC server: a litesvm instance plus what a real cluster adds on top of the SVM —
 * blocks (one per landed transaction), a window of valid recent blockhashes, a transaction store with the metadata
 * `getTransaction` returns (pre/post lamport and token balances, logs, inner instructions, fee), signature statuses,
 * and a faucet for `requestAirdrop`.
 */

import {
  type Address,
  appendTransactionMessageInstructions,
  type Blockhash,
  type CompiledTransactionMessage,
  type CompiledTransactionMessageWithLifetime,
  createTransactionMessage,
  getCompiledTransactionMessageDecoder,
  getTransactionDecoder,
  getTransactionEncoder,
  type KeyPairSigner,
  pipe,
  type Signature,
  setTransactionMessageFeePayerSigner,
  setTransactionMessageLifetimeUsingBlockhash,
  signTransactionMessageWithSigners,
  type Transaction,
} from '@solana/kit';
import { getTransferSolInstruction } from '@solana-program/system';
import { FailedTransactionMetadata, type LiteSVM, type TransactionMetadata } from 'litesvm';
import {
  type AccountReader,
  ADDRESS_LOOKUP_TABLE_PROGRAM,
  COMPUTE_BUDGET_PROGRAM,
  decodeTokenAccount,
  describeTransactionError,
  mintDecimals,
  type RpcTransactionError,
  readAddress,
  readU64,
  toBase58,
  toRpcTransactionError,
  type UiTokenAmount,
  uiTokenAmount,
} from './parsers.js';

/** A JSON-RPC error with the code/message/data the real Solana RPC would send. */
export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
    this.name = 'RpcError';
  }
}

export const LAMPORTS_PER_SIGNATURE = 5000n;
/**
 * Blocks a blockhash stays valid for (the real cluster's MAX_PROCESSING_AGE). Every landed transaction closes a
 * block here, so this is "150 transactions", not "~60 s"; raise it for long bursts (load tests).
 */
export const BLOCKHASH_VALIDITY_BLOCKS = 150n;

type CompiledMessage = CompiledTransactionMessage & CompiledTransactionMessageWithLifetime;
type LegacyOrV0Message = Extract<CompiledMessage, { version: 'legacy' | 0 }>;

export interface DecodedTransaction {
  wire: Uint8Array;
  transaction: Transaction;
  message: LegacyOrV0Message;
  version: 'legacy' | 0;
  /** Base58 signatures of the required signers, in order; null where the signature is missing (all zeroes). */
  signatures: (string | null)[];
  /** The transaction id: the fee payer's signature. */
  signature: string | null;
  recentBlockhash: string;
}

export interface AccountKeys {
  /** Static keys, then lookup-table writable keys, then lookup-table readonly keys (the runtime's order). */
  all: Address[];
  staticCount: number;
  loadedWritable: Address[];
  loadedReadonly: Address[];
}

export interface TokenBalance {
  accountIndex: number;
  mint: string;
  owner: string;
  programId: string;
  uiTokenAmount: UiTokenAmount;
}

export interface CompiledInner {
  programIdIndex: number;
  accounts: number[];
  data: Uint8Array;
  stackHeight: number;
}

export interface ExecutionMeta {
  err: RpcTransactionError | null;
  fee: bigint;
  preBalances: bigint[];
  postBalances: bigint[];
  preTokenBalances: TokenBalance[];
  postTokenBalances: TokenBalance[];
  logs: string[];
  innerInstructions: { index: number; instructions: CompiledInner[] }[];
  computeUnitsConsumed: bigint;
  returnData: { programId: string; data: Uint8Array } | null;
}

export interface TransactionRecord extends ExecutionMeta {
  signature: string;
  slot: bigint;
  blockTime: number;
  decoded: DecodedTransaction;
  keys: AccountKeys;
}

export interface SimulationResult extends ExecutionMeta {
  keys: AccountKeys;
  /** Accounts after execution (only for successful simulations), keyed by address. */
  postAccounts: Map<string, StoredAccount> | null;
}

export interface StoredAccount {
  lamports: bigint;
  owner: string;
  data: Uint8Array;
  executable: boolean;
}

const transactionDecoder = getTransactionDecoder();
const messageDecoder = getCompiledTransactionMessageDecoder();
const transactionEncoder = getTransactionEncoder();

export function decodeWireTransaction(wire: Uint8Array): DecodedTransaction {
  let transaction: Transaction;
  let message: CompiledMessage;
  try {
    transaction = transactionDecoder.decode(wire);
    message = messageDecoder.decode(transaction.messageBytes);
  } catch (error) {
    throw new RpcError(-32602, `invalid transaction: failed to deserialize: ${(error as Error).message}`);
  }
  if (message.version !== 'legacy' && message.version !== 0) {
    throw new RpcError(-32602, `invalid transaction: unsupported transaction version ${String(message.version)}`);
  }
  const signers = message.staticAccounts.slice(0, message.header.numSignerAccounts);
  const signatures = signers.map((signer) => {
    const bytes = transaction.signatures[signer];
    return bytes ? toBase58(bytes) : null;
  });
  return {
    wire,
    transaction,
    message,
    version: message.version,
    signatures,
    signature: signatures[0] ?? null,
    recentBlockhash: String(message.lifetimeToken),
  };
}

export function decodeWireMessage(bytes: Uint8Array): LegacyOrV0Message {
  let message: CompiledMessage;
  try {
    message = messageDecoder.decode(bytes);
  } catch (error) {
    throw new RpcError(-32602, `invalid message: ${(error as Error).message}`);
  }
  if (message.version !== 'legacy' && message.version !== 0) {
    throw new RpcError(-32602, `invalid message: unsupported transaction version ${String(message.version)}`);
  }
  return message;
}

/** Whether account `index` (in AccountKeys.all order) is writable in this message. */
export function isWritableIndex(message: LegacyOrV0Message, keys: AccountKeys, index: number): boolean {
  const { header } = message;
  if (index < keys.staticCount) {
    if (index < header.numSignerAccounts) return index < header.numSignerAccounts - header.numReadonlySignerAccounts;
    return index < keys.staticCount - header.numReadonlyNonSignerAccounts;
  }
  return index - keys.staticCount < keys.loadedWritable.length;
}

/** The fee the runtime charges: 5000 lamports per signature plus the compute-unit-price priority fee. */
export function computeFee(message: LegacyOrV0Message): bigint {
  let unitLimit: number | undefined;
  let microLamportsPerUnit = 0n;
  let otherInstructions = 0;
  for (const ix of message.instructions) {
    const program = message.staticAccounts[ix.programAddressIndex];
    const data = ix.data ? new Uint8Array(ix.data) : new Uint8Array();
    if (program === COMPUTE_BUDGET_PROGRAM) {
      if (data[0] === 2 && data.length >= 5) {
        unitLimit = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(1, true);
      } else if (data[0] === 3 && data.length >= 9) {
        microLamportsPerUnit = readU64(data, 1);
      }
    } else {
      otherInstructions++;
    }
  }
  const base = LAMPORTS_PER_SIGNATURE * BigInt(message.header.numSignerAccounts);
  if (microLamportsPerUnit === 0n) return base;
  const units = BigInt(unitLimit ?? Math.min(1_400_000, 200_000 * otherInstructions));
  return base + (units * microLamportsPerUnit + 999_999n) / 1_000_000n;
}

export class SolanaChainEngine {
  readonly genesisSlot: bigint;
  private readonly records = new Map<string, TransactionRecord>();
  private readonly order: string[] = [];
  /** blockhash → last block height at which it is still valid. */
  private readonly blockhashes = new Map<string, bigint>();
  private readonly blockTimes = new Map<bigint, number>();
  private lastTimestamp = 0;
  private airdropQueue: Promise<unknown> = Promise.resolve();

  private readonly validityBlocks: bigint;

  /**
   * Blocks that must sit on top of a transaction's block before it is `finalized` (rooted); until then it is
   * `confirmed`. A real cluster roots a block about 32 blocks later (~13 s); 0 (the default) finalizes every landed
   * transaction at once. Blocks are made by landed transactions and `advanceSlots`.
   */
  finalizationDepth: bigint;

  constructor(
    readonly svm: LiteSVM,
    private readonly faucet: KeyPairSigner,
    options: { blockhashValidityBlocks?: bigint; finalizationDepth?: bigint } = {},
  ) {
    this.validityBlocks = options.blockhashValidityBlocks ?? BLOCKHASH_VALIDITY_BLOCKS;
    this.finalizationDepth = options.finalizationDepth ?? 0n;
    this.svm.withSigverify(true).withBlockhashCheck(true);
    this.genesisSlot = this.svm.getClock().slot;
    this.stampClock();
    this.registerLatestBlockhash();
  }

  // -------------------------------------------------------------------------------------------------------------
  // Clock, blocks and blockhashes
  // -------------------------------------------------------------------------------------------------------------

  get slot(): bigint {
    return this.svm.getClock().slot;
  }

  /** This chain never skips a slot, so block height equals slot. */
  get blockHeight(): bigint {
    return this.slot;
  }

  get transactionCount(): number {
    return this.order.length;
  }

  latestBlockhash(): { blockhash: Blockhash; lastValidBlockHeight: bigint } {
    const blockhash = this.svm.latestBlockhash();
    return { blockhash, lastValidBlockHeight: this.blockhashes.get(blockhash) ?? this.blockHeight };
  }

  isBlockhashValid(blockhash: string): boolean {
    const lastValid = this.blockhashes.get(blockhash);
    return lastValid !== undefined && this.blockHeight <= lastValid;
  }

  /** Blocks on top of the block a transaction landed in (0 right after it landed). */
  confirmationsOf(record: TransactionRecord): bigint {
    const above = this.slot - record.slot - 1n;
    return above > 0n ? above : 0n;
  }

  /** How final a landed transaction is now (this chain has no forks: landed is at least `confirmed`). */
  commitmentOf(record: TransactionRecord): 'confirmed' | 'finalized' {
    return this.confirmationsOf(record) >= this.finalizationDepth ? 'finalized' : 'confirmed';
  }

  /** The newest slot that is finalized. */
  get finalizedSlot(): bigint {
    const slot = this.slot - 1n - this.finalizationDepth;
    return slot > this.genesisSlot ? slot : this.genesisSlot;
  }

  blockTime(slot: bigint): number | null {
    if (slot > this.slot || slot < this.genesisSlot) return null;
    return this.blockTimes.get(slot) ?? this.lastTimestamp;
  }

  /** Moves the chain forward `slots` slots with a new blockhash (blockhashes older than 150 blocks expire). */
  advanceSlots(slots = 1n): void {
    if (slots < 1n) return;
    this.svm.warpToSlot(this.slot + slots);
    this.svm.expireBlockhash();
    this.stampClock();
    this.registerLatestBlockhash();
  }

  private stampClock(): void {
    const now = Math.max(this.lastTimestamp, Math.floor(Date.now() / 1000));
    this.lastTimestamp = now;
    const clock = this.svm.getClock();
    clock.unixTimestamp = BigInt(now);
    this.svm.setClock(clock);
    this.blockTimes.set(clock.slot, now);
  }

  private registerLatestBlockhash(): void {
    this.blockhashes.set(this.svm.latestBlockhash(), this.blockHeight + this.validityBlocks);
    for (const [hash, lastValid] of this.blockhashes) {
      if (lastValid < this.blockHeight) this.blockhashes.delete(hash);
    }
  }

  private withRuntimeChecks<T>(checks: { sigverify: boolean; blockhashCheck: boolean }, run: () => T): T {
    this.svm.withSigverify(checks.sigverify).withBlockhashCheck(checks.blockhashCheck);
    try {
      return run();
    } finally {
      this.svm.withSigverify(true).withBlockhashCheck(true);
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Accounts
  // -------------------------------------------------------------------------------------------------------------

  getAccount(address: string): StoredAccount | null {
    const account = this.svm.getAccount(address as Address);
    if (!account.exists) return null;
    return {
      lamports: BigInt(account.lamports),
      owner: account.programAddress,
      data: new Uint8Array(account.data),
      executable: account.executable,
    };
  }

  readonly reader: AccountReader = (address) => {
    const account = this.getAccount(address);
    return account ? { owner: account.owner, data: account.data } : null;
  };

  /** Static keys plus the addresses a v0 message loads from address lookup tables. */
  accountKeys(message: LegacyOrV0Message): AccountKeys {
    const loadedWritable: Address[] = [];
    const loadedReadonly: Address[] = [];
    if (message.version === 0) {
      for (const lookup of message.addressTableLookups ?? []) {
        const table = this.getAccount(lookup.lookupTableAddress);
        if (!table || table.owner !== ADDRESS_LOOKUP_TABLE_PROGRAM) continue;
        const addressAt = (i: number): Address | null => {
          const offset = 56 + i * 32;
          return offset + 32 <= table.data.length ? readAddress(table.data, offset) : null;
        };
        for (const i of lookup.writableIndexes) {
          const a = addressAt(i);
          if (a) loadedWritable.push(a);
        }
        for (const i of lookup.readonlyIndexes) {
          const a = addressAt(i);
          if (a) loadedReadonly.push(a);
        }
      }
    }
    return {
      all: [...message.staticAccounts, ...loadedWritable, ...loadedReadonly],
      staticCount: message.staticAccounts.length,
      loadedWritable,
      loadedReadonly,
    };
  }

  private snapshot(keys: Address[], read: (address: string) => StoredAccount | null) {
    const lamports: bigint[] = [];
    const tokens: TokenBalance[] = [];
    const decimalsCache = new Map<string, number | null>();
    const readerFor: AccountReader = (address) => {
      const a = read(address);
      return a ? { owner: a.owner, data: a.data } : null;
    };
    keys.forEach((key, accountIndex) => {
      const account = read(key);
      lamports.push(account?.lamports ?? 0n);
      if (!account) return;
      const token = decodeTokenAccount(account.owner, account.data);
      if (!token) return;
      let decimals = decimalsCache.get(token.mint);
      if (decimals === undefined) {
        decimals = mintDecimals(readerFor, token.mint);
        decimalsCache.set(token.mint, decimals);
      }
      if (decimals === null) return;
      tokens.push({
        accountIndex,
        mint: token.mint,
        owner: token.owner,
        programId: token.programId,
        uiTokenAmount: uiTokenAmount(token.amount, decimals),
      });
    });
    return { lamports, tokens };
  }

  private static innerInstructions(meta: TransactionMetadata): ExecutionMeta['innerInstructions'] {
    const out: ExecutionMeta['innerInstructions'] = [];
    meta.innerInstructions().forEach((list, index) => {
      if (list.length === 0) return;
      out.push({
        index,
        instructions: list.map((inner) => {
          const ix = inner.instruction();
          return {
            programIdIndex: ix.programIdIndex(),
            accounts: Array.from(ix.accounts()),
            data: new Uint8Array(ix.data()),
            stackHeight: inner.stackHeight(),
          };
        }),
      });
    });
    return out;
  }

  private static returnData(meta: TransactionMetadata): ExecutionMeta['returnData'] {
    const rd = meta.returnData();
    const data = rd.data();
    if (data.length === 0) return null;
    return { programId: toBase58(rd.programId()), data: new Uint8Array(data) };
  }

  // -------------------------------------------------------------------------------------------------------------
  // Transactions
  // -------------------------------------------------------------------------------------------------------------

  getRecord(signature: string): TransactionRecord | undefined {
    return this.records.get(signature);
  }

  /** Records, newest first. */
  recordsNewestFirst(): TransactionRecord[] {
    const out: TransactionRecord[] = [];
    for (let i = this.order.length - 1; i >= 0; i--) {
      const record = this.records.get(this.order[i]!);
      if (record) out.push(record);
    }
    return out;
  }

  /**
   * Simulates without changing state. `sigVerify: false` accepts missing/invalid signatures (as x402 facilitators
   * simulate a transaction before adding the fee payer's signature); `replaceRecentBlockhash` ignores the blockhash.
   */
  simulate(
    decoded: DecodedTransaction,
    options: { sigVerify: boolean; replaceRecentBlockhash: boolean },
  ): SimulationResult {
    if (options.sigVerify && decoded.signatures.some((s) => s === null)) {
      throw new RpcError(-32003, 'Transaction signature verification failure');
    }
    const keys = this.accountKeys(decoded.message);
    const pre = this.snapshot(keys.all, (a) => this.getAccount(a));
    const blockhashCheck = !(options.replaceRecentBlockhash || this.isBlockhashValid(decoded.recentBlockhash));
    const result = this.withRuntimeChecks({ sigverify: options.sigVerify, blockhashCheck }, () =>
      this.svm.simulateTransaction(decoded.transaction),
    );
    const fee = computeFee(decoded.message);
    if (result instanceof FailedTransactionMetadata) {
      const meta = result.meta();
      return {
        keys,
        err: toRpcTransactionError(result.err()),
        fee,
        preBalances: pre.lamports,
        postBalances: pre.lamports,
        preTokenBalances: pre.tokens,
        postTokenBalances: pre.tokens,
        logs: meta.logs(),
        innerInstructions: SolanaChainEngine.innerInstructions(meta),
        computeUnitsConsumed: meta.computeUnitsConsumed(),
        returnData: SolanaChainEngine.returnData(meta),
        postAccounts: null,
      };
    }
    const meta = result.meta();
    const postAccounts = new Map<string, StoredAccount>();
    for (const account of result.postAccounts()) {
      postAccounts.set(account.address, {
        lamports: BigInt(account.lamports),
        owner: account.programAddress,
        data: new Uint8Array(account.data),
        executable: account.executable,
      });
    }
    const post = this.snapshot(keys.all, (a) => postAccounts.get(a) ?? this.getAccount(a));
    return {
      keys,
      err: null,
      fee,
      preBalances: pre.lamports,
      postBalances: post.lamports,
      preTokenBalances: pre.tokens,
      postTokenBalances: post.tokens,
      logs: meta.logs(),
      innerInstructions: SolanaChainEngine.innerInstructions(meta),
      computeUnitsConsumed: meta.computeUnitsConsumed(),
      returnData: SolanaChainEngine.returnData(meta),
      postAccounts,
    };
  }

  /**
   * `sendTransaction`: preflight (unless skipped), execute, record, close the block. Like the real RPC, a
   * preflight failure is a JSON-RPC error -32002 carrying `err` and `logs`, and nothing changes on chain. With
   * `skipPreflight`, a transaction that fails during execution but can pay its fee lands as a failed transaction
   * (fee charged, `meta.err` set), exactly as on a real cluster.
   */
  sendTransaction(decoded: DecodedTransaction, options: { skipPreflight: boolean }): string {
    const signature = decoded.signature;
    if (!signature || decoded.signatures.some((s) => s === null)) {
      throw new RpcError(-32003, 'Transaction signature verification failure');
    }
    if (this.records.has(signature)) {
      if (options.skipPreflight) return signature;
      throw preflightError('AlreadyProcessed', [], 0n);
    }
    if (!options.skipPreflight) {
      const simulation = this.simulate(decoded, { sigVerify: true, replaceRecentBlockhash: false });
      if (simulation.err) {
        if (simulation.err === 'SignatureFailure') {
          throw new RpcError(-32003, 'Transaction signature verification failure');
        }
        throw preflightError(simulation.err, simulation.logs, simulation.computeUnitsConsumed);
      }
    }
    const keys = this.accountKeys(decoded.message);
    const pre = this.snapshot(keys.all, (a) => this.getAccount(a));
    const blockhashCheck = !this.isBlockhashValid(decoded.recentBlockhash);
    const result = this.withRuntimeChecks({ sigverify: true, blockhashCheck }, () =>
      this.svm.sendTransaction(decoded.transaction),
    );
    let err: RpcTransactionError | null = null;
    let meta: TransactionMetadata;
    if (result instanceof FailedTransactionMetadata) {
      err = toRpcTransactionError(result.err());
      meta = result.meta();
      const landed = this.svm.getTransaction(signature as Signature) !== null;
      if (!landed) {
        if (err === 'SignatureFailure') throw new RpcError(-32003, 'Transaction signature verification failure');
        throw preflightError(err, meta.logs(), meta.computeUnitsConsumed());
      }
    } else {
      meta = result;
    }
    const post = this.snapshot(keys.all, (a) => this.getAccount(a));
    const slot = this.slot;
    const record: TransactionRecord = {
      signature,
      slot,
      blockTime: this.blockTimes.get(slot) ?? this.lastTimestamp,
      decoded,
      keys,
      err,
      fee: computeFee(decoded.message),
      preBalances: pre.lamports,
      postBalances: post.lamports,
      preTokenBalances: pre.tokens,
      postTokenBalances: post.tokens,
      logs: meta.logs(),
      innerInstructions: SolanaChainEngine.innerInstructions(meta),
      computeUnitsConsumed: meta.computeUnitsConsumed(),
      returnData: SolanaChainEngine.returnData(meta),
    };
    this.records.set(signature, record);
    this.order.push(signature);
    this.advanceSlots(1n);
    return signature;
  }

  /** Sends `lamports` from the faucet in a real (recorded) system transfer; returns the signature. */
  requestAirdrop(to: Address, lamports: bigint): Promise<string> {
    const run = async (): Promise<string> => {
      const { blockhash, lastValidBlockHeight } = this.latestBlockhash();
      const message = pipe(
        createTransactionMessage({ version: 0 }),
        (m) => setTransactionMessageFeePayerSigner(this.faucet, m),
        (m) => setTransactionMessageLifetimeUsingBlockhash({ blockhash, lastValidBlockHeight }, m),
        (m) =>
          appendTransactionMessageInstructions(
            [getTransferSolInstruction({ source: this.faucet, destination: to, amount: lamports })],
            m,
          ),
      );
      const signed = await signTransactionMessageWithSigners(message);
      const wire = new Uint8Array(transactionEncoder.encode(signed));
      return this.sendTransaction(decodeWireTransaction(wire), { skipPreflight: false });
    };
    // Serialized so two identical concurrent airdrops get different blockhashes (and so different signatures).
    const next = this.airdropQueue.then(run, run);
    this.airdropQueue = next.catch(() => undefined);
    return next;
  }
}

export function preflightError(err: RpcTransactionError, logs: string[], unitsConsumed: bigint): RpcError {
  return new RpcError(-32002, `Transaction simulation failed: ${describeTransactionError(err)}`, {
    accounts: null,
    err,
    innerInstructions: null,
    loadedAccountsDataSize: null,
    logs,
    replacementBlockhash: null,
    returnData: null,
    unitsConsumed,
  });
}
