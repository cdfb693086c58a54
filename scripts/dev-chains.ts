/**
 * Local chains for `npm start` (CROCHET_DEV_CHAINS=1, the default when no RPC URL is set): a Solana dev chain
 * (litesvm behind JSON-RPC), anvil with the test USDC, and a Relay stand-in, wired into the payment settings of the
 * proxies. A small faucet (loopback only) funds wallets for the demo; everything is described in
 * .crochet/dev-chains.json.
 */

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDevFaucet, startDevPaymentNetwork } from '@crochet/dev-chains';

export interface DevChains {
  env: Record<string, string>;
  stop(): Promise<void>;
}

export const startDevChains = async (root: string, log: (line: string) => void): Promise<DevChains> => {
  // anvil starts from the same genesis every time, so the same dev key's first transfer has the same hash on every
  // run; the database outlives the chains. A chain id of its own per run keeps transactions (and proofs) distinct.
  const network = await startDevPaymentNetwork({ evmChainId: 31_337_000 + Math.floor(Math.random() * 100_000) });
  const { solana, evm, relay } = network;

  // The faucet (GET / on it describes its routes); the documents and every 402 name it (CROCHET_DEV_FAUCET_URL).
  const faucet = await startDevFaucet(network);
  const faucetUrl = faucet.url;

  // One process runs both planes here: the control plane's treasury keys (payouts, refunds) go in the same env.
  const env = { ...network.env, ...network.treasuryEnv, CROCHET_DEV_FAUCET_URL: faucetUrl };
  const info = {
    solana: { rpc_url: solana.rpcUrl, network: solana.caip2, usdc_mint: solana.usdcMint, pay_to: network.solanaPayTo },
    evm: {
      rpc_url: evm.rpcUrl,
      network: evm.caip2,
      chain_id: evm.chainId,
      usdc: evm.usdc,
      pay_to: network.evmPayTo,
      // Well-known anvil development keys, for demo buyers only.
      buyer_keys: evm.accounts.slice(1, 5).map((a) => a.privateKey),
    },
    // The stand-in's API key (GET /requests/v3 requires one, as Relay's does); a development key, nothing else.
    relay: { api_url: relay.url, api_key: relay.apiKey },
    faucet_url: faucetUrl,
  };
  mkdirSync(join(root, '.crochet'), { recursive: true });
  writeFileSync(join(root, '.crochet', 'dev-chains.json'), `${JSON.stringify(info, null, 2)}\n`);
  log(
    `dev chains: Solana ${solana.rpcUrl} (${solana.caip2}), EVM ${evm.rpcUrl} (${evm.caip2}), Relay stand-in ${relay.url}`,
  );
  log(`dev faucet at ${faucetUrl}; details in .crochet/dev-chains.json`);
  return {
    env,
    stop: async () => {
      await faucet.close();
      await network.stop();
    },
  };
};
