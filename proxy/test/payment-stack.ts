import { type AddressInfo, createServer as createNetServer } from 'node:net';
import {
  createFundedWallet,
  type EvmDevChain,
  type SolanaDevChain,
  startDevFaucet,
  startDevPaymentNetwork,
  type startRelayStandIn,
  transferUsdc,
  transferUsdcWithMemo,
} from '@crochet/dev-chains';
import { decodePaymentRequiredHeader } from '@x402/core/http';
import type { Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { expect } from 'vitest';
import { type TestServices, verifyWallet } from '../../control-plane/test/helpers.js';
import { eventually, gatewayCall, type RawResponse, startTestStack, type TestStack } from './stack.js';

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
  /** The dev faucet's URL, when the stack was started with `faucet: true` (as `npm start` runs it). */
  faucetUrl: string | undefined;
}

export const startPaymentStack = async (
  options: {
    proxies?: number;
    proxyEnv?: Record<string, string>;
    planeEnv?: Record<string, string>;
    services?: TestServices;
    /** Also run the dev faucet and tell both planes about it (CROCHET_DEV_FAUCET_URL), as `npm start` does. */
    faucet?: boolean;
    /**
     * The (one) proxy's own URL is the public base URL (PUBLIC_BASE_URL of both planes), as in a deployment: the
     * documents, listings' gateway_url and the 402s name the URL an agent actually reaches.
     */
    proxyIsBaseUrl?: boolean;
  } = {},
): Promise<PaymentStack> => {
  const network = await startDevPaymentNetwork();
  const faucet = options.faucet ? await startDevFaucet(network) : undefined;
  const faucetEnv: Record<string, string> = faucet ? { CROCHET_DEV_FAUCET_URL: faucet.url } : {};
  const baseEnv: Record<string, string> = {};
  if (options.proxyIsBaseUrl) {
    if ((options.proxies ?? 1) !== 1) throw new Error('proxyIsBaseUrl needs exactly one proxy');
    const port = await freePort();
    baseEnv['PORT'] = String(port);
    baseEnv['PUBLIC_BASE_URL'] = `http://127.0.0.1:${port}`;
  }
  const proxyEnv: Record<string, string> = {
    ...network.env,
    ...faucetEnv,
    ...baseEnv,
    CROCHET_EVM_MIN_PRICE: '0.05',
    ...options.proxyEnv,
  };
  const stack = await startTestStack({
    proxies: options.proxies ?? 1,
    proxyEnv: proxyEnv,
    // The control plane sends payouts and refunds from the marketplace's accounts on the same networks — when a
    // test asks (runOnce, or its own interval): a refund sent meanwhile would add journals other tests count.
    planeEnv: {
      CROCHET_TRANSFERS_INTERVAL_MS: '0',
      ...network.env,
      ...network.treasuryEnv,
      ...faucetEnv,
      ...(baseEnv['PUBLIC_BASE_URL'] ? { PUBLIC_BASE_URL: baseEnv['PUBLIC_BASE_URL'] } : {}),
      ...options.planeEnv,
    },
    ...(options.services ? { services: options.services } : {}),
  });
  return {
    ...stack,
    solana: network.solana,
    evm: network.evm,
    relay: network.relay,
    solanaPayTo: network.solanaPayTo,
    evmPayTo: network.evmPayTo,
    proxyEnv,
    faucetUrl: faucet?.url,
    stop: async () => {
      await stack.stop();
      await faucet?.close();
      await network.stop();
    },
  };
};

/** A TCP port free on loopback now (the OS picks it; it is released at once for a server to take). */
const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createNetServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });

/** A listing priced per call, on a seller URL, known to every proxy of the stack when this resolves. */
export const createPaidListing = async (
  stack: TestStack,
  sellerKey: string,
  endpointUrl: string,
  amount: string,
  fields: Record<string, unknown> = {},
): Promise<string> => {
  const { listing } = await stack.plane.createListing(sellerKey, {
    pricing_model: 'per_call',
    price: { amount },
    private_endpoint_url: endpointUrl,
    ...fields,
  });
  await eventually(() => {
    for (const proxy of stack.proxies) expect(proxy.store.listing(listing.id)).toBeDefined();
  });
  return listing.id as string;
};

/**
 * An agent that added an EVM wallet with its API key and proved control of it (POST /api/v1/me/wallets/challenge,
 * SIWE signature, POST /api/v1/me/wallets; DESIGN §3.9): the wallet is verified, so direct EVM transfers and Relay
 * payments from it pay for the agent's calls. The key is the one registration gave. Resolves once every proxy has
 * the wallet in its config.
 */
export const registerVerifiedEvmBuyer = async (
  stack: TestStack,
  name: string,
  privateKey: Hex,
): Promise<{ apiKey: string; agentId: string; address: `0x${string}` }> => {
  const account = privateKeyToAccount(privateKey);
  const { apiKey, agentId } = await stack.plane.register(name);
  const added = await verifyWallet(stack.plane, apiKey, {
    chain: 'evm',
    address: account.address,
    sign: (message) => account.signMessage({ message }),
  });
  expect(added.status, added.text).toBe(201);
  await untilProxiesHaveWallet(stack, agentId, account.address);
  return { apiKey, agentId, address: account.address };
};

/** Waits until every proxy of the stack has (or, with `present: false`, no longer has) the agent's EVM wallet. */
export const untilProxiesHaveWallet = (
  stack: TestStack,
  agentId: string,
  address: string,
  present = true,
  timeoutMs?: number,
): Promise<void> =>
  eventually(() => {
    for (const proxy of stack.proxies) {
      const wallets = proxy.store.agent(agentId)?.evm_wallets ?? [];
      expect(wallets.includes(address.toLowerCase())).toBe(present);
    }
  }, timeoutMs);

/** Reads the x402 PAYMENT-REQUIRED header of a 402 (undefined when absent). */
export const paymentRequiredOf = (res: RawResponse) => {
  const header = res.headers['payment-required'];
  return typeof header === 'string' ? decodePaymentRequiredHeader(header) : undefined;
};

/** The `X-Crochet-Payment-Tx` header for a transaction on a CAIP-2 network. */
export const paymentTx = (network: string, tx: string) => ({ 'x-crochet-payment-tx': `${network}:${tx}` });

/**
 * A direct Solana USDC transfer paying for one call of a listing: the gateway's 402 (on `proxy`) gives the payment
 * request the transfer's memo names; a fresh funded wallet pays it. Returns the proof header.
 */
export const paySolana = async (
  stack: PaymentStack,
  listingId: string,
  apiKey: string,
  amountAtomic: bigint,
  proxy: { url: string } = stack.proxies[0]!,
): Promise<Record<string, string>> => {
  const unpaid = await gatewayCall(proxy, listingId, apiKey);
  expect(unpaid.status, unpaid.text).toBe(402);
  const wallet = await createFundedWallet(stack.solana, { sol: 1, usdcAtomic: amountAtomic * 10n });
  const signature = await transferUsdcWithMemo(
    stack.solana,
    wallet.signer,
    stack.solanaPayTo,
    amountAtomic,
    unpaid.json.payment.payment_request_id,
  );
  return paymentTx(stack.solana.caip2, signature);
};

/**
 * A Relay payment: a request (status success) made by `user`, whose fill — a USDC transfer from the `solverKey`
 * account — paid `amountAtomic` to the marketplace on anvil. Returns the proof header.
 */
export const payThroughRelay = async (
  stack: PaymentStack,
  solverKey: Hex,
  user: `0x${string}`,
  amountAtomic: bigint,
): Promise<Record<string, string>> => {
  const fill = await transferUsdc(stack.evm, solverKey, stack.evmPayTo, amountAtomic);
  const usdc = { chainId: stack.evm.chainId, address: stack.evm.usdc, symbol: 'USDC', decimals: 6 };
  const { id } = stack.relay.createRequest({
    status: 'success',
    user,
    recipient: stack.evmPayTo,
    originChainId: stack.evm.chainId,
    destinationChainId: stack.evm.chainId,
    currencyOut: usdc,
    amountOut: amountAtomic.toString(),
    outTxHashes: [fill],
  });
  return { 'x-crochet-relay-request-id': id };
};
