import {
  createFundedWallet,
  type EvmDevChain,
  generateSolanaWallet,
  type SolanaDevChain,
  startEvmDevChain,
  startRelayStandIn,
  startSolanaDevChain,
  usdcTokenAccount,
} from '@crochet/dev-chains';
import { getBase58Decoder } from '@solana/kit';
import { privateKeyToAccount } from 'viem/accounts';
import { startTestStack, type TestStack } from './stack.js';

/**
 * The whole paid path for tests: a Solana dev chain (litesvm over JSON-RPC), anvil with the test USDC, a Relay
 * stand-in, and a control plane with proxies configured for all three rails.
 */
export interface PaymentStack extends TestStack {
  solana: SolanaDevChain;
  evm: EvmDevChain;
  relay: Awaited<ReturnType<typeof startRelayStandIn>>;
  /** The marketplace's receiving addresses. */
  solanaPayTo: string;
  evmPayTo: `0x${string}`;
  proxyEnv: Record<string, string>;
}

export const startPaymentStack = async (
  options: { proxies?: number; proxyEnv?: Record<string, string>; planeEnv?: Record<string, string> } = {},
): Promise<PaymentStack> => {
  const [solana, evm, relay] = await Promise.all([startSolanaDevChain(), startEvmDevChain(), startRelayStandIn()]);
  const marketplace = await createFundedWallet(solana, { sol: 1 });
  await usdcTokenAccount(solana, marketplace.address);
  const feePayer = await generateSolanaWallet();
  await solana.airdrop(feePayer.signer.address, 10_000_000_000n);
  const evmPayTo = privateKeyToAccount(evm.accounts[9]!.privateKey).address;
  const proxyEnv: Record<string, string> = {
    CROCHET_SOLANA_RPC_URL: solana.rpcUrl,
    CROCHET_SOLANA_NETWORK: solana.caip2,
    CROCHET_SOLANA_USDC_MINT: solana.usdcMint,
    CROCHET_SOLANA_PAY_TO: marketplace.address,
    CROCHET_SOLANA_FEE_PAYER_KEY: getBase58Decoder().decode(feePayer.secretKey),
    CROCHET_EVM_RPC_URL: evm.rpcUrl,
    CROCHET_EVM_NETWORK: evm.caip2,
    CROCHET_EVM_USDC_ADDRESS: evm.usdc,
    CROCHET_EVM_USDC_NAME: evm.usdcName,
    CROCHET_EVM_USDC_VERSION: evm.usdcVersion,
    CROCHET_EVM_PAY_TO: evmPayTo,
    CROCHET_EVM_SETTLER_KEY: evm.accounts[8]!.privateKey,
    CROCHET_EVM_MIN_PRICE: '0.05',
    CROCHET_EVM_CONFIRMATIONS: '1',
    CROCHET_RELAY_API_URL: relay.url,
    ...options.proxyEnv,
  };
  const stack = await startTestStack({
    proxies: options.proxies ?? 1,
    proxyEnv: proxyEnv,
    ...(options.planeEnv ? { planeEnv: options.planeEnv } : {}),
  });
  return {
    ...stack,
    solana,
    evm,
    relay,
    solanaPayTo: marketplace.address,
    evmPayTo,
    proxyEnv,
    stop: async () => {
      await stack.stop();
      await Promise.all([solana.stop(), evm.stop(), relay.stop()]);
    },
  };
};
