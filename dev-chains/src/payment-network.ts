import { getBase58Decoder } from '@solana/kit';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { type EvmDevChain, startEvmDevChain } from './evm/index.js';
import { startRelayStandIn } from './relay/stand-in.js';
import { createFundedWallet, generateWallet, usdcTokenAccount } from './solana/helpers.js';
import { type SolanaDevChain, startSolanaDevChain } from './solana/rpc-server.js';

/** All three local payment networks, the marketplace's receiving accounts on them, and the gateway settings for them. */
export interface DevPaymentNetwork {
  solana: SolanaDevChain;
  evm: EvmDevChain;
  relay: Awaited<ReturnType<typeof startRelayStandIn>>;
  solanaPayTo: string;
  evmPayTo: `0x${string}`;
  /** The proxies' payment variables (DESIGN §4) pointing at these networks. */
  env: Record<string, string>;
  /** The control plane's keys to the marketplace's receiving accounts, which send payouts and refunds. */
  treasuryEnv: Record<string, string>;
  stop(): Promise<void>;
}

/**
 * Starts the Solana dev chain, anvil with the test USDC and the Relay stand-in; opens the marketplace's USDC account,
 * funds a Solana fee payer and picks EVM settler and receiving accounts (anvil dev keys 8 and 9).
 */
export const startDevPaymentNetwork = async (options: { evmChainId?: number } = {}): Promise<DevPaymentNetwork> => {
  const [solana, evm] = await Promise.all([
    startSolanaDevChain(),
    startEvmDevChain(options.evmChainId === undefined ? {} : { chainId: options.evmChainId }),
  ]);
  // Relay's solver on anvil: deposits of quoted requests reach it, and it sends the fills (gas only; the deposit
  // brings the USDC).
  const solverKey = generatePrivateKey();
  await fetch(evm.rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'anvil_setBalance',
      params: [privateKeyToAccount(solverKey).address, '0x56BC75E2D63100000'],
    }),
  });
  const relay = await startRelayStandIn({
    solver: { rpcUrl: evm.rpcUrl, chainId: evm.chainId, usdc: evm.usdc, privateKey: solverKey },
  });
  const marketplace = await createFundedWallet(solana, { sol: 1 });
  await usdcTokenAccount(solana, marketplace.address);
  const feePayer = await generateWallet();
  await solana.airdrop(feePayer.signer.address, 100_000_000_000n);
  const evmPayTo = privateKeyToAccount(evm.accounts[9]!.privateKey).address;
  return {
    solana,
    evm,
    relay,
    solanaPayTo: marketplace.address,
    evmPayTo,
    env: {
      CROCHET_SOLANA_RPC_URL: solana.rpcUrl,
      CROCHET_SOLANA_NETWORK: solana.caip2,
      CROCHET_SOLANA_USDC_MINT: solana.usdcMint,
      CROCHET_SOLANA_PAY_TO: marketplace.address,
      CROCHET_SOLANA_FEE_PAYER_KEY: getBase58Decoder().decode(feePayer.secretKey),
      // Buyers must reach this chain, not public devnet (whose CAIP-2 id it reuses): the 402 and the docs say where.
      CROCHET_SOLANA_PUBLIC_RPC_URL: solana.rpcUrl,
      CROCHET_EVM_RPC_URL: evm.rpcUrl,
      CROCHET_EVM_NETWORK: evm.caip2,
      CROCHET_EVM_USDC_ADDRESS: evm.usdc,
      CROCHET_EVM_USDC_NAME: evm.usdcName,
      CROCHET_EVM_USDC_VERSION: evm.usdcVersion,
      CROCHET_EVM_PAY_TO: evmPayTo,
      CROCHET_EVM_SETTLER_KEY: evm.accounts[8]!.privateKey,
      CROCHET_EVM_CONFIRMATIONS: '1',
      CROCHET_EVM_PUBLIC_RPC_URL: evm.rpcUrl,
      CROCHET_RELAY_API_URL: relay.url,
      // The key the stand-in issued: GET /requests/v3 refuses calls without it, as Relay does.
      CROCHET_RELAY_API_KEY: relay.apiKey,
    },
    treasuryEnv: {
      CROCHET_SOLANA_TREASURY_KEY: getBase58Decoder().decode(marketplace.secretKey),
      CROCHET_EVM_TREASURY_KEY: evm.accounts[9]!.privateKey,
    },
    stop: async () => {
      await Promise.all([solana.stop(), evm.stop(), relay.stop()]);
    },
  };
};
