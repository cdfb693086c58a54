/**
 * Decoding helpers for the Solana dev chain: SPL Token account/mint layouts, the `jsonParsed` instruction formats of
 * the real Solana RPC (spl-token, spl-memo, system, spl-associated-token-account), and litesvm error objects turned
 * into the RPC's `TransactionError` JSON.
 */
import { type Address, getAddressDecoder, getBase58Decoder } from '@solana/kit';

export const SYSTEM_PROGRAM = '11111111111111111111111111111111';
export const TOKEN_PROGRAM = 'TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA';
export const TOKEN_2022_PROGRAM = 'TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb';
export const ASSOCIATED_TOKEN_PROGRAM = 'ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL';
/** SPL Memo v3 — the one x402 and most wallets use. */
export const MEMO_PROGRAM = 'MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr';
export const MEMO_V1_PROGRAM = 'Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo';
/** Default address of `@solana-program/memo` >= 0.15 (not bundled by litesvm; the dev chain deploys memo v3 there). */
export const MEMO_P_PROGRAM = 'Memo4c2pN8afCj432Lb7RMVKi9PbQnnW7ewFFaV3oAH';
export const COMPUTE_BUDGET_PROGRAM = 'ComputeBudget111111111111111111111111111111';
export const ADDRESS_LOOKUP_TABLE_PROGRAM = 'AddressLookupTab1e1111111111111111111111111';

const MEMO_PROGRAMS = new Set<string>([MEMO_PROGRAM, MEMO_V1_PROGRAM, MEMO_P_PROGRAM]);

const addressDecoder = getAddressDecoder();
const base58Decoder = getBase58Decoder();

export function toBase58(bytes: Uint8Array): string {
  return base58Decoder.decode(bytes);
}

export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

export function readAddress(data: Uint8Array, offset: number): Address {
  return addressDecoder.decode(data.subarray(offset, offset + 32));
}

function view(data: Uint8Array): DataView {
  return new DataView(data.buffer, data.byteOffset, data.byteLength);
}

export function readU64(data: Uint8Array, offset: number): bigint {
  return view(data).getBigUint64(offset, true);
}

function readU32(data: Uint8Array, offset: number): number {
  return view(data).getUint32(offset, true);
}

function readCOptionAddress(data: Uint8Array, offset: number): Address | null {
  return readU32(data, offset) === 1 ? readAddress(data, offset + 4) : null;
}

// ---------------------------------------------------------------------------------------------------------------
// Token accounts and mints
// ---------------------------------------------------------------------------------------------------------------

export const TOKEN_ACCOUNT_SIZE = 165;
export const MINT_SIZE = 82;

export interface TokenAccountState {
  programId: string;
  mint: Address;
  owner: Address;
  amount: bigint;
  delegate: Address | null;
  state: 'initialized' | 'frozen';
  isNative: bigint | null;
  delegatedAmount: bigint;
  closeAuthority: Address | null;
}

export interface MintState {
  programId: string;
  mintAuthority: Address | null;
  supply: bigint;
  decimals: number;
  freezeAuthority: Address | null;
}

function isTokenProgram(owner: string): boolean {
  return owner === TOKEN_PROGRAM || owner === TOKEN_2022_PROGRAM;
}

/** Decodes an initialized SPL Token / Token-2022 token account, or returns null when `data` is not one. */
export function decodeTokenAccount(programOwner: string, data: Uint8Array): TokenAccountState | null {
  if (!isTokenProgram(programOwner) || data.length < TOKEN_ACCOUNT_SIZE) return null;
  if (programOwner === TOKEN_PROGRAM && data.length !== TOKEN_ACCOUNT_SIZE) return null;
  if (programOwner === TOKEN_2022_PROGRAM && data.length > TOKEN_ACCOUNT_SIZE && data[TOKEN_ACCOUNT_SIZE] !== 2) {
    return null;
  }
  const stateByte = data[108];
  if (stateByte !== 1 && stateByte !== 2) return null;
  return {
    programId: programOwner,
    mint: readAddress(data, 0),
    owner: readAddress(data, 32),
    amount: readU64(data, 64),
    delegate: readCOptionAddress(data, 72),
    state: stateByte === 2 ? 'frozen' : 'initialized',
    isNative: readU32(data, 109) === 1 ? readU64(data, 113) : null,
    delegatedAmount: readU64(data, 121),
    closeAuthority: readCOptionAddress(data, 129),
  };
}

/** Decodes an initialized SPL Token / Token-2022 mint, or returns null when `data` is not one. */
export function decodeMint(programOwner: string, data: Uint8Array): MintState | null {
  if (!isTokenProgram(programOwner) || data.length < MINT_SIZE) return null;
  if (programOwner === TOKEN_PROGRAM && data.length !== MINT_SIZE) return null;
  if (programOwner === TOKEN_2022_PROGRAM && data.length !== MINT_SIZE) {
    if (data.length <= TOKEN_ACCOUNT_SIZE || data[TOKEN_ACCOUNT_SIZE] !== 1) return null;
  }
  if (data[45] !== 1) return null;
  return {
    programId: programOwner,
    mintAuthority: readCOptionAddress(data, 0),
    supply: readU64(data, 36),
    decimals: data[44] ?? 0,
    freezeAuthority: readCOptionAddress(data, 46),
  };
}

/** Encodes an initialized SPL Token mint (82 bytes). */
export function encodeMint(args: {
  mintAuthority: Uint8Array | null;
  supply: bigint;
  decimals: number;
  freezeAuthority: Uint8Array | null;
}): Uint8Array {
  const data = new Uint8Array(MINT_SIZE);
  const dv = view(data);
  if (args.mintAuthority) {
    dv.setUint32(0, 1, true);
    data.set(args.mintAuthority, 4);
  }
  dv.setBigUint64(36, args.supply, true);
  data[44] = args.decimals;
  data[45] = 1;
  if (args.freezeAuthority) {
    dv.setUint32(46, 1, true);
    data.set(args.freezeAuthority, 50);
  }
  return data;
}

export interface UiTokenAmount {
  amount: string;
  decimals: number;
  uiAmount: number | null;
  uiAmountString: string;
}

export function formatUnits(amount: bigint, decimals: number): string {
  if (decimals === 0) return amount.toString();
  const negative = amount < 0n;
  const digits = (negative ? -amount : amount).toString().padStart(decimals + 1, '0');
  const whole = digits.slice(0, -decimals);
  const fraction = digits.slice(-decimals).replace(/0+$/, '');
  return (negative ? '-' : '') + (fraction ? `${whole}.${fraction}` : whole);
}

export function uiTokenAmount(amount: bigint, decimals: number): UiTokenAmount {
  const uiAmountString = formatUnits(amount, decimals);
  return { amount: amount.toString(), decimals, uiAmount: Number(uiAmountString), uiAmountString };
}

/** Reads account data/owner; used to look up mint decimals while parsing. */
export type AccountReader = (address: string) => { owner: string; data: Uint8Array } | null;

export function mintDecimals(read: AccountReader, mint: string): number | null {
  const account = read(mint);
  if (!account) return null;
  return decodeMint(account.owner, account.data)?.decimals ?? null;
}

/** The `jsonParsed` account data of the real RPC for token accounts and mints; null for anything else. */
export function parseAccountData(
  owner: string,
  data: Uint8Array,
  read: AccountReader,
): { program: string; parsed: { type: string; info: Record<string, unknown> }; space: number } | null {
  if (!isTokenProgram(owner)) return null;
  const program = owner === TOKEN_PROGRAM ? 'spl-token' : 'spl-token-2022';
  const tokenAccount = decodeTokenAccount(owner, data);
  if (tokenAccount) {
    const decimals = mintDecimals(read, tokenAccount.mint);
    if (decimals === null) return null;
    const info: Record<string, unknown> = {
      isNative: tokenAccount.isNative !== null,
      mint: tokenAccount.mint,
      owner: tokenAccount.owner,
      state: tokenAccount.state,
      tokenAmount: uiTokenAmount(tokenAccount.amount, decimals),
    };
    if (tokenAccount.delegate) {
      info['delegate'] = tokenAccount.delegate;
      info['delegatedAmount'] = uiTokenAmount(tokenAccount.delegatedAmount, decimals);
    }
    if (tokenAccount.isNative !== null) info['rentExemptReserve'] = uiTokenAmount(tokenAccount.isNative, 9);
    if (tokenAccount.closeAuthority) info['closeAuthority'] = tokenAccount.closeAuthority;
    return { program, parsed: { type: 'account', info }, space: data.length };
  }
  const mint = decodeMint(owner, data);
  if (mint) {
    return {
      program,
      parsed: {
        type: 'mint',
        info: {
          decimals: mint.decimals,
          freezeAuthority: mint.freezeAuthority,
          isInitialized: true,
          mintAuthority: mint.mintAuthority,
          supply: mint.supply.toString(),
        },
      },
      space: data.length,
    };
  }
  return null;
}

// ---------------------------------------------------------------------------------------------------------------
// Instructions (jsonParsed)
// ---------------------------------------------------------------------------------------------------------------

export interface ParsedInstructionJson {
  program: string;
  programId: string;
  parsed: unknown;
  stackHeight: number | null;
}

export interface PartiallyDecodedInstructionJson {
  programId: string;
  accounts: string[];
  data: string;
  stackHeight: number | null;
}

function parseTokenInstruction(
  accounts: string[],
  data: Uint8Array,
): { type: string; info: Record<string, unknown> } | null {
  const tag = data[0];
  const acc = (i: number): string => {
    const a = accounts[i];
    if (a === undefined) throw new Error('missing account');
    return a;
  };
  const authorityField = (key: string, index: number): Record<string, unknown> =>
    accounts.length > index + 1
      ? { [`multisig${key[0]!.toUpperCase()}${key.slice(1)}`]: acc(index), signers: accounts.slice(index + 1) }
      : { [key]: acc(index) };
  switch (tag) {
    case 3: // Transfer
      if (data.length < 9) return null;
      return {
        type: 'transfer',
        info: {
          source: acc(0),
          destination: acc(1),
          amount: readU64(data, 1).toString(),
          ...authorityField('authority', 2),
        },
      };
    case 12: // TransferChecked
      if (data.length < 10) return null;
      return {
        type: 'transferChecked',
        info: {
          source: acc(0),
          mint: acc(1),
          destination: acc(2),
          ...authorityField('authority', 3),
          tokenAmount: uiTokenAmount(readU64(data, 1), data[9]!),
        },
      };
    case 7: // MintTo
      if (data.length < 9) return null;
      return {
        type: 'mintTo',
        info: {
          mint: acc(0),
          account: acc(1),
          amount: readU64(data, 1).toString(),
          ...authorityField('mintAuthority', 2),
        },
      };
    case 14: // MintToChecked
      if (data.length < 10) return null;
      return {
        type: 'mintToChecked',
        info: {
          mint: acc(0),
          account: acc(1),
          ...authorityField('mintAuthority', 2),
          tokenAmount: uiTokenAmount(readU64(data, 1), data[9]!),
        },
      };
    case 8: // Burn
      if (data.length < 9) return null;
      return {
        type: 'burn',
        info: { account: acc(0), mint: acc(1), amount: readU64(data, 1).toString(), ...authorityField('authority', 2) },
      };
    case 15: // BurnChecked
      if (data.length < 10) return null;
      return {
        type: 'burnChecked',
        info: {
          account: acc(0),
          mint: acc(1),
          ...authorityField('authority', 2),
          tokenAmount: uiTokenAmount(readU64(data, 1), data[9]!),
        },
      };
    case 4: // Approve
      if (data.length < 9) return null;
      return {
        type: 'approve',
        info: { source: acc(0), delegate: acc(1), amount: readU64(data, 1).toString(), ...authorityField('owner', 2) },
      };
    case 13: // ApproveChecked
      if (data.length < 10) return null;
      return {
        type: 'approveChecked',
        info: {
          source: acc(0),
          mint: acc(1),
          delegate: acc(2),
          ...authorityField('owner', 3),
          tokenAmount: uiTokenAmount(readU64(data, 1), data[9]!),
        },
      };
    case 5: // Revoke
      return { type: 'revoke', info: { source: acc(0), ...authorityField('owner', 1) } };
    case 9: // CloseAccount
      return { type: 'closeAccount', info: { account: acc(0), destination: acc(1), ...authorityField('owner', 2) } };
    case 1: // InitializeAccount
      return { type: 'initializeAccount', info: { account: acc(0), mint: acc(1), owner: acc(2), rentSysvar: acc(3) } };
    case 16: // InitializeAccount2
      if (data.length < 33) return null;
      return {
        type: 'initializeAccount2',
        info: { account: acc(0), mint: acc(1), owner: readAddress(data, 1), rentSysvar: acc(2) },
      };
    case 18: // InitializeAccount3
      if (data.length < 33) return null;
      return { type: 'initializeAccount3', info: { account: acc(0), mint: acc(1), owner: readAddress(data, 1) } };
    case 20: {
      // InitializeMint2
      if (data.length < 35) return null;
      const info: Record<string, unknown> = {
        mint: acc(0),
        decimals: data[1],
        mintAuthority: readAddress(data, 2),
      };
      if (data[34] === 1 && data.length >= 67) info['freezeAuthority'] = readAddress(data, 35);
      return { type: 'initializeMint2', info };
    }
    case 17: // SyncNative
      return { type: 'syncNative', info: { account: acc(0) } };
    case 21: // GetAccountDataSize
      return { type: 'getAccountDataSize', info: { mint: acc(0), extensionTypes: [] } };
    case 22: // InitializeImmutableOwner
      return { type: 'initializeImmutableOwner', info: { account: acc(0) } };
    default:
      return null;
  }
}

function parseSystemInstruction(
  accounts: string[],
  data: Uint8Array,
): { type: string; info: Record<string, unknown> } | null {
  if (data.length < 4) return null;
  const acc = (i: number): string => {
    const a = accounts[i];
    if (a === undefined) throw new Error('missing account');
    return a;
  };
  switch (readU32(data, 0)) {
    case 0: // CreateAccount
      if (data.length < 52) return null;
      return {
        type: 'createAccount',
        info: {
          source: acc(0),
          newAccount: acc(1),
          lamports: readU64(data, 4),
          space: readU64(data, 12),
          owner: readAddress(data, 20),
        },
      };
    case 1: // Assign
      if (data.length < 36) return null;
      return { type: 'assign', info: { account: acc(0), owner: readAddress(data, 4) } };
    case 2: // Transfer
      if (data.length < 12) return null;
      return { type: 'transfer', info: { source: acc(0), destination: acc(1), lamports: readU64(data, 4) } };
    case 8: // Allocate
      if (data.length < 12) return null;
      return { type: 'allocate', info: { account: acc(0), space: readU64(data, 4) } };
    default:
      return null;
  }
}

function parseAssociatedTokenInstruction(
  accounts: string[],
  data: Uint8Array,
): { type: string; info: Record<string, unknown> } | null {
  const tag = data.length === 0 ? 0 : data[0];
  if (tag !== 0 && tag !== 1) return null;
  if (accounts.length < 6) return null;
  return {
    type: tag === 0 ? 'create' : 'createIdempotent',
    info: {
      source: accounts[0],
      account: accounts[1],
      wallet: accounts[2],
      mint: accounts[3],
      systemProgram: accounts[4],
      tokenProgram: accounts[5],
    },
  };
}

/**
 * One instruction the way the real RPC renders it with `encoding: 'jsonParsed'`: parsed for the programs the RPC
 * parses (spl-token, spl-memo, system, spl-associated-token-account), partially decoded otherwise.
 */
export function jsonParsedInstruction(
  programId: string,
  accounts: string[],
  data: Uint8Array,
  stackHeight: number | null,
): ParsedInstructionJson | PartiallyDecodedInstructionJson {
  try {
    if (MEMO_PROGRAMS.has(programId)) {
      const text = new TextDecoder('utf-8', { fatal: true }).decode(data);
      return { program: 'spl-memo', programId, parsed: text, stackHeight };
    }
    let parsed: { type: string; info: Record<string, unknown> } | null = null;
    let program = '';
    if (programId === TOKEN_PROGRAM || programId === TOKEN_2022_PROGRAM) {
      parsed = parseTokenInstruction(accounts, data);
      program = programId === TOKEN_PROGRAM ? 'spl-token' : 'spl-token-2022';
    } else if (programId === SYSTEM_PROGRAM) {
      parsed = parseSystemInstruction(accounts, data);
      program = 'system';
    } else if (programId === ASSOCIATED_TOKEN_PROGRAM) {
      parsed = parseAssociatedTokenInstruction(accounts, data);
      program = 'spl-associated-token-account';
    }
    if (parsed) return { program, programId, parsed, stackHeight };
  } catch {
    // fall through to the partially decoded form, as the real RPC does for unparsable instructions
  }
  return { programId, accounts, data: toBase58(data), stackHeight };
}

/** Whether `programId` is one of the SPL Memo program addresses. */
export function isMemoProgram(programId: string): boolean {
  return MEMO_PROGRAMS.has(programId);
}

// ---------------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------------

/** Order of litesvm's `TransactionErrorFieldless` (= agave's fieldless `TransactionError` variants). */
const TRANSACTION_ERRORS = [
  'AccountInUse',
  'AccountLoadedTwice',
  'AccountNotFound',
  'ProgramAccountNotFound',
  'InsufficientFundsForFee',
  'InvalidAccountForFee',
  'AlreadyProcessed',
  'BlockhashNotFound',
  'CallChainTooDeep',
  'MissingSignatureForFee',
  'InvalidAccountIndex',
  'SignatureFailure',
  'InvalidProgramForExecution',
  'SanitizeFailure',
  'ClusterMaintenance',
  'AccountBorrowOutstanding',
  'WouldExceedMaxBlockCostLimit',
  'UnsupportedVersion',
  'InvalidWritableAccount',
  'WouldExceedMaxAccountCostLimit',
  'WouldExceedAccountDataBlockLimit',
  'TooManyAccountLocks',
  'AddressLookupTableNotFound',
  'InvalidAddressLookupTableOwner',
  'InvalidAddressLookupTableData',
  'InvalidAddressLookupTableIndex',
  'InvalidRentPayingAccount',
  'WouldExceedMaxVoteCostLimit',
  'WouldExceedAccountDataTotalLimit',
  'MaxLoadedAccountsDataSizeExceeded',
  'ResanitizationNeeded',
  'InvalidLoadedAccountsDataSizeLimit',
  'UnbalancedTransaction',
  'ProgramCacheHitMaxLimit',
  'CommitCancelled',
] as const;

/** Order of litesvm's `InstructionErrorFieldless`. */
const INSTRUCTION_ERRORS = [
  'GenericError',
  'InvalidArgument',
  'InvalidInstructionData',
  'InvalidAccountData',
  'AccountDataTooSmall',
  'InsufficientFunds',
  'IncorrectProgramId',
  'MissingRequiredSignature',
  'AccountAlreadyInitialized',
  'UninitializedAccount',
  'UnbalancedInstruction',
  'ModifiedProgramId',
  'ExternalAccountLamportSpend',
  'ExternalAccountDataModified',
  'ReadonlyLamportChange',
  'ReadonlyDataModified',
  'DuplicateAccountIndex',
  'ExecutableModified',
  'RentEpochModified',
  'NotEnoughAccountKeys',
  'AccountDataSizeChanged',
  'AccountNotExecutable',
  'AccountBorrowFailed',
  'AccountBorrowOutstanding',
  'DuplicateAccountOutOfSync',
  'InvalidError',
  'ExecutableDataModified',
  'ExecutableLamportChange',
  'ExecutableAccountNotRentExempt',
  'UnsupportedProgramId',
  'CallDepth',
  'MissingAccount',
  'ReentrancyNotAllowed',
  'MaxSeedLengthExceeded',
  'InvalidSeeds',
  'InvalidRealloc',
  'ComputationalBudgetExceeded',
  'PrivilegeEscalation',
  'ProgramEnvironmentSetupFailure',
  'ProgramFailedToComplete',
  'ProgramFailedToCompile',
  'Immutable',
  'IncorrectAuthority',
  'AccountNotRentExempt',
  'InvalidAccountOwner',
  'ArithmeticOverflow',
  'UnsupportedSysvar',
  'IllegalOwner',
  'MaxAccountsDataAllocationsExceeded',
  'MaxAccountsExceeded',
  'MaxInstructionTraceLengthExceeded',
  'BuiltinProgramsMustConsumeComputeUnits',
  'BorshIoError',
] as const;

/** The JSON the real RPC uses for a `TransactionError`, e.g. `{ InstructionError: [2, { Custom: 1 }] }`. */
export type RpcTransactionError =
  | string
  | { InstructionError: [number, string | { Custom: number }] }
  | { DuplicateInstruction: number }
  | { InsufficientFundsForRent: { account_index: number } }
  | { ProgramExecutionTemporarilyRestricted: { account_index: number } };

function instructionErrorJson(err: unknown): string | { Custom: number } {
  if (typeof err === 'number') return INSTRUCTION_ERRORS[err] ?? 'GenericError';
  if (err && typeof err === 'object') {
    if ('code' in err && typeof (err as { code: unknown }).code === 'number') {
      return { Custom: (err as { code: number }).code };
    }
    if ('msg' in err) return 'BorshIoError';
  }
  return 'GenericError';
}

/** Converts litesvm's `FailedTransactionMetadata.err()` into the RPC's `TransactionError` JSON. */
export function toRpcTransactionError(err: unknown): RpcTransactionError {
  if (typeof err === 'number') return TRANSACTION_ERRORS[err] ?? 'SanitizeFailure';
  if (err && typeof err === 'object') {
    const name = err.constructor?.name ?? '';
    const e = err as { index?: number; accountIndex?: number; err?: () => unknown };
    if (name.includes('InstructionError') && typeof e.err === 'function') {
      return { InstructionError: [e.index ?? 0, instructionErrorJson(e.err())] };
    }
    if (name.includes('DuplicateInstruction')) return { DuplicateInstruction: e.index ?? 0 };
    if (name.includes('InsufficientFundsForRent')) {
      return { InsufficientFundsForRent: { account_index: e.accountIndex ?? 0 } };
    }
    if (name.includes('ProgramExecutionTemporarilyRestricted')) {
      return { ProgramExecutionTemporarilyRestricted: { account_index: e.accountIndex ?? 0 } };
    }
  }
  return 'SanitizeFailure';
}

const TRANSACTION_ERROR_MESSAGES: Record<string, string> = {
  AccountNotFound: 'Attempt to debit an account but found no record of a prior credit.',
  AlreadyProcessed: 'This transaction has already been processed',
  BlockhashNotFound: 'Blockhash not found',
  InsufficientFundsForFee: 'Insufficient funds for fee',
  SignatureFailure: 'Transaction did not pass signature verification',
  ProgramAccountNotFound: 'Attempt to load a program that does not exist',
  InvalidAccountForFee: 'This account may not be used to pay transaction fees',
};

const INSTRUCTION_ERROR_MESSAGES: Record<string, string> = {
  InsufficientFunds: 'insufficient funds for instruction',
  InvalidArgument: 'invalid program argument',
  InvalidInstructionData: 'invalid instruction data',
  InvalidAccountData: 'invalid account data for instruction',
  MissingRequiredSignature: 'missing required signature for instruction',
  AccountAlreadyInitialized: 'instruction requires an uninitialized account',
  UninitializedAccount: 'instruction requires an initialized account',
  IncorrectProgramId: 'incorrect program id for instruction',
  InvalidAccountOwner: 'Invalid account owner',
  IllegalOwner: 'Provided owner is not allowed',
};

/** Human text in the style of agave's `Display for TransactionError`. */
export function describeTransactionError(err: RpcTransactionError): string {
  if (typeof err === 'string') return TRANSACTION_ERROR_MESSAGES[err] ?? err;
  if ('InstructionError' in err) {
    const [index, inner] = err.InstructionError;
    const text =
      typeof inner === 'string'
        ? (INSTRUCTION_ERROR_MESSAGES[inner] ?? inner)
        : `custom program error: 0x${inner.Custom.toString(16)}`;
    return `Error processing Instruction ${index}: ${text}`;
  }
  if ('InsufficientFundsForRent' in err) {
    return `Transaction results in an account (${err.InsufficientFundsForRent.account_index}) with insufficient funds for rent`;
  }
  if ('DuplicateInstruction' in err) {
    return `Transaction contains a duplicate instruction (${err.DuplicateInstruction}) that is not allowed`;
  }
  return JSON.stringify(err);
}
