/**
 * TestUSDC on a dev chain: deploy, mint, plain transfers, EIP-3009 authorizations, balances. Amounts are atomic
 * units (6 decimals: 1 USDC = 1_000_000n).
 */
import {
  type Abi,
  type Address,
  type Chain,
  createPublicClient,
  createWalletClient,
  defineChain,
  getAddress,
  type Hash,
  type Hex,
  http,
  type PublicClient,
  parseEventLogs,
  type TransactionReceipt,
  toHex,
} from 'viem';
import { createNonceManager, type NonceManager, type PrivateKeyAccount, privateKeyToAccount } from 'viem/accounts';
import { getTransactionCount } from 'viem/actions';
import { MULTICALL3_ADDRESS } from './anvil.js';
import { compileTestUsdc } from './compile.js';

/** Where a TestUSDC lives. `startEvmDevChain()`'s result satisfies it. */
export interface UsdcEnv {
  readonly rpcUrl: string;
  readonly chainId: number;
  /** The TestUSDC contract. */
  readonly usdc: Address;
  /** The contract owner (minter); needed by `mintUsdc`. */
  readonly deployerKey?: Hex;
}

export interface DeployTestUsdcOptions {
  readonly rpcUrl: string;
  readonly chainId: number;
  readonly deployerKey: Hex;
  /** ERC-20 name and EIP-712 domain name. Default 'USD Coin'. */
  readonly name?: string;
}

/** An EIP-3009 authorization, as signed. */
export interface TransferAuthorization {
  readonly to: Address;
  readonly value: bigint;
  /** Unix seconds; valid only in blocks with timestamp > validAfter. */
  readonly validAfter: bigint | number;
  /** Unix seconds; valid only in blocks with timestamp < validBefore. */
  readonly validBefore: bigint | number;
  /** 32 random bytes; see `randomAuthorizationNonce()`. */
  readonly nonce: Hex;
}

export const USDC_DECIMALS = 6;
export const USDC_EIP712_VERSION = '2';

/** The EIP-712 types of EIP-3009 `transferWithAuthorization` (identical to x402's `authorizationTypes`). */
export const TRANSFER_WITH_AUTHORIZATION_TYPES = {
  TransferWithAuthorization: [
    { name: 'from', type: 'address' },
    { name: 'to', type: 'address' },
    { name: 'value', type: 'uint256' },
    { name: 'validAfter', type: 'uint256' },
    { name: 'validBefore', type: 'uint256' },
    { name: 'nonce', type: 'bytes32' },
  ],
} as const;

/** The TestUSDC ABI (as compiled; typed loosely, since it is read at run time). */
export const testUsdcAbi = async (): Promise<Abi> => (await compileTestUsdc()).abi;

/** A viem chain for a dev chain id and RPC URL. */
export const devChain = (rpcUrl: string, chainId: number): Chain =>
  defineChain({
    id: chainId,
    name: `Crochet dev chain ${chainId}`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
    // startAnvil installs it (as every public chain has it), so viem's multicall works.
    contracts: { multicall3: { address: MULTICALL3_ADDRESS } },
  });

/** Local chains answer in milliseconds; viem's default 4 s receipt polling would dominate every test. */
const POLLING_INTERVAL_MS = 50;

const publicClients = new Map<string, PublicClient>();
/** A public client for a dev chain with fast polling (cached per RPC URL and chain id). */
export const devPublicClient = (env: { rpcUrl: string; chainId: number }): PublicClient => {
  const key = `${env.chainId}@${env.rpcUrl}`;
  let client = publicClients.get(key);
  if (!client) {
    client = createPublicClient({
      chain: devChain(env.rpcUrl, env.chainId),
      transport: http(env.rpcUrl, { retryCount: 0 }),
      pollingInterval: POLLING_INTERVAL_MS,
    }) as PublicClient;
    publicClients.set(key, client);
  }
  return client;
};

// One nonce manager per RPC endpoint: concurrent sends from one key get consecutive nonces, and two chains that share
// a chain id and dev keys (parallel tests) never share nonce state.
const nonceManagers = new Map<string, NonceManager>();
/** A local account for `key` whose nonces are managed per RPC endpoint. */
export const devAccount = (env: { rpcUrl: string; chainId: number }, key: Hex): PrivateKeyAccount => {
  const mkey = `${env.chainId}@${env.rpcUrl}`;
  let nonceManager = nonceManagers.get(mkey);
  if (!nonceManager) {
    nonceManager = createNonceManager({
      source: {
        get: ({ address, client }) => getTransactionCount(client, { address, blockTag: 'pending' }),
        set: () => {},
      },
    });
    nonceManagers.set(mkey, nonceManager);
  }
  return privateKeyToAccount(key, { nonceManager });
};

/** A wallet client (with public actions) sending from `key`. */
export const devWalletClient = (env: { rpcUrl: string; chainId: number }, key: Hex) =>
  createWalletClient({
    account: devAccount(env, key),
    chain: devChain(env.rpcUrl, env.chainId),
    transport: http(env.rpcUrl, { retryCount: 0 }),
    pollingInterval: POLLING_INTERVAL_MS,
  });

const waitForSuccess = async (env: { rpcUrl: string; chainId: number }, hash: Hash): Promise<TransactionReceipt> => {
  const receipt = await devPublicClient(env).waitForTransactionReceipt({ hash, timeout: 60_000 });
  if (receipt.status !== 'success') throw new Error(`transaction ${hash} reverted`);
  return receipt;
};

/** Deploys TestUSDC (owner = the deployer) and waits for it to be mined. */
export const deployTestUsdc = async (options: DeployTestUsdcOptions): Promise<{ address: Address; abi: Abi }> => {
  const { abi, bytecode } = await compileTestUsdc();
  const wallet = devWalletClient(options, options.deployerKey);
  const hash = await wallet.deployContract({ abi, bytecode, args: [options.name ?? 'USD Coin'] });
  const receipt = await waitForSuccess(options, hash);
  if (!receipt.contractAddress) throw new Error(`TestUSDC deployment ${hash} created no contract`);
  return { address: getAddress(receipt.contractAddress), abi };
};

/** Mints `amountAtomic` to `to` (signed by `env.deployerKey`, the owner); returns the mined transaction hash. */
export const mintUsdc = async (env: UsdcEnv, to: Address, amountAtomic: bigint): Promise<Hash> => {
  if (!env.deployerKey) throw new Error('mintUsdc: env.deployerKey (the TestUSDC owner) is required');
  const abi = await testUsdcAbi();
  const hash = await devWalletClient(env, env.deployerKey).writeContract({
    address: env.usdc,
    abi,
    functionName: 'mint',
    args: [to, amountAtomic],
  });
  await waitForSuccess(env, hash);
  return hash;
};

/**
 * A plain ERC-20 `transfer` from the key's address (the "direct transfer" rail). Waits until mined unless
 * `wait: false` (then it returns as soon as the node accepted the transaction).
 */
export const transferUsdc = async (
  env: UsdcEnv,
  fromKey: Hex,
  to: Address,
  amountAtomic: bigint,
  options: { wait?: boolean } = {},
): Promise<Hash> => {
  const abi = await testUsdcAbi();
  const hash = await devWalletClient(env, fromKey).writeContract({
    address: env.usdc,
    abi,
    functionName: 'transfer',
    args: [to, amountAtomic],
  });
  if (options.wait !== false) await waitForSuccess(env, hash);
  return hash;
};

/** Balance in atomic units. */
export const usdcBalance = async (env: UsdcEnv, address: Address): Promise<bigint> => {
  const abi = await testUsdcAbi();
  return (await devPublicClient(env).readContract({
    address: env.usdc,
    abi,
    functionName: 'balanceOf',
    args: [address],
  })) as bigint;
};

/** The token's EIP-712 domain name and version, read from the contract (what x402 wants in `extra`). */
export const usdcDomain = async (env: UsdcEnv): Promise<{ name: string; version: string }> => {
  const abi = await testUsdcAbi();
  const client = devPublicClient(env);
  const [name, version] = await Promise.all([
    client.readContract({ address: env.usdc, abi, functionName: 'name' }) as Promise<string>,
    client.readContract({ address: env.usdc, abi, functionName: 'version' }) as Promise<string>,
  ]);
  return { name, version };
};

/** Whether `authorizer` has used or canceled `nonce`. */
export const authorizationState = async (env: UsdcEnv, authorizer: Address, nonce: Hex): Promise<boolean> => {
  const abi = await testUsdcAbi();
  return (await devPublicClient(env).readContract({
    address: env.usdc,
    abi,
    functionName: 'authorizationState',
    args: [authorizer, nonce],
  })) as boolean;
};

/** 32 random bytes for an EIP-3009 nonce. */
export const randomAuthorizationNonce = (): Hex => toHex(crypto.getRandomValues(new Uint8Array(32)));

/**
 * Signs an EIP-3009 `TransferWithAuthorization` from the key's address (EIP-712, domain name/version read from the
 * contract, chainId and verifyingContract from `env`). Returns the 65-byte signature.
 */
export const signTransferAuthorization = async (
  env: UsdcEnv,
  fromKey: Hex,
  authorization: TransferAuthorization,
): Promise<Hex> => {
  const account = privateKeyToAccount(fromKey);
  const { name, version } = await usdcDomain(env);
  return account.signTypedData({
    domain: { name, version, chainId: env.chainId, verifyingContract: env.usdc },
    types: TRANSFER_WITH_AUTHORIZATION_TYPES,
    primaryType: 'TransferWithAuthorization',
    message: {
      from: account.address,
      to: getAddress(authorization.to),
      value: authorization.value,
      validAfter: BigInt(authorization.validAfter),
      validBefore: BigInt(authorization.validBefore),
      nonce: authorization.nonce,
    },
  });
};

/**
 * Submits `transferWithAuthorization(from, …, bytes signature)` from the relayer's key (the relayer pays gas) and
 * waits until mined. Throws (with the contract's revert reason) if it would revert.
 */
export const submitTransferWithAuthorization = async (
  env: UsdcEnv,
  relayerKey: Hex,
  from: Address,
  authorization: TransferAuthorization,
  signature: Hex,
): Promise<{ hash: Hash; receipt: TransactionReceipt }> => {
  const abi = await testUsdcAbi();
  const hash = await devWalletClient(env, relayerKey).writeContract({
    address: env.usdc,
    abi,
    functionName: 'transferWithAuthorization',
    args: [
      from,
      authorization.to,
      authorization.value,
      BigInt(authorization.validAfter),
      BigInt(authorization.validBefore),
      authorization.nonce,
      signature,
    ],
  });
  return { hash, receipt: await waitForSuccess(env, hash) };
};

/** The decoded TestUSDC events of a receipt (Transfer, AuthorizationUsed, …). */
export const decodeUsdcLogs = async (env: UsdcEnv, receipt: TransactionReceipt) =>
  parseEventLogs({
    abi: await testUsdcAbi(),
    logs: receipt.logs.filter((log) => getAddress(log.address) === getAddress(env.usdc)),
  });
