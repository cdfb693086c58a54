/**
 * Local Solana chain for tests and `npm start`: litesvm (in-process SVM) behind a JSON-RPC 2.0 HTTP server that
 * speaks the Solana RPC API, so production code uses `@solana/kit` / `@x402/svm` exactly as against a real cluster.
 *
 * Network: the chain identifies as Solana **devnet** (`solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1`, genesis hash
 * `EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG`) because `@x402/svm` only accepts the three public CAIP-2 ids, and
 * the USDC-like mint (6 decimals, SPL Token program) is created at the devnet USDC address
 * `4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU`, so x402's default-asset tables resolve it too.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type Address,
  address,
  createKeyPairSignerFromPrivateKeyBytes,
  createSolanaRpc,
  getAddressEncoder,
  getBase58Encoder,
  type KeyPairSigner,
  lamports,
  type Rpc,
  type SolanaRpcApi,
} from '@solana/kit';
import { LiteSVM } from 'litesvm';
import {
  computeFee,
  decodeWireMessage,
  decodeWireTransaction,
  isWritableIndex,
  RpcError,
  type SimulationResult,
  SolanaChainEngine,
  type StoredAccount,
  type TransactionRecord,
} from './engine.js';
import {
  decodeMint,
  decodeTokenAccount,
  encodeMint,
  isMemoProgram,
  jsonParsedInstruction,
  MEMO_P_PROGRAM,
  MEMO_PROGRAM,
  MINT_SIZE,
  mintDecimals,
  parseAccountData,
  SYSTEM_PROGRAM,
  TOKEN_2022_PROGRAM,
  TOKEN_PROGRAM,
  toBase58,
  toBase64,
  uiTokenAmount,
} from './parsers.js';

/** CAIP-2 id of Solana devnet — the id this dev chain uses (x402's `normalizeNetwork` rejects anything else). */
export const SOLANA_DEV_CHAIN_CAIP2 = 'solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1';
/** Devnet's genesis hash; its first 32 characters are the CAIP-2 reference. */
export const SOLANA_DEV_CHAIN_GENESIS_HASH = 'EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG';
/** The devnet USDC mint address (x402's `USDC_DEVNET_ADDRESS`), reused for the local USDC-like mint. */
export const DEVNET_USDC_MINT = '4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU';
export const USDC_DECIMALS = 6;
export const LAMPORTS_PER_SOL = 1_000_000_000n;

const U64_MAX = 18_446_744_073_709_551_615n;
const API_VERSION = '2.2.16';
const MAX_BODY_BYTES = 10 * 1024 * 1024;

export interface StartSolanaDevChainOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
  /** Address of the USDC-like mint; default the devnet USDC address. */
  usdcMint?: string;
  /** Mint authority of the USDC-like mint; default a fresh keypair. */
  mintAuthority?: KeyPairSigner;
  /** SOL given to `payer` at genesis (default 1,000,000 SOL). */
  payerLamports?: bigint;
  /**
   * Blocks (= landed transactions, one per block here) a blockhash stays valid; default 150 like a real cluster.
   * Raise it when more than ~150 transactions can land between fetching a blockhash and sending (load tests).
   */
  blockhashValidityBlocks?: number;
  /**
   * Blocks on top of a transaction's before it is `finalized`; before that it is only `confirmed`. Default 0: every
   * transaction is finalized as it lands. A real cluster needs about 32 (see `setFinalizationDepth`).
   */
  finalizationDepth?: number;
}

export interface SolanaDevChain {
  /** `http://127.0.0.1:<port>` — pass to `createSolanaRpc`, `@x402/svm` configs, etc. */
  rpcUrl: string;
  port: number;
  /** `solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1` (devnet's CAIP-2 id; see module doc). */
  caip2: string;
  genesisHash: string;
  /** The in-process SVM (direct access for assertions; transactions should go through `rpcUrl`). */
  svm: LiteSVM;
  engine: SolanaChainEngine;
  /** A `@solana/kit` RPC client bound to `rpcUrl`. */
  rpc: Rpc<SolanaRpcApi>;
  usdcMint: Address;
  usdcDecimals: number;
  mintAuthority: KeyPairSigner;
  /** Funded at genesis; pays fees/rent for helper transactions (ATA creation, minting). */
  payer: KeyPairSigner;
  /** Airdrop through the faucet (a real, recorded system transfer). Returns the signature. */
  airdrop(to: string, lamports: bigint): Promise<string>;
  /** A fresh keypair funded with `lamports` SOL-lamports (default 10 SOL), e.g. an x402 facilitator fee payer. */
  createFeePayer(lamports?: bigint): Promise<KeyPairSigner>;
  /** Moves the chain forward (new blockhash; blockhashes expire after 150 blocks). */
  advanceSlots(slots?: number): void;
  /**
   * From now on a transaction is `finalized` only once `slots` blocks sit on top of its own (0: at once). The RPC
   * answers by commitment as a cluster does: `getTransaction` at `finalized` (its default) does not see a transaction
   * that is only `confirmed`, `getSignatureStatuses` says `confirmed` with its confirmations. `advanceSlots(slots)`
   * finalizes what landed before. Account state is served at the tip whatever the commitment asked.
   */
  setFinalizationDepth(slots: number): void;
  stop(): Promise<void>;
}

async function newSigner(): Promise<KeyPairSigner> {
  return createKeyPairSignerFromPrivateKeyBytes(new Uint8Array(randomBytes(32)), true);
}

export async function startSolanaDevChain(options: StartSolanaDevChainOptions = {}): Promise<SolanaDevChain> {
  const svm = new LiteSVM();
  const faucet = await newSigner();
  const payer = await newSigner();
  const mintAuthority = options.mintAuthority ?? (await newSigner());
  const usdcMint = address(options.usdcMint ?? DEVNET_USDC_MINT);

  // Genesis state.
  const genesisAccount = (addr: Address, balance: bigint, owner: string, data: Uint8Array = new Uint8Array()) =>
    svm.setAccount({
      address: addr,
      lamports: lamports(balance),
      programAddress: owner as Address,
      executable: false,
      data,
      space: BigInt(data.length),
    });
  genesisAccount(faucet.address, 500_000_000n * LAMPORTS_PER_SOL, SYSTEM_PROGRAM);
  genesisAccount(payer.address, options.payerLamports ?? 1_000_000n * LAMPORTS_PER_SOL, SYSTEM_PROGRAM);
  genesisAccount(
    usdcMint,
    svm.minimumBalanceForRentExemption(BigInt(MINT_SIZE)),
    TOKEN_PROGRAM,
    encodeMint({
      mintAuthority: new Uint8Array(getAddressEncoder().encode(mintAuthority.address)),
      supply: 0n,
      decimals: USDC_DECIMALS,
      freezeAuthority: null,
    }),
  );
  // `@solana-program/memo` >= 0.15 defaults to a newer memo program address; serve the same memo program there.
  const memo = svm.getAccount(MEMO_PROGRAM as Address);
  if (memo.exists && !svm.getAccount(MEMO_P_PROGRAM as Address).exists) {
    svm.addProgram(MEMO_P_PROGRAM as Address, Uint8Array.from(memo.data));
  }

  const engine = new SolanaChainEngine(svm, faucet, {
    blockhashValidityBlocks:
      options.blockhashValidityBlocks === undefined ? undefined : BigInt(options.blockhashValidityBlocks),
    finalizationDepth: BigInt(options.finalizationDepth ?? 0),
  });
  const handler = new SolanaRpcHandler(engine);
  const server = createServer((req, res) => {
    void handler.handleHttp(req, res);
  });
  server.keepAliveTimeout = 1_000;
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  const rpcUrl = `http://${urlHost.includes(':') ? `[${urlHost}]` : urlHost}:${port}`;

  const chain: SolanaDevChain = {
    rpcUrl,
    port,
    caip2: SOLANA_DEV_CHAIN_CAIP2,
    genesisHash: SOLANA_DEV_CHAIN_GENESIS_HASH,
    svm,
    engine,
    rpc: createSolanaRpc(rpcUrl),
    usdcMint,
    usdcDecimals: USDC_DECIMALS,
    mintAuthority,
    payer,
    airdrop: (to, lamports) => engine.requestAirdrop(address(to), lamports),
    async createFeePayer(lamports = 10n * LAMPORTS_PER_SOL) {
      const signer = await newSigner();
      await engine.requestAirdrop(signer.address, lamports);
      return signer;
    },
    advanceSlots: (slots = 1) => engine.advanceSlots(BigInt(slots)),
    setFinalizationDepth: (slots) => {
      engine.finalizationDepth = BigInt(slots);
    },
    stop: () => closeServer(server),
  };
  return chain;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

// -----------------------------------------------------------------------------------------------------------------
// JSON
// -----------------------------------------------------------------------------------------------------------------

const BIGINT_MARK = `__bigint_${randomBytes(6).toString('hex')}__`;
const BIGINT_PATTERN = new RegExp(`"${BIGINT_MARK}(-?\\d+)"`, 'g');

/** JSON.stringify that writes bigints as plain JSON numbers (u64 values such as `rentEpoch` exceed 2^53). */
export function stringifyJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) => (typeof v === 'bigint' ? `${BIGINT_MARK}${v}` : v)).replace(
    BIGINT_PATTERN,
    '$1',
  );
}

// -----------------------------------------------------------------------------------------------------------------
// JSON-RPC
// -----------------------------------------------------------------------------------------------------------------

type Json = Record<string, unknown>;

interface JsonRpcRequest {
  jsonrpc?: unknown;
  id?: unknown;
  method?: unknown;
  params?: unknown;
}

function invalidParams(message: string): RpcError {
  return new RpcError(-32602, message);
}

function asConfig(value: unknown): Json {
  return value && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : {};
}

function asString(value: unknown, what: string): string {
  if (typeof value !== 'string') throw invalidParams(`Invalid params: ${what} must be a string`);
  return value;
}

function asAddress(value: unknown): Address {
  const s = asString(value, 'address');
  try {
    return address(s);
  } catch {
    throw invalidParams(`Invalid param: Invalid`);
  }
}

function asBigInt(value: unknown, what: string): bigint {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return BigInt(value);
  if (typeof value === 'string' && /^\d+$/.test(value)) return BigInt(value);
  if (typeof value === 'bigint') return value;
  throw invalidParams(`Invalid params: ${what} must be a non-negative integer`);
}

const base58Encoder = getBase58Encoder();

function decodeBinary(data: string, encoding: unknown, what: string): Uint8Array {
  try {
    if (encoding === 'base64') return new Uint8Array(Buffer.from(data, 'base64'));
    if (encoding === undefined || encoding === null || encoding === 'base58') {
      return new Uint8Array(base58Encoder.encode(data));
    }
  } catch {
    throw invalidParams(`invalid ${what}: failed to decode`);
  }
  throw invalidParams(`Invalid params: unsupported encoding ${String(encoding)}`);
}

export class SolanaRpcHandler {
  constructor(private readonly engine: SolanaChainEngine) {}

  async handleHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const send = (status: number, body: string, type = 'application/json') => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    try {
      if (req.method === 'GET' && req.url?.split('?')[0] === '/health') {
        send(200, 'ok', 'text/plain');
        return;
      }
      if (req.method !== 'POST') {
        send(405, stringifyJson({ jsonrpc: '2.0', id: null, error: { code: -32600, message: 'Invalid request' } }));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of req) {
        size += (chunk as Buffer).length;
        if (size > MAX_BODY_BYTES) {
          send(413, stringifyJson({ jsonrpc: '2.0', id: null, error: { code: -32600, message: 'Request too large' } }));
          return;
        }
        chunks.push(chunk as Buffer);
      }
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        send(200, stringifyJson({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } }));
        return;
      }
      if (Array.isArray(body)) {
        if (body.length === 0) {
          send(200, stringifyJson({ jsonrpc: '2.0', id: null, error: { code: -32600, message: 'Invalid request' } }));
          return;
        }
        const responses = [];
        for (const item of body) responses.push(await this.handleRequest(item));
        send(200, stringifyJson(responses));
        return;
      }
      send(200, stringifyJson(await this.handleRequest(body)));
    } catch (error) {
      if (!res.headersSent) {
        send(
          500,
          stringifyJson({ jsonrpc: '2.0', id: null, error: { code: -32603, message: (error as Error).message } }),
        );
      }
    }
  }

  async handleRequest(request: unknown): Promise<Json> {
    const req = asConfig(request) as JsonRpcRequest;
    const id = req.id ?? null;
    if (typeof req.method !== 'string') {
      return { jsonrpc: '2.0', id, error: { code: -32600, message: 'Invalid request' } };
    }
    const params = req.params === undefined || req.params === null ? [] : req.params;
    if (!Array.isArray(params)) {
      return { jsonrpc: '2.0', id, error: { code: -32602, message: 'Invalid params: expected an array' } };
    }
    const method = (this.methods as Record<string, ((p: unknown[]) => unknown) | undefined>)[req.method];
    if (!method || !Object.hasOwn(this.methods, req.method)) {
      return { jsonrpc: '2.0', id, error: { code: -32601, message: 'Method not found' } };
    }
    try {
      const result = await method(params);
      return { jsonrpc: '2.0', result, id };
    } catch (error) {
      if (error instanceof RpcError) {
        const err: Json = { code: error.code, message: error.message };
        if (error.data !== undefined) err['data'] = error.data;
        return { jsonrpc: '2.0', error: err, id };
      }
      return { jsonrpc: '2.0', error: { code: -32603, message: `Internal error: ${(error as Error).message}` }, id };
    }
  }

  private context(): Json {
    return { apiVersion: API_VERSION, slot: this.engine.slot };
  }

  /** Whether a landed transaction is seen at a commitment (`confirmed` sees all of them: this chain has no forks). */
  private visibleAt(record: TransactionRecord, commitment: 'confirmed' | 'finalized'): boolean {
    return commitment === 'confirmed' || this.engine.commitmentOf(record) === 'finalized';
  }

  private withContext(value: unknown): Json {
    return { context: this.context(), value };
  }

  // ----- account rendering ------------------------------------------------------------------------------------

  private renderAccount(account: StoredAccount | null, config: Json): Json | null {
    if (!account) return null;
    const encoding = config['encoding'];
    const base: Json = {
      executable: account.executable,
      lamports: account.lamports,
      owner: account.owner,
      rentEpoch: U64_MAX,
      space: account.data.length,
    };
    if (encoding === 'jsonParsed') {
      const parsed = parseAccountData(account.owner, account.data, this.engine.reader);
      return { ...base, data: parsed ?? [toBase64(account.data), 'base64'] };
    }
    let data = account.data;
    const slice = asConfig(config['dataSlice']);
    if (config['dataSlice'] !== undefined) {
      const offset = Number(slice['offset'] ?? 0);
      const length = Number(slice['length'] ?? 0);
      data = data.subarray(offset, offset + length);
    }
    switch (encoding) {
      case undefined:
      case null:
        return { ...base, data: toBase58(data) };
      case 'base58':
        return { ...base, data: [toBase58(data), 'base58'] };
      case 'base64':
        return { ...base, data: [toBase64(data), 'base64'] };
      default:
        throw invalidParams(`Invalid params: unsupported encoding ${String(encoding)}`);
    }
  }

  private tokenAccountOrThrow(addr: Address) {
    const account = this.engine.getAccount(addr);
    if (!account) throw invalidParams('Invalid param: could not find account');
    const token = decodeTokenAccount(account.owner, account.data);
    if (!token) throw invalidParams('Invalid param: not a Token account');
    const decimals = mintDecimals(this.engine.reader, token.mint);
    if (decimals === null) throw invalidParams('Invalid param: could not find mint');
    return { token, decimals };
  }

  // ----- transaction rendering --------------------------------------------------------------------------------

  private renderInner(
    record: { innerInstructions: TransactionRecord['innerInstructions'] },
    keys: string[],
    parsed: boolean,
  ): Json[] {
    return record.innerInstructions.map(({ index, instructions }) => ({
      index,
      instructions: instructions.map((ix) =>
        parsed
          ? jsonParsedInstruction(
              keys[ix.programIdIndex] ?? '',
              ix.accounts.map((i) => keys[i] ?? ''),
              ix.data,
              ix.stackHeight,
            )
          : {
              programIdIndex: ix.programIdIndex,
              accounts: ix.accounts,
              data: toBase58(ix.data),
              stackHeight: ix.stackHeight,
            },
      ),
    }));
  }

  private renderTransaction(record: TransactionRecord, config: Json): Json {
    const encoding = config['encoding'] ?? 'json';
    const maxVersion = config['maxSupportedTransactionVersion'];
    const { decoded, keys } = record;
    if (decoded.version === 0 && (maxVersion === undefined || maxVersion === null)) {
      throw new RpcError(
        -32015,
        'Transaction version (0) is not supported by the requesting client. Please try the request again with the following configuration parameter: "maxSupportedTransactionVersion": 0',
      );
    }
    const allKeys = keys.all as string[];
    const parsed = encoding === 'jsonParsed';
    const meta: Json = {
      computeUnitsConsumed: record.computeUnitsConsumed,
      err: record.err,
      fee: record.fee,
      innerInstructions: this.renderInner(record, allKeys, parsed),
      logMessages: record.logs,
      postBalances: record.postBalances,
      postTokenBalances: record.postTokenBalances,
      preBalances: record.preBalances,
      preTokenBalances: record.preTokenBalances,
      rewards: [],
      status: record.err === null ? { Ok: null } : { Err: record.err },
    };
    if (!parsed) {
      meta['loadedAddresses'] = { readonly: keys.loadedReadonly, writable: keys.loadedWritable };
    }
    if (record.returnData) {
      meta['returnData'] = {
        programId: record.returnData.programId,
        data: [toBase64(record.returnData.data), 'base64'],
      };
    }
    const out: Json = { blockTime: record.blockTime, meta, slot: record.slot };
    if (maxVersion !== undefined && maxVersion !== null) out['version'] = decoded.version;

    const message = decoded.message;
    const signatures = decoded.signatures.map((s) => s ?? toBase58(new Uint8Array(64)));
    const lookups =
      message.version === 0
        ? (message.addressTableLookups ?? []).map((l) => ({
            accountKey: l.lookupTableAddress,
            readonlyIndexes: l.readonlyIndexes,
            writableIndexes: l.writableIndexes,
          }))
        : undefined;
    switch (encoding) {
      case 'base64':
        out['transaction'] = [toBase64(decoded.wire), 'base64'];
        return out;
      case 'base58':
        out['transaction'] = [toBase58(decoded.wire), 'base58'];
        return out;
      case 'json': {
        const msg: Json = {
          accountKeys: message.staticAccounts,
          header: {
            numReadonlySignedAccounts: message.header.numReadonlySignerAccounts,
            numReadonlyUnsignedAccounts: message.header.numReadonlyNonSignerAccounts,
            numRequiredSignatures: message.header.numSignerAccounts,
          },
          instructions: message.instructions.map((ix) => ({
            accounts: ix.accountIndices ?? [],
            data: toBase58(ix.data ? new Uint8Array(ix.data) : new Uint8Array()),
            programIdIndex: ix.programAddressIndex,
            stackHeight: null,
          })),
          recentBlockhash: decoded.recentBlockhash,
        };
        if (lookups) msg['addressTableLookups'] = lookups;
        out['transaction'] = { message: msg, signatures };
        return out;
      }
      case 'jsonParsed': {
        const msg: Json = {
          accountKeys: allKeys.map((pubkey, i) => ({
            pubkey,
            signer: i < message.header.numSignerAccounts,
            source: i < keys.staticCount ? 'transaction' : 'lookupTable',
            writable: isWritableIndex(message, keys, i),
          })),
          instructions: message.instructions.map((ix) =>
            jsonParsedInstruction(
              allKeys[ix.programAddressIndex] ?? '',
              (ix.accountIndices ?? []).map((i) => allKeys[i] ?? ''),
              ix.data ? new Uint8Array(ix.data) : new Uint8Array(),
              null,
            ),
          ),
          recentBlockhash: decoded.recentBlockhash,
        };
        if (lookups) msg['addressTableLookups'] = lookups;
        out['transaction'] = { message: msg, signatures };
        return out;
      }
      default:
        throw invalidParams(`Invalid params: unsupported encoding ${String(encoding)}`);
    }
  }

  private memoOf(record: TransactionRecord): string | null {
    const keys = record.keys.all as string[];
    const memos: string[] = [];
    for (const ix of record.decoded.message.instructions) {
      if (!isMemoProgram(keys[ix.programAddressIndex] ?? '')) continue;
      const text = new TextDecoder().decode(ix.data ? new Uint8Array(ix.data) : new Uint8Array());
      memos.push(`[${Buffer.byteLength(text)}] ${text}`);
    }
    return memos.length > 0 ? memos.join('; ') : null;
  }

  private renderSimulation(result: SimulationResult, config: Json, replacement: Json | null): Json {
    const accountsConfig = asConfig(config['accounts']);
    let accounts: (Json | null)[] | null = null;
    if (config['accounts'] !== undefined && result.postAccounts) {
      const addresses = Array.isArray(accountsConfig['addresses']) ? accountsConfig['addresses'] : [];
      const encoding = accountsConfig['encoding'] ?? 'base64';
      accounts = addresses.map((a) => {
        const addr = asAddress(a);
        return this.renderAccount(result.postAccounts?.get(addr) ?? this.engine.getAccount(addr), { encoding });
      });
    }
    const keys = result.keys.all as string[];
    return {
      accounts,
      err: result.err,
      fee: result.fee,
      innerInstructions: config['innerInstructions'] === true ? this.renderInner(result, keys, true) : null,
      loadedAccountsDataSize: 0,
      loadedAddresses: { readonly: result.keys.loadedReadonly, writable: result.keys.loadedWritable },
      logs: result.logs,
      postBalances: result.postBalances,
      postTokenBalances: result.postTokenBalances,
      preBalances: result.preBalances,
      preTokenBalances: result.preTokenBalances,
      replacementBlockhash: replacement,
      returnData: result.returnData
        ? { programId: result.returnData.programId, data: [toBase64(result.returnData.data), 'base64'] }
        : null,
      unitsConsumed: result.computeUnitsConsumed,
    };
  }

  // ----- methods ----------------------------------------------------------------------------------------------

  readonly methods = {
    getHealth: () => 'ok',
    getVersion: () => ({ 'solana-core': API_VERSION, 'feature-set': 3294202862 }),
    getGenesisHash: () => SOLANA_DEV_CHAIN_GENESIS_HASH,
    getIdentity: () => ({ identity: '11111111111111111111111111111111' }),
    getSlot: (p: unknown[]) => (commitment(p[0]) === 'finalized' ? this.engine.finalizedSlot : this.engine.slot),
    getBlockHeight: (p: unknown[]) =>
      commitment(p[0]) === 'finalized' ? this.engine.finalizedSlot : this.engine.blockHeight,
    getTransactionCount: () => this.engine.transactionCount,
    getFirstAvailableBlock: () => this.engine.genesisSlot,
    minimumLedgerSlot: () => this.engine.genesisSlot,
    getBlockTime: (p: unknown[]) => {
      const time = this.engine.blockTime(asBigInt(p[0], 'slot'));
      if (time === null) throw new RpcError(-32004, `Block not available for slot ${String(p[0])}`);
      return time;
    },
    getEpochSchedule: () => {
      const s = this.engine.svm.getEpochSchedule();
      return {
        firstNormalEpoch: s.firstNormalEpoch,
        firstNormalSlot: s.firstNormalSlot,
        leaderScheduleSlotOffset: s.leaderScheduleSlotOffset,
        slotsPerEpoch: s.slotsPerEpoch,
        warmup: s.warmup,
      };
    },
    getEpochInfo: () => {
      const slotsPerEpoch = this.engine.svm.getEpochSchedule().slotsPerEpoch;
      const slot = this.engine.slot;
      return {
        absoluteSlot: slot,
        blockHeight: this.engine.blockHeight,
        epoch: slot / slotsPerEpoch,
        slotIndex: slot % slotsPerEpoch,
        slotsInEpoch: slotsPerEpoch,
        transactionCount: this.engine.transactionCount,
      };
    },
    getLatestBlockhash: () => this.withContext(this.engine.latestBlockhash()),
    isBlockhashValid: (p: unknown[]) => this.withContext(this.engine.isBlockhashValid(asString(p[0], 'blockhash'))),
    getRecentPrioritizationFees: () => [],
    getMinimumBalanceForRentExemption: (p: unknown[]) =>
      this.engine.svm.minimumBalanceForRentExemption(asBigInt(p[0] ?? 0, 'data length')),
    getFeeForMessage: (p: unknown[]) => {
      const message = decodeWireMessage(decodeBinary(asString(p[0], 'message'), 'base64', 'message'));
      const valid = this.engine.isBlockhashValid(String(message.lifetimeToken));
      return this.withContext(valid ? computeFee(message) : null);
    },
    getBalance: (p: unknown[]) => this.withContext(this.engine.getAccount(asAddress(p[0]))?.lamports ?? 0n),
    getAccountInfo: (p: unknown[]) =>
      this.withContext(this.renderAccount(this.engine.getAccount(asAddress(p[0])), asConfig(p[1]))),
    getMultipleAccounts: (p: unknown[]) => {
      if (!Array.isArray(p[0])) throw invalidParams('Invalid params: expected an array of addresses');
      if (p[0].length > 100) throw invalidParams('Too many inputs provided; max 100');
      const config = asConfig(p[1]);
      return this.withContext(p[0].map((a) => this.renderAccount(this.engine.getAccount(asAddress(a)), config)));
    },
    getProgramAccounts: (p: unknown[]) => {
      const program = asAddress(p[0]);
      const config = asConfig(p[1]);
      const filters = Array.isArray(config['filters']) ? (config['filters'] as unknown[]) : [];
      const value = this.engine.svm
        .getProgramAccounts(program)
        .filter((account) => matchesFilters(new Uint8Array(account.data), filters))
        .map((account) => ({
          pubkey: account.address,
          account: this.renderAccount(
            {
              lamports: BigInt(account.lamports),
              owner: account.programAddress,
              data: new Uint8Array(account.data),
              executable: account.executable,
            },
            config,
          ),
        }));
      return config['withContext'] === true ? this.withContext(value) : value;
    },
    getTokenAccountsByOwner: (p: unknown[]) => {
      const owner = asAddress(p[0]);
      const filter = asConfig(p[1]);
      const config = asConfig(p[2]);
      const mint = filter['mint'] === undefined ? undefined : asAddress(filter['mint']);
      let programs = [TOKEN_PROGRAM, TOKEN_2022_PROGRAM];
      if (filter['programId'] !== undefined) programs = [asAddress(filter['programId'])];
      else if (mint) {
        const mintAccount = this.engine.getAccount(mint);
        programs = mintAccount ? [mintAccount.owner] : [];
      } else throw invalidParams('Invalid params: expected mint or programId');
      const value: Json[] = [];
      for (const program of programs) {
        for (const account of this.engine.svm.getProgramAccounts(program as Address)) {
          const data = new Uint8Array(account.data);
          const token = decodeTokenAccount(account.programAddress, data);
          if (!token || token.owner !== owner || (mint && token.mint !== mint)) continue;
          value.push({
            pubkey: account.address,
            account: this.renderAccount(
              { lamports: BigInt(account.lamports), owner: account.programAddress, data, executable: false },
              config,
            ),
          });
        }
      }
      return this.withContext(value);
    },
    getTokenAccountBalance: (p: unknown[]) => {
      const { token, decimals } = this.tokenAccountOrThrow(asAddress(p[0]));
      return this.withContext(uiTokenAmount(token.amount, decimals));
    },
    getTokenSupply: (p: unknown[]) => {
      const account = this.engine.getAccount(asAddress(p[0]));
      const mint = account ? decodeMint(account.owner, account.data) : null;
      if (!mint) throw invalidParams('Invalid param: not a Token mint');
      return this.withContext(uiTokenAmount(mint.supply, mint.decimals));
    },
    requestAirdrop: async (p: unknown[]) => this.engine.requestAirdrop(asAddress(p[0]), asBigInt(p[1], 'lamports')),
    sendTransaction: (p: unknown[]) => {
      const config = asConfig(p[1]);
      const wire = decodeBinary(asString(p[0], 'transaction'), config['encoding'], 'transaction');
      return this.engine.sendTransaction(decodeWireTransaction(wire), {
        skipPreflight: config['skipPreflight'] === true,
      });
    },
    simulateTransaction: (p: unknown[]) => {
      const config = asConfig(p[1]);
      const sigVerify = config['sigVerify'] === true;
      const replaceRecentBlockhash = config['replaceRecentBlockhash'] === true;
      if (sigVerify && replaceRecentBlockhash) {
        throw invalidParams('Invalid params: sigVerify may not be used with replaceRecentBlockhash');
      }
      const wire = decodeBinary(asString(p[0], 'transaction'), config['encoding'], 'transaction');
      const decoded = decodeWireTransaction(wire);
      const result = this.engine.simulate(decoded, { sigVerify, replaceRecentBlockhash });
      if (sigVerify && result.err === 'SignatureFailure') {
        throw new RpcError(-32003, 'Transaction signature verification failure');
      }
      const replacement = replaceRecentBlockhash ? this.engine.latestBlockhash() : null;
      return this.withContext(this.renderSimulation(result, config, replacement));
    },
    getSignatureStatuses: (p: unknown[]) => {
      if (!Array.isArray(p[0])) throw invalidParams('Invalid params: expected an array of signatures');
      if (p[0].length > 256) throw invalidParams('Too many inputs provided; max 256');
      return this.withContext(
        p[0].map((s) => {
          const record = this.engine.getRecord(asString(s, 'signature'));
          if (!record) return null;
          const status = this.engine.commitmentOf(record);
          return {
            confirmationStatus: status,
            confirmations: status === 'finalized' ? null : Number(this.engine.confirmationsOf(record)),
            err: record.err,
            slot: record.slot,
            status: record.err === null ? { Ok: null } : { Err: record.err },
          };
        }),
      );
    },
    getTransaction: (p: unknown[]) => {
      const signature = asString(p[0], 'signature');
      const config = typeof p[1] === 'string' ? { encoding: p[1] } : asConfig(p[1]);
      const record = this.engine.getRecord(signature);
      if (!record || !this.visibleAt(record, historyCommitment(config))) return null;
      return this.renderTransaction(record, config);
    },
    getSignaturesForAddress: (p: unknown[]) => {
      const addr = asAddress(p[0]);
      const config = asConfig(p[1]);
      const limit = Math.min(Number(config['limit'] ?? 1000), 1000);
      const before = typeof config['before'] === 'string' ? config['before'] : undefined;
      const until = typeof config['until'] === 'string' ? config['until'] : undefined;
      const wanted = historyCommitment(config);
      const out: Json[] = [];
      let started = before === undefined;
      for (const record of this.engine.recordsNewestFirst()) {
        if (!started) {
          if (record.signature === before) started = true;
          continue;
        }
        if (record.signature === until) break;
        if (!(record.keys.all as string[]).includes(addr)) continue;
        if (!this.visibleAt(record, wanted)) continue;
        out.push({
          blockTime: record.blockTime,
          confirmationStatus: this.engine.commitmentOf(record),
          err: record.err,
          memo: this.memoOf(record),
          signature: record.signature,
          slot: record.slot,
        });
        if (out.length >= limit) break;
      }
      return out;
    },
  };
}

/** The `commitment` of a config object (`processed` and `confirmed` both see every landed transaction here). */
function commitment(config: unknown): 'processed' | 'confirmed' | 'finalized' {
  const value =
    typeof config === 'object' && config !== null ? (config as Record<string, unknown>)['commitment'] : undefined;
  if (value === undefined || value === null) return 'finalized';
  if (value === 'processed' || value === 'confirmed' || value === 'finalized') return value;
  throw invalidParams(`Invalid params: unknown commitment ${String(value)}`);
}

/**
 * The commitment of a history query (`getTransaction`, `getSignaturesForAddress`): `finalized` by default, and never
 * below `confirmed`, as on a real cluster.
 */
function historyCommitment(config: unknown): 'confirmed' | 'finalized' {
  const wanted = commitment(config);
  if (wanted === 'processed') throw invalidParams('Method does not support commitment below `confirmed`');
  return wanted;
}

function matchesFilters(data: Uint8Array, filters: unknown[]): boolean {
  for (const f of filters) {
    const filter = asConfig(f);
    if (filter['dataSize'] !== undefined && data.length !== Number(filter['dataSize'])) return false;
    const memcmp = asConfig(filter['memcmp']);
    if (filter['memcmp'] !== undefined) {
      const offset = Number(memcmp['offset'] ?? 0);
      const bytes = decodeBinary(String(memcmp['bytes'] ?? ''), memcmp['encoding'] ?? 'base58', 'memcmp bytes');
      if (offset + bytes.length > data.length) return false;
      for (let i = 0; i < bytes.length; i++) if (data[offset + i] !== bytes[i]) return false;
    }
  }
  return true;
}
