import { fromAtomic } from '@crochet/protocol';
import type { PaymentsConfig } from './config.js';

/** One x402 v2 `accepts` entry (x402 PaymentRequirements). */
export interface Accept {
  scheme: 'exact';
  network: string;
  amount: string;
  asset: string;
  payTo: string;
  maxTimeoutSeconds: number;
  extra: Record<string, unknown>;
}

/** What the gateway remembers about a 402 it issued, under `pay:req:<id>`. */
export interface PaymentRequestRecord {
  id: string;
  listing_id: string;
  buyer_id: string;
  amount_atomic: string;
  currency: string;
  expires_at: number;
}

export interface PaymentRequiredInput {
  paymentRequestId: string;
  listingId: string;
  listingName?: string;
  priceAtomic: bigint;
  currency: 'USDC';
  resourceUrl: string;
  expiresAtMs: number;
  /** Public address of the gateway's Solana fee payer (x402 SVM needs it in `extra`). */
  solanaFeePayer: string | undefined;
}

/** Solana first (DESIGN §3.4); EVM only when the price clears the EVM route minimum. */
export const buildAccepts = (config: PaymentsConfig, input: PaymentRequiredInput): Accept[] => {
  const accepts: Accept[] = [];
  const amount = input.priceAtomic.toString();
  if (config.solana && input.solanaFeePayer) {
    accepts.push({
      scheme: 'exact',
      network: config.solana.network,
      amount,
      asset: config.solana.usdcMint,
      payTo: config.solana.payTo,
      maxTimeoutSeconds: config.maxTimeoutSeconds,
      extra: {
        feePayer: input.solanaFeePayer,
        decimals: 6,
        memo: input.paymentRequestId,
        // Where to send the payment: `@x402/svm` clients take it as ExactSvmScheme(signer, { rpcUrl }). Only a URL
        // configured as public is shown (the dev chains reuse devnet's id, and an agent must not go to devnet).
        ...(config.solana.publicRpcUrl ? { rpcUrl: config.solana.publicRpcUrl } : {}),
      },
    });
  }
  if (config.evm && input.priceAtomic >= config.evm.minPriceAtomic) {
    accepts.push({
      scheme: 'exact',
      network: config.evm.network,
      amount,
      asset: config.evm.usdcAddress,
      payTo: config.evm.payTo,
      maxTimeoutSeconds: config.maxTimeoutSeconds,
      extra: { name: config.evm.usdcName, version: config.evm.usdcVersion, decimals: 6 },
    });
  }
  return accepts;
};

/** The x402 v2 PaymentRequired object (the PAYMENT-REQUIRED header, base64 of its JSON). */
export const buildPaymentRequired = (accepts: Accept[], input: PaymentRequiredInput, message: string) => ({
  x402Version: 2 as const,
  error: message,
  resource: {
    url: input.resourceUrl,
    description: input.listingName ?? `Crochet listing ${input.listingId}`,
    mimeType: 'application/json',
  },
  accepts,
});

/** The `payment` part of the 402 body: the same options, plus the direct-transfer and Relay instructions. */
export const buildPaymentBody = (config: PaymentsConfig, accepts: Accept[], input: PaymentRequiredInput) => ({
  payment_request_id: input.paymentRequestId,
  listing_id: input.listingId,
  amount: fromAtomic(input.priceAtomic, input.currency),
  amount_atomic: input.priceAtomic.toString(),
  currency: input.currency,
  expires_at: new Date(input.expiresAtMs).toISOString(),
  /** A transfer is accepted as a proof for this long after it moved the money. */
  accept_window_seconds: config.acceptWindowSeconds,
  accepts,
  direct: {
    header: 'X-Crochet-Payment-Tx',
    format: '<caip2-network>:<transaction id>',
    networks: [
      ...(config.solana
        ? [
            {
              network: config.solana.network,
              asset: config.solana.usdcMint,
              pay_to: config.solana.payTo,
              pay_to_kind: 'owner',
              memo: input.paymentRequestId,
              ...(config.solana.publicRpcUrl ? { rpc_url: config.solana.publicRpcUrl } : {}),
            },
          ]
        : []),
      ...(config.evm && input.priceAtomic >= config.evm.minPriceAtomic
        ? [
            {
              network: config.evm.network,
              asset: config.evm.usdcAddress,
              pay_to: config.evm.payTo,
              sender: 'a verified wallet of yours',
              ...(config.evm.publicRpcUrl ? { rpc_url: config.evm.publicRpcUrl } : {}),
            },
          ]
        : []),
    ],
  },
  relay:
    config.relay && config.evm
      ? {
          header: 'X-Crochet-Relay-Request-Id',
          recipient: config.evm.payTo,
          currency: { chain_id: config.evm.chainId, address: config.evm.usdcAddress, symbol: 'USDC', decimals: 6 },
          amount: input.priceAtomic.toString(),
          destination_chain_id: config.evm.chainId,
          api_url: config.relay.apiUrl,
        }
      : null,
  ...(config.devFaucetUrl ? { test_funds: testFunds(config) } : {}),
});

/**
 * Where test funds come from when the rails point at development chains (`CROCHET_DEV_FAUCET_URL`): the faucet's
 * routes and each network's RPC URL. In the 402 body and the documents alike; absent in production.
 */
export const testFunds = (config: Pick<PaymentsConfig, 'devFaucetUrl' | 'solana' | 'evm'>) => ({
  faucet_url: config.devFaucetUrl,
  help: `GET ${config.devFaucetUrl}/`,
  requests: [
    ...(config.solana
      ? [
          {
            network: config.solana.network,
            request: `POST ${config.devFaucetUrl}/solana`,
            body: { address: '<base58 owner address>', sol: 1, usdc_atomic: '1000000' },
          },
        ]
      : []),
    ...(config.evm
      ? [
          {
            network: config.evm.network,
            request: `POST ${config.devFaucetUrl}/evm`,
            body: { address: '<0x address>', eth: 1, usdc_atomic: '1000000' },
          },
        ]
      : []),
  ],
  rpc_urls: {
    ...(config.solana?.publicRpcUrl ? { [config.solana.network]: config.solana.publicRpcUrl } : {}),
    ...(config.evm?.publicRpcUrl ? { [config.evm.network]: config.evm.publicRpcUrl } : {}),
  },
});
