/**
 * Local chains for `npm start` (CROCHET_DEV_CHAINS=1, the default when no RPC URL is set): a Solana dev chain
 * (litesvm behind JSON-RPC), anvil with the test USDC, and a Relay stand-in, wired into the payment settings of the
 * proxies. A small faucet (loopback only) funds wallets for the demo; everything is described in
 * .crochet/dev-chains.json.
 */

import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { mintSolanaUsdc, mintUsdc, startDevPaymentNetwork } from '@crochet/dev-chains';
import { address } from '@solana/kit';

export interface DevChains {
  env: Record<string, string>;
  stop(): Promise<void>;
}

const readJson = (req: import('node:http').IncomingMessage): Promise<Record<string, unknown>> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'));
      } catch (error) {
        reject(error);
      }
    });
  });

export const startDevChains = async (root: string, log: (line: string) => void): Promise<DevChains> => {
  // anvil starts from the same genesis every time, so the same dev key's first transfer has the same hash on every
  // run; the database outlives the chains. A chain id of its own per run keeps transactions (and proofs) distinct.
  const network = await startDevPaymentNetwork({ evmChainId: 31_337_000 + Math.floor(Math.random() * 100_000) });
  const { solana, evm, relay } = network;

  // The faucet: POST /solana {address, usdc_atomic, sol}, POST /evm {address, usdc_atomic}, POST /relay {request}.
  const faucet: Server = createServer(async (req, res) => {
    try {
      const body = await readJson(req);
      if (req.url === '/solana') {
        const owner = address(String(body['address']));
        if (body['sol']) await solana.airdrop(owner, BigInt(Math.round(Number(body['sol']) * 1e9)));
        if (body['usdc_atomic']) await mintSolanaUsdc(solana, owner, BigInt(String(body['usdc_atomic'])));
      } else if (req.url === '/evm') {
        await mintUsdc(evm, String(body['address']) as `0x${string}`, BigInt(String(body['usdc_atomic'] ?? '0')));
      } else if (req.url === '/relay') {
        const created = relay.createRequest(body['request'] as Parameters<typeof relay.createRequest>[0]);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: created.id }));
        return;
      } else {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    } catch (error) {
      res
        .writeHead(400, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error: (error as Error).message }));
    }
  });
  await new Promise<void>((resolve) => faucet.listen(0, '127.0.0.1', resolve));
  const faucetUrl = `http://127.0.0.1:${(faucet.address() as AddressInfo).port}`;

  // One process runs both planes here: the control plane's treasury keys (payouts, refunds) go in the same env.
  const env = { ...network.env, ...network.treasuryEnv };
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
      faucet.close();
      await network.stop();
    },
  };
};
