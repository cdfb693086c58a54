import { x402ProofId } from '@crochet/protocol';
import {
  type Address,
  address,
  appendTransactionMessageInstructions,
  createSolanaRpc,
  createTransactionMessage,
  getBase64EncodedWireTransaction,
  getSignatureFromTransaction,
  type Instruction,
  type KeyPairSigner,
  pipe,
  setTransactionMessageFeePayerSigner,
  setTransactionMessageLifetimeUsingBlockhash,
  signTransactionMessageWithSigners,
} from '@solana/kit';
import {
  findAssociatedTokenPda,
  getCreateAssociatedTokenIdempotentInstruction,
  getTransferCheckedInstruction,
  TOKEN_PROGRAM_ADDRESS,
} from '@solana-program/token';
import { x402Client } from '@x402/core/client';
import { encodePaymentSignatureHeader } from '@x402/core/http';
import type { PaymentRequired } from '@x402/core/types';
import { toClientEvmSigner } from '@x402/evm';
import { ExactEvmScheme } from '@x402/evm/exact/client';
import { ExactSvmScheme } from '@x402/svm/exact/client';
import { createPublicClient, createWalletClient, defineChain, type Hex, http, type LocalAccount } from 'viem';
import { CrochetClientError } from './errors.js';

/**
 * Payment rails on the buyer's side (DESIGN §3.4), one contract each: given the 402 a call received, say whether
 * this rail can pay it and, when asked, pay — returning the proof header the same call is retried with, ever after.
 * A rail never pays twice: `pay` is called once per call, and the proof it returns is reused on every retry.
 */

/** One entry of the 402's `payment.accepts` (x402 v2 PaymentRequirements). */
export interface Accept {
  scheme: string;
  network: string;
  amount: string;
  asset: string;
  payTo: string;
  maxTimeoutSeconds: number;
  extra: Record<string, unknown>;
}

/** The `payment` part of a 402 body. */
export interface PaymentBody {
  payment_request_id: string;
  listing_id: string;
  amount: string;
  amount_atomic: string;
  currency: string;
  expires_at: string;
  accepts: Accept[];
  direct?: { header: string; networks: { network: string; asset: string; pay_to: string; memo?: string }[] };
  relay?: RelayBody | null;
}

/** The `payment.relay` part of a 402 body: what a Relay payment must deliver, and where to ask Relay. */
export interface RelayBody {
  header: string;
  recipient: string;
  currency: { chain_id: number; address: string; symbol: string; decimals: number };
  amount: string;
  destination_chain_id: number;
  api_url?: string;
}

/** What a paid retry carries, and how the buyer's history names it. */
export interface PaymentProof {
  rail: RailName;
  /** The header(s) every retry of this call carries. */
  headers: Record<string, string>;
  /** What `GET /api/v1/gateway-requests?payment_proof=` finds this payment by. */
  proofId: string;
  network: string;
  /** The transaction that moved the money, when the buyer sent it (direct transfers). */
  tx?: string;
}

export type RailName = 'solana-transfer' | 'x402-svm' | 'x402-evm' | 'relay';

export interface Wallets {
  /** A Solana wallet (any `@solana/kit` KeyPairSigner) and the RPC of the network the gateway accepts. */
  solana?: { signer: KeyPairSigner; rpcUrl: string; commitment?: 'confirmed' | 'finalized' };
  /**
   * An EVM account (viem `privateKeyToAccount(…)`); x402 EIP-3009 needs only signatures, no RPC. Relay payments send
   * a deposit transaction: they need `rpcUrl`, the RPC of the chain the deposit is made on, and the account must be
   * a wallet you verified with Crochet (POST /api/v1/me/wallets) — the gateway accepts Relay requests only from those.
   */
  evm?: { account: LocalAccount; rpcUrl?: string };
}

/** Where the Relay rail asks Relay (default: the 402's `relay.api_url`), and from which chain and token it pays. */
export interface RelayOptions {
  apiUrl?: string;
  /** Sent as `x-api-key` (Relay's integrator key), when given. */
  apiKey?: string;
  /** Default: the destination chain and token of the 402 (a same-chain payment). */
  originChainId?: number;
  originCurrency?: string;
}

export interface Rail {
  name: RailName;
  /** The option of the 402 this rail would pay, or null. */
  option(payment: PaymentBody): Accept | null;
  pay(payment: PaymentBody, option: Accept, required: PaymentRequired): Promise<PaymentProof>;
}

const MEMO_PROGRAM = address('MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr');

/** The SPL Memo v3 instruction: the memo's UTF-8 bytes, no accounts (no signer check needed). */
const memoInstruction = (memo: string): Instruction => ({
  programAddress: MEMO_PROGRAM,
  accounts: [],
  data: new Uint8Array(Buffer.from(memo, 'utf8')),
});

const ata = async (owner: Address, mint: Address) =>
  (await findAssociatedTokenPda({ owner, mint, tokenProgram: TOKEN_PROGRAM_ADDRESS }))[0];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A direct USDC transfer on Solana: TransferChecked to the marketplace's token account with the payment request id
 * as memo, sent and confirmed before the retry (the gateway would otherwise answer PAYMENT_UNCONFIRMED — which the
 * call retries anyway). Creates the marketplace's token account in the same transaction if it does not exist.
 */
export const solanaTransferRail = (wallet: NonNullable<Wallets['solana']>): Rail => ({
  name: 'solana-transfer',
  option: (payment) => payment.accepts.find((a) => a.network.startsWith('solana:')) ?? null,
  pay: async (payment, option) => {
    const rpc = createSolanaRpc(wallet.rpcUrl);
    const mint = address(option.asset);
    const payTo = address(option.payTo);
    const decimals = Number(option.extra['decimals'] ?? 6);
    const [source, destination] = await Promise.all([ata(wallet.signer.address, mint), ata(payTo, mint)]);
    const instructions: Instruction[] = [];
    const { value: existing } = await rpc.getAccountInfo(destination, { encoding: 'base64' }).send();
    if (!existing) {
      instructions.push(
        getCreateAssociatedTokenIdempotentInstruction({ payer: wallet.signer, ata: destination, owner: payTo, mint }),
      );
    }
    instructions.push(
      getTransferCheckedInstruction({
        source,
        mint,
        destination,
        authority: wallet.signer,
        amount: BigInt(option.amount),
        decimals,
      }),
      memoInstruction(payment.payment_request_id),
    );
    const { value: latest } = await rpc.getLatestBlockhash().send();
    const message = pipe(
      createTransactionMessage({ version: 0 }),
      (m) => setTransactionMessageFeePayerSigner(wallet.signer, m),
      (m) => setTransactionMessageLifetimeUsingBlockhash(latest, m),
      (m) => appendTransactionMessageInstructions(instructions, m),
    );
    const signed = await signTransactionMessageWithSigners(message);
    const signature = getSignatureFromTransaction(signed);
    await rpc.sendTransaction(getBase64EncodedWireTransaction(signed), { encoding: 'base64' }).send();
    // Wait (bounded) for the commitment the gateway checks; past the bound the retry loop handles UNCONFIRMED.
    const wanted = wallet.commitment ?? 'confirmed';
    for (let i = 0; i < 120; i++) {
      const { value } = await rpc.getSignatureStatuses([signature]).send();
      const status = value[0];
      if (status?.err) throw new Error(`The payment transaction ${signature} failed: ${JSON.stringify(status.err)}`);
      if (
        status?.confirmationStatus === 'finalized' ||
        (wanted === 'confirmed' && status?.confirmationStatus === 'confirmed')
      ) {
        break;
      }
      await sleep(250);
    }
    return {
      rail: 'solana-transfer',
      headers: { 'x-crochet-payment-tx': `${option.network}:${signature}` },
      proofId: `tx:${option.network}:${signature}`,
      network: option.network,
      tx: signature,
    };
  },
});

/** x402 `exact` through the x402 client libraries, for one network family. */
const x402Rail = (
  name: 'x402-svm' | 'x402-evm',
  prefix: string,
  register: (client: x402Client, network: `${string}:${string}`) => void,
): Rail => ({
  name,
  option: (payment) => payment.accepts.find((a) => a.network.startsWith(prefix) && a.scheme === 'exact') ?? null,
  pay: async (_payment, option, required) => {
    const client = new x402Client();
    register(client, option.network as `${string}:${string}`);
    // x402 clients pay only assets they know unless told; the gateway's own 402 names the asset it accepts.
    client.setSpendControls({
      allowedAssets: [{ network: option.network as `${string}:${string}`, asset: option.asset }],
    });
    const payload = await client.createPaymentPayload({ ...required, accepts: [option as never] });
    return {
      rail: name,
      headers: { 'payment-signature': encodePaymentSignatureHeader(payload) },
      proofId: x402ProofId(payload),
      network: option.network,
    };
  },
});

export const x402SvmRail = (wallet: NonNullable<Wallets['solana']>): Rail =>
  x402Rail('x402-svm', 'solana:', (client, network) =>
    client.register(network, new ExactSvmScheme(wallet.signer, { rpcUrl: wallet.rpcUrl })),
  );

export const x402EvmRail = (wallet: NonNullable<Wallets['evm']>): Rail =>
  x402Rail('x402-evm', 'eip155:', (client, network) =>
    client.register(network, new ExactEvmScheme(toClientEvmSigner(wallet.account))),
  );

interface RelayStepItem {
  status?: string;
  data?: { from?: string; to: string; data?: string; value?: string; chainId: number; gas?: string };
}
interface RelayQuote {
  steps?: { id: string; kind: string; requestId?: string; items?: RelayStepItem[] }[];
}

/**
 * A payment through Relay (DESIGN §3.4): a quote for the 402's `relay` delivery (recipient, token, amount on the
 * destination chain; `EXACT_OUTPUT`), whose steps this wallet executes — each transaction sent and mined — and the
 * quote's request id as the proof (`X-Crochet-Relay-Request-Id`). Relay fills on its own time: the gateway answers
 * PAYMENT_PENDING until the fill is there, and the call retries with the same id; a deposit is never made twice.
 */
export const relayRail = (wallet: NonNullable<Wallets['evm']>, relay: RelayOptions = {}): Rail => ({
  name: 'relay',
  option: (payment) => {
    const r = payment.relay;
    if (!r || !wallet.rpcUrl || !(relay.apiUrl ?? r.api_url)) return null;
    return {
      scheme: 'relay',
      network: `eip155:${r.destination_chain_id}`,
      amount: r.amount,
      asset: r.currency.address,
      payTo: r.recipient,
      maxTimeoutSeconds: 0,
      extra: {},
    };
  },
  pay: async (payment) => {
    const r = payment.relay!;
    const apiUrl = (relay.apiUrl ?? r.api_url ?? '').replace(/\/+$/, '');
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    if (relay.apiKey) headers['x-api-key'] = relay.apiKey;
    const res = await fetch(`${apiUrl}/quote/v2`, {
      method: 'POST',
      headers,
      body: JSON.stringify({
        user: wallet.account.address,
        recipient: r.recipient,
        originChainId: relay.originChainId ?? r.currency.chain_id,
        destinationChainId: r.destination_chain_id,
        originCurrency: relay.originCurrency ?? r.currency.address,
        destinationCurrency: r.currency.address,
        amount: r.amount,
        tradeType: 'EXACT_OUTPUT',
      }),
    });
    const text = await res.text();
    if (!res.ok) {
      throw new CrochetClientError(
        'RELAY_QUOTE_FAILED',
        `Relay refused the quote (HTTP ${res.status}): ${text.slice(0, 300)}`,
        {
          status: res.status,
        },
      );
    }
    const quote = JSON.parse(text) as RelayQuote;
    const steps = quote.steps ?? [];
    const requestId = steps.find((step) => step.requestId)?.requestId;
    if (!requestId || !/^0x[0-9a-fA-F]{64}$/.test(requestId)) {
      throw new CrochetClientError('UNEXPECTED_RESPONSE', 'The Relay quote names no request id.');
    }
    let deposit: Hex | undefined;
    for (const step of steps) {
      for (const item of step.items ?? []) {
        if (item.status === 'complete') continue;
        if (step.kind !== 'transaction' || !item.data) {
          throw new CrochetClientError(
            'UNEXPECTED_RESPONSE',
            `The Relay quote asks for a ${step.kind} step (${step.id}) this client does not execute.`,
          );
        }
        if (item.data.chainId !== (relay.originChainId ?? r.currency.chain_id)) {
          throw new CrochetClientError(
            'UNEXPECTED_RESPONSE',
            `Relay step ${step.id} is on chain ${item.data.chainId}.`,
          );
        }
        const chain = defineChain({
          id: item.data.chainId,
          name: `chain ${item.data.chainId}`,
          nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
          rpcUrls: { default: { http: [wallet.rpcUrl!] } },
        });
        const sender = createWalletClient({ account: wallet.account, chain, transport: http(wallet.rpcUrl) });
        const hash = await sender.sendTransaction({
          to: item.data.to as Hex,
          ...(item.data.data ? { data: item.data.data as Hex } : {}),
          value: BigInt(item.data.value ?? '0'),
        });
        deposit = hash;
        // Sent: from here on the request id is the proof, whatever the wait says. A receipt that does not come in
        // time leaves Relay to index the deposit (the gateway answers PAYMENT_PENDING meanwhile); only a reverted
        // deposit (no money moved) fails the payment.
        const receipt = await createPublicClient({ chain, transport: http(wallet.rpcUrl), pollingInterval: 250 })
          .waitForTransactionReceipt({ hash, timeout: 60_000 })
          .catch(() => null);
        if (receipt && receipt.status !== 'success') {
          throw new CrochetClientError(
            'UNEXPECTED_RESPONSE',
            `The Relay step ${step.id} transaction ${hash} reverted.`,
          );
        }
      }
    }
    const id = requestId.toLowerCase();
    return {
      rail: 'relay',
      headers: { 'x-crochet-relay-request-id': id },
      proofId: `relay:${id}`,
      network: `eip155:${r.destination_chain_id}`,
      ...(deposit ? { tx: deposit } : {}),
    };
  },
});

/** The rails the configured wallets allow, in the order they are tried (the 402's own order decides among them). */
export const railsFor = (wallets: Wallets, relay?: RelayOptions): Rail[] => [
  ...(wallets.solana ? [solanaTransferRail(wallets.solana), x402SvmRail(wallets.solana)] : []),
  ...(wallets.evm ? [x402EvmRail(wallets.evm), relayRail(wallets.evm, relay)] : []),
];
