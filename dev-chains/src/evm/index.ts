import type { Address, Hex } from 'viem';
import { type DevAccount, type StartAnvilOptions, startAnvil } from './anvil.js';
import { deployTestUsdc, USDC_EIP712_VERSION } from './usdc.js';

export {
  ANVIL_DEV_ACCOUNTS,
  type AnvilInstance,
  anvilBinaryPath,
  type DevAccount,
  installMulticall3,
  MULTICALL3_ADDRESS,
  type StartAnvilOptions,
  startAnvil,
} from './anvil.js';
export {
  type CompiledContract,
  compileContract,
  compileTestUsdc,
  contractCacheFile,
  type DevContractName,
  testUsdcCacheFile,
} from './compile.js';
export {
  authorizationState,
  type DeployTestUsdcOptions,
  decodeUsdcLogs,
  deployTestUsdc,
  devAccount,
  devChain,
  devPublicClient,
  devWalletClient,
  mintUsdc,
  randomAuthorizationNonce,
  signTransferAuthorization,
  submitTransferWithAuthorization,
  TRANSFER_WITH_AUTHORIZATION_TYPES,
  type TransferAuthorization,
  testUsdcAbi,
  transferUsdc,
  USDC_DECIMALS,
  USDC_EIP712_VERSION,
  type UsdcEnv,
  usdcBalance,
  usdcDomain,
} from './usdc.js';

export interface EvmDevChainOptions extends StartAnvilOptions {
  /** TestUSDC's ERC-20 name and EIP-712 domain name. Default 'USD Coin'. */
  usdcName?: string;
}

export interface EvmDevChain {
  readonly rpcUrl: string;
  readonly chainId: number;
  /** CAIP-2 network id, `eip155:<chainId>`. */
  readonly caip2: `eip155:${number}`;
  /** TestUSDC contract address. */
  readonly usdc: Address;
  /** EIP-712 domain name (x402 `extra.name`). */
  readonly usdcName: string;
  /** EIP-712 domain version (x402 `extra.version`). */
  readonly usdcVersion: '2';
  /** anvil's 10 funded dev accounts; accounts[0] deployed TestUSDC and is its owner. */
  readonly accounts: readonly DevAccount[];
  /** Owner/minter of TestUSDC (accounts[0]); lets this object serve as a `UsdcEnv` for `mintUsdc`. */
  readonly deployerKey: Hex;
  stop(): Promise<void>;
}

/** Starts anvil and deploys TestUSDC on it (deployer and owner: dev account 0). */
export const startEvmDevChain = async (options: EvmDevChainOptions = {}): Promise<EvmDevChain> => {
  const { usdcName = 'USD Coin', ...anvilOptions } = options;
  const anvil = await startAnvil(anvilOptions);
  try {
    const deployer = anvil.accounts[0]!;
    const { address } = await deployTestUsdc({
      rpcUrl: anvil.rpcUrl,
      chainId: anvil.chainId,
      deployerKey: deployer.privateKey,
      name: usdcName,
    });
    return {
      rpcUrl: anvil.rpcUrl,
      chainId: anvil.chainId,
      caip2: `eip155:${anvil.chainId}`,
      usdc: address,
      usdcName,
      usdcVersion: USDC_EIP712_VERSION,
      accounts: anvil.accounts,
      deployerKey: deployer.privateKey,
      stop: anvil.stop,
    };
  } catch (error) {
    await anvil.stop();
    throw error;
  }
};
