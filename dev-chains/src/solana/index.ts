export { SolanaChainEngine } from './engine.js';
export {
  createFundedWallet,
  type FundedWallet,
  generateWallet as generateSolanaWallet,
  mintUsdc as mintSolanaUsdc,
  sendInstructions as sendSolanaInstructions,
  solBalanceOf,
  transferUsdcWithMemo,
  usdcAtaAddress,
  usdcBalanceOf,
  usdcTokenAccount,
  waitForConfirmation as waitForSolanaConfirmation,
} from './helpers.js';
export {
  DEVNET_USDC_MINT as SOLANA_DEVNET_USDC_MINT,
  LAMPORTS_PER_SOL,
  SOLANA_DEV_CHAIN_CAIP2,
  SOLANA_DEV_CHAIN_GENESIS_HASH,
  type SolanaDevChain,
  type StartSolanaDevChainOptions,
  startSolanaDevChain,
} from './rpc-server.js';
