import { type EnvReader, toAtomic } from '@crochet/protocol';
import { getBase58Decoder, getBase58Encoder } from '@solana/kit';
import { privateKeyToAccount } from 'viem/accounts';

/** The address of a base58 64-byte Solana secret key (its second half is the public key); null if it is not one. */
const solanaAddressOf = (secretKey: string): string | null => {
  try {
    const bytes = getBase58Encoder().encode(secretKey);
    return bytes.length === 64 ? getBase58Decoder().decode(bytes.slice(32)) : null;
  } catch {
    return null;
  }
};

/**
 * Payment settings (DESIGN §4): the marketplace's receiving addresses, assets, networks, RPC URLs, route minimums.
 * A rail is on when its RPC URL and receiving address are set.
 */
export interface SolanaRailConfig {
  rpcUrl: string;
  /**
   * `CROCHET_SOLANA_PUBLIC_RPC_URL`: the RPC URL buyers are told to use (402 `extra.rpcUrl`, the documents). Unset by
   * default: `rpcUrl` may carry a provider key and is never published. The dev chains set it, since their network
   * reuses public devnet's CAIP-2 id and a buyer must not be sent there.
   */
  publicRpcUrl: string | undefined;
  /** CAIP-2, e.g. solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp. */
  network: string;
  usdcMint: string;
  /** The marketplace's owner address; USDC arrives in its associated token account. */
  payTo: string;
  /** Base58 64-byte secret key that pays fees when the gateway settles x402 payments itself. */
  feePayerKey: string | undefined;
  /**
   * `CROCHET_SOLANA_TREASURY_KEY`: base58 64-byte secret key of the pay-to owner, which sends payouts and refunds
   * (the control plane's; proxies need none). Its address must be `payTo`.
   */
  treasuryKey: string | undefined;
  /**
   * How final a Solana payment must be before it counts (`CROCHET_SOLANA_COMMITMENT`): `confirmed` (voted on by a
   * supermajority, ~1 s) or `finalized` (rooted, ~13 s; the default on mainnet). Below it the answer is pending.
   */
  commitment: SolanaCommitment;
}

/** Commitment levels a payment may be required to reach (`processed` can still be rolled back: never enough). */
export const SOLANA_COMMITMENTS = ['confirmed', 'finalized'] as const;
export type SolanaCommitment = (typeof SOLANA_COMMITMENTS)[number];

/** The CAIP-2 id of Solana mainnet-beta (its genesis hash, truncated). */
export const SOLANA_MAINNET = 'solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp';

export interface EvmRailConfig {
  rpcUrl: string;
  /** `CROCHET_EVM_PUBLIC_RPC_URL`: the RPC URL buyers are told to use (402 body, documents); never `rpcUrl` itself. */
  publicRpcUrl: string | undefined;
  /** CAIP-2, e.g. eip155:8453. */
  network: string;
  chainId: number;
  usdcAddress: `0x${string}`;
  /** EIP-712 domain name and version of the USDC contract (EIP-3009 signatures). */
  usdcName: string;
  usdcVersion: string;
  payTo: `0x${string}`;
  /** Hex private key that pays gas when the gateway settles x402 payments itself. */
  settlerKey: `0x${string}` | undefined;
  /** Prices below this (atomic USDC) are not offered on EVM, and EVM proofs for them are refused. */
  minPriceAtomic: bigint;
  confirmations: number;
  /** `CROCHET_EVM_TREASURY_KEY`: 0x key of `payTo`, which sends payouts and refunds (the control plane's). */
  treasuryKey: `0x${string}` | undefined;
}

export interface RelayRailConfig {
  apiUrl: string;
  /** Relay integrator API key, sent as `x-api-key` (`GET /requests/v3` requires one). */
  apiKey: string;
}

export interface PaymentsConfig {
  solana: SolanaRailConfig | undefined;
  evm: EvmRailConfig | undefined;
  relay: RelayRailConfig | undefined;
  /** How long a payment request (402) stays payable. */
  requestTtlSeconds: number;
  /**
   * How long after its money moved a transfer is still accepted as a proof (`CROCHET_PAYMENT_ACCEPT_WINDOW_SECONDS`).
   * Consumed proofs are restored from PostgreSQL for this long after a Redis loss, so what must be restored is bounded.
   */
  acceptWindowSeconds: number;
  /**
   * How long the gateway waits on a verifier (a chain RPC, Relay) before answering 503 PAYMENT_VERIFIER_UNAVAILABLE,
   * and on a settlement's confirmation before answering PAYMENT_PENDING.
   */
  verifyTimeoutMs: number;
  /** x402 maxTimeoutSeconds offered to clients. */
  maxTimeoutSeconds: number;
  /**
   * `CROCHET_DEV_FAUCET_URL`: a faucet for the (development) chains the rails point at; named in every 402 and in the
   * documents when set (`npm start` with dev chains sets it). Never set in production.
   */
  devFaucetUrl: string | undefined;
}

const HEX_ADDRESS = /^0x[0-9a-fA-F]{40}$/;

export const loadPaymentsConfig = (r: EnvReader): PaymentsConfig => {
  const solanaRpc = r.url('CROCHET_SOLANA_RPC_URL', undefined, ['http:', 'https:']);
  let solana: SolanaRailConfig | undefined;
  if (solanaRpc) {
    const network = r.required('CROCHET_SOLANA_NETWORK', 'CAIP-2 network of the Solana rail');
    if (network && !network.startsWith('solana:')) {
      r.problem('CROCHET_SOLANA_NETWORK', 'must be a CAIP-2 id starting with solana:');
    }
    // Mainnet money waits for finality by default; devnets and test chains are fine at confirmed.
    const commitment = r.string('CROCHET_SOLANA_COMMITMENT', network === SOLANA_MAINNET ? 'finalized' : 'confirmed');
    if (!(SOLANA_COMMITMENTS as readonly string[]).includes(commitment)) {
      r.problem('CROCHET_SOLANA_COMMITMENT', `must be confirmed or finalized, got ${JSON.stringify(commitment)}`);
    }
    solana = {
      rpcUrl: solanaRpc,
      publicRpcUrl: r.url('CROCHET_SOLANA_PUBLIC_RPC_URL', undefined, ['http:', 'https:']),
      network,
      usdcMint: r.required('CROCHET_SOLANA_USDC_MINT', 'USDC mint address'),
      payTo: r.required('CROCHET_SOLANA_PAY_TO', "the marketplace's Solana owner address"),
      feePayerKey: r.string('CROCHET_SOLANA_FEE_PAYER_KEY'),
      treasuryKey: r.string('CROCHET_SOLANA_TREASURY_KEY'),
      commitment: commitment as SolanaCommitment,
    };
    const treasury = solana.treasuryKey ? solanaAddressOf(solana.treasuryKey) : undefined;
    if (solana.treasuryKey && treasury !== solana.payTo) {
      r.problem(
        'CROCHET_SOLANA_TREASURY_KEY',
        treasury ? `is the key of ${treasury}, not of CROCHET_SOLANA_PAY_TO` : 'must be base58 of a 64-byte secret key',
      );
    }
  }
  const evmRpc = r.url('CROCHET_EVM_RPC_URL', undefined, ['http:', 'https:']);
  let evm: EvmRailConfig | undefined;
  if (evmRpc) {
    const network = r.required('CROCHET_EVM_NETWORK', 'CAIP-2 network of the EVM rail, e.g. eip155:8453');
    const chainId = Number(/^eip155:([0-9]+)$/.exec(network)?.[1] ?? Number.NaN);
    if (network && !Number.isSafeInteger(chainId)) r.problem('CROCHET_EVM_NETWORK', 'must look like eip155:<chain id>');
    const usdc = r.required('CROCHET_EVM_USDC_ADDRESS', 'USDC contract address');
    const payTo = r.required('CROCHET_EVM_PAY_TO', "the marketplace's EVM address");
    for (const [name, value] of [
      ['CROCHET_EVM_USDC_ADDRESS', usdc],
      ['CROCHET_EVM_PAY_TO', payTo],
    ] as const) {
      if (value && !HEX_ADDRESS.test(value)) r.problem(name, 'must be a 0x-prefixed 20-byte hex address');
    }
    const settler = r.string('CROCHET_EVM_SETTLER_KEY');
    if (settler && !/^0x[0-9a-fA-F]{64}$/.test(settler))
      r.problem('CROCHET_EVM_SETTLER_KEY', 'must be a 0x 32-byte hex key');
    const minPrice = r.string('CROCHET_EVM_MIN_PRICE', '0.10');
    const minPriceAtomic = toAtomic(minPrice, 'USDC');
    if (minPriceAtomic === null) r.problem('CROCHET_EVM_MIN_PRICE', 'must be a decimal USDC amount such as 0.10');
    evm = {
      rpcUrl: evmRpc,
      publicRpcUrl: r.url('CROCHET_EVM_PUBLIC_RPC_URL', undefined, ['http:', 'https:']),
      network,
      chainId,
      usdcAddress: usdc as `0x${string}`,
      usdcName: r.string('CROCHET_EVM_USDC_NAME', 'USD Coin'),
      usdcVersion: r.string('CROCHET_EVM_USDC_VERSION', '2'),
      payTo: payTo as `0x${string}`,
      settlerKey: settler as `0x${string}` | undefined,
      minPriceAtomic: minPriceAtomic ?? 0n,
      confirmations: r.int('CROCHET_EVM_CONFIRMATIONS', 1, { min: 0, max: 1000 }),
      treasuryKey: r.string('CROCHET_EVM_TREASURY_KEY') as `0x${string}` | undefined,
    };
    if (evm.treasuryKey) {
      if (!/^0x[0-9a-fA-F]{64}$/.test(evm.treasuryKey))
        r.problem('CROCHET_EVM_TREASURY_KEY', 'must be a 0x 32-byte hex key');
      else if (privateKeyToAccount(evm.treasuryKey).address.toLowerCase() !== evm.payTo.toLowerCase()) {
        r.problem('CROCHET_EVM_TREASURY_KEY', 'is not the key of CROCHET_EVM_PAY_TO');
      } else if (evm.settlerKey?.toLowerCase() === evm.treasuryKey.toLowerCase()) {
        // Each sends its own transactions under its own ordering: one key would make them take each other's nonces.
        r.problem('CROCHET_EVM_TREASURY_KEY', 'must differ from CROCHET_EVM_SETTLER_KEY');
      }
    }
  }
  const relayUrl = r.url('CROCHET_RELAY_API_URL', undefined, ['http:', 'https:']);
  // Relay's requests API (v3) refuses calls without an integrator key: a Relay rail without one could verify nothing.
  const relay = relayUrl
    ? {
        apiUrl: relayUrl.replace(/\/+$/, ''),
        apiKey: r.required('CROCHET_RELAY_API_KEY', 'the Relay API key; GET /requests/v3 requires x-api-key'),
      }
    : undefined;
  return {
    solana,
    evm,
    relay,
    requestTtlSeconds: r.int('CROCHET_PAYMENT_REQUEST_TTL_SECONDS', 600, { min: 5, max: 86_400 }),
    acceptWindowSeconds: r.int('CROCHET_PAYMENT_ACCEPT_WINDOW_SECONDS', 3_600, { min: 60, max: 7 * 86_400 }),
    verifyTimeoutMs: r.int('CROCHET_PAYMENT_VERIFY_TIMEOUT_MS', 5_000, { min: 100, max: 120_000 }),
    maxTimeoutSeconds: r.int('CROCHET_X402_MAX_TIMEOUT_SECONDS', 120, { min: 10, max: 3_600 }),
    devFaucetUrl: r.url('CROCHET_DEV_FAUCET_URL', undefined, ['http:', 'https:'])?.replace(/\/+$/, ''),
  };
};
