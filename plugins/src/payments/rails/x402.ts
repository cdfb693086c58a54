import { AsyncLocalStorage } from 'node:async_hooks';
import { x402ProofId } from '@crochet/protocol';
import { type PendingSettlementStore, x402Facilitator } from '@x402/core/facilitator';
import { decodePaymentSignatureHeader } from '@x402/core/http';
import type { PaymentPayload, PaymentRequirements } from '@x402/core/types';
import { toFacilitatorEvmSigner } from '@x402/evm';
import { ExactEvmScheme } from '@x402/evm/exact/facilitator';
import type { Redis } from 'ioredis';
import {
  BaseError,
  type Chain,
  createPublicClient,
  createWalletClient,
  encodeFunctionData,
  type Hex,
  HttpRequestError,
  http,
  type PublicClient,
  publicActions,
  TimeoutError,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { createNonceManager, jsonRpc } from 'viem/nonce';
import type { EvmRailConfig, PaymentsConfig } from '../config.js';
import type { Proof } from '../proof.js';
import type { Accept } from '../requirements.js';
import { createSettlerSender, SettlerUnavailableError } from '../settler-nonces.js';
import {
  errorKind,
  type PaymentCall,
  type PaymentRail,
  refuse,
  type SettleResult,
  type Verdict,
  VerifierUnavailableError,
} from './types.js';

/**
 * x402 `exact` (`PAYMENT-SIGNATURE`, or `X-PAYMENT` carrying the same payload): the gateway runs the facilitator
 * itself with `@x402/core` and the scheme packages — verify before anything else happens, settle with its own gas or
 * fee-payer key. The facilitator's own replay memory is per process; exactly-once across proxies comes from the
 * gateway's proof consumption in Redis (the nonce is the proof id), and on chain from EIP-3009's used nonces.
 */
export interface X402Schemes {
  facilitator: x402Facilitator;
  /** Networks registered, with what the requirements for a price look like there. */
  requirements: Map<string, (priceAtomic: bigint) => PaymentRequirements>;
}

const evmRequirements =
  (evm: EvmRailConfig, maxTimeoutSeconds: number) =>
  (priceAtomic: bigint): PaymentRequirements => ({
    scheme: 'exact',
    network: evm.network as PaymentRequirements['network'],
    asset: evm.usdcAddress,
    amount: priceAtomic.toString(),
    payTo: evm.payTo,
    maxTimeoutSeconds,
    extra: { name: evm.usdcName, version: evm.usdcVersion, decimals: 6 },
  });

/**
 * RPC failures seen while the facilitator works on one payment. The facilitator turns some of them into answers
 * ("invalid", "transaction failed"); with this record the rail tells a chain that did not answer from a payment
 * that is bad, and answers the first as 503 PAYMENT_VERIFIER_UNAVAILABLE.
 */
const rpcTrouble = new AsyncLocalStorage<{ failure?: VerifierUnavailableError }>();

const noteRpcFailure = (verifier: string, error: unknown): void => {
  const scope = rpcTrouble.getStore();
  if (scope && !scope.failure) {
    scope.failure =
      error instanceof VerifierUnavailableError
        ? error
        : new VerifierUnavailableError(verifier, `failed (${errorKind(error)})`, { cause: error });
  }
};

/** An EVM RPC that did not answer, or answered HTTP errors — not a contract that reverted. */
const evmTransportFailure = (error: unknown): boolean =>
  error instanceof BaseError && error.walk((e) => e instanceof HttpRequestError || e instanceof TimeoutError) !== null;

/** Calls the chain, noting a transport failure in the current payment's scope. */
const watchEvm =
  (verifier: string) =>
  <T>(call: () => Promise<T>): Promise<T> =>
    call().catch((error: unknown) => {
      if (evmTransportFailure(error) || error instanceof SettlerUnavailableError) noteRpcFailure(verifier, error);
      throw error;
    });

/** Where the settler's nonces are coordinated across proxies (settler-nonces.ts); without it, per process. */
export interface SettlerCoordination {
  redis: Redis;
  keys: (chainId: number, address: string) => { lease: string; nonce: string };
  log?: { warn(details: object, message: string): void };
}

/**
 * The EVM settler: the facilitator's reads go to the rail's RPC; its writes (the `transferWithAuthorization` call,
 * a wallet deployment) are signed here with the settler key and broadcast with a nonce coordinated across proxies.
 */
const evmSigner = (
  evm: EvmRailConfig,
  key: Hex,
  confirmationTimeoutMs: number,
  coordination: SettlerCoordination | undefined,
) => {
  const chain: Chain = {
    id: evm.chainId,
    name: evm.network,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [evm.rpcUrl] } },
  };
  // Alone (no Redis), a nonce manager of this signer's own is enough. (Not viem's process-wide one: proxies that share
  // a process, as in tests, must behave as the separate processes they are in production.)
  const account = privateKeyToAccount(
    key,
    coordination ? {} : { nonceManager: createNonceManager({ source: jsonRpc() }) },
  );
  const client = createWalletClient({ account, chain, transport: http(evm.rpcUrl), pollingInterval: 100 }).extend(
    publicActions,
  );
  // The sender decides itself when to send the same bytes again (viem's retries are off there).
  const once = http(evm.rpcUrl, { retryCount: 0 });
  const sender = coordination
    ? createSettlerSender(
        createPublicClient({ chain, transport: once, cacheTime: 0 }) as PublicClient,
        createWalletClient({ account, chain, transport: once }),
        account,
        chain,
        {
          redis: coordination.redis,
          keys: coordination.keys(evm.chainId, account.address),
          ...(coordination.log ? { log: coordination.log } : {}),
        },
      )
    : undefined;
  const watch = watchEvm(`EVM RPC (${evm.network})`);
  return toFacilitatorEvmSigner(
    {
      address: account.address,
      getCode: (args) =>
        watch(() => client.getCode(args)).catch((error: unknown) => {
          // x402 starts its asset check (a getCode) ahead of the rest and abandons it when verification stops early:
          // a rejection there would go unhandled. Within a payment the failure is noted — the answer is 503 whatever
          // getCode says — so it answers "no code" instead.
          if (rpcTrouble.getStore()?.failure) return undefined;
          throw error;
        }),
      readContract: (args) => watch(() => client.readContract({ ...args, args: args.args ?? [] } as never)),
      verifyTypedData: (args) => watch(() => client.verifyTypedData(args as never)),
      writeContract: (args) =>
        watch(() => {
          if (!sender) return client.writeContract({ ...args, args: args.args ?? [] } as never);
          const data = encodeFunctionData({ abi: args.abi, functionName: args.functionName, args: args.args } as never);
          return sender.send({
            to: args.address,
            data: args.dataSuffix ? (`${data}${args.dataSuffix.slice(2)}` as Hex) : data,
            ...(args.gas === undefined ? {} : { gas: args.gas }),
          });
        }),
      sendTransaction: (args) =>
        watch(() => (sender ? sender.send({ to: args.to, data: args.data }) : client.sendTransaction(args))),
      waitForTransactionReceipt: (args) => client.waitForTransactionReceipt(args),
    },
    { confirmationTimeoutMs },
  );
};

/**
 * Where a facilitator (EVM or Solana) remembers a settlement it broadcast but could not see final in time, shared by
 * all proxies: the buyer's retry (answered PAYMENT_PENDING, told to retry with the same payment) may land on any of
 * them, and must wait for that transaction instead of broadcasting the payment again.
 */
export const redisPendingSettlementStore = (
  redis: Redis,
  keyFor: (key: string) => string,
  ttlSeconds = 24 * 3600,
): PendingSettlementStore => ({
  get: async (key) => (await redis.get(keyFor(key))) ?? undefined,
  set: async (key, txHash) => {
    await redis.set(keyFor(key), txHash, 'EX', ttlSeconds);
  },
  delete: async (key) => {
    await redis.del(keyFor(key));
  },
});

/** Builds the in-process facilitator for the rails that have settlement keys. */
export const createX402Schemes = (
  config: PaymentsConfig,
  extra?: (schemes: X402Schemes) => void,
  options: { pendingSettlementStore?: PendingSettlementStore; settlerCoordination?: SettlerCoordination } = {},
): X402Schemes => {
  const schemes: X402Schemes = { facilitator: new x402Facilitator(), requirements: new Map() };
  if (config.evm?.settlerKey) {
    schemes.facilitator.register(
      config.evm.network as PaymentRequirements['network'],
      new ExactEvmScheme(
        evmSigner(config.evm, config.evm.settlerKey, config.verifyTimeoutMs, options.settlerCoordination),
        options.pendingSettlementStore ? { pendingSettlementStore: options.pendingSettlementStore } : {},
      ),
    );
    schemes.requirements.set(config.evm.network, evmRequirements(config.evm, config.maxTimeoutSeconds));
  }
  extra?.(schemes);
  return schemes;
};

interface Settlement {
  payload: PaymentPayload;
  requirements: PaymentRequirements;
}

export const x402Rail = (schemes: X402Schemes, options: { evmMinPriceAtomic: bigint | null }): PaymentRail => ({
  name: 'x402-exact',
  accepts: (proof: Proof) => proof.kind === 'x402',
  async verify(proof: Proof, call: PaymentCall): Promise<Verdict> {
    if (proof.kind !== 'x402') return refuse('PAYMENT_INVALID');
    let payload: PaymentPayload;
    try {
      payload = decodePaymentSignatureHeader(proof.header);
    } catch {
      return refuse('PAYMENT_INVALID', 'The x402 payment header is not base64 JSON of a PaymentPayload.');
    }
    const network = payload.accepted?.network;
    if (typeof network !== 'string') return refuse('PAYMENT_INVALID');
    const requirementsFor = schemes.requirements.get(network);
    if (!requirementsFor) return refuse('PAYMENT_NETWORK_UNSUPPORTED');
    if (
      network.startsWith('eip155:') &&
      options.evmMinPriceAtomic !== null &&
      call.priceAtomic < options.evmMinPriceAtomic
    ) {
      return refuse('PAYMENT_ROUTE_MINIMUM_NOT_MET');
    }
    const base = requirementsFor(call.priceAtomic);
    // A memo the client copied from our 402 (the payment_request_id) is part of what it signed; keep it.
    const memo = (payload.accepted.extra as Record<string, unknown> | undefined)?.['memo'];
    const requirements =
      typeof memo === 'string' ? Object.assign({}, base, { extra: Object.assign({}, base.extra, { memo }) }) : base;
    // The payment step bounds this call (past its deadline the buyer is told to retry with the same payment).
    const scope: { failure?: VerifierUnavailableError } = {};
    let result: Awaited<ReturnType<x402Facilitator['verify']>>;
    try {
      result = await rpcTrouble.run(scope, () => schemes.facilitator.verify(payload, requirements));
    } catch (error) {
      if (scope.failure) throw scope.failure;
      // A payload the scheme cannot even read is the client's mistake, not a reason to retry.
      return refuse('PAYMENT_INVALID', `The x402 payment does not verify: ${(error as Error).message}.`);
    }
    // A verification during which the chain did not answer is no verdict on the payment, whatever it concluded.
    if (scope.failure) throw scope.failure;
    if (!result.isValid) {
      const reason = result.invalidReason ?? 'invalid';
      if (reason.includes('amount') || reason.includes('value')) return refuse('PAYMENT_UNDERPAID', reason);
      if (reason.includes('recipient') || reason.includes('pay_to')) return refuse('PAYMENT_WRONG_RECIPIENT', reason);
      if (reason.includes('asset')) return refuse('PAYMENT_WRONG_ASSET', reason);
      return refuse('PAYMENT_INVALID', `The x402 payment does not verify: ${reason}.`);
    }
    return {
      ok: true,
      payment: {
        rail: 'x402-exact',
        network,
        payer: result.payer ?? 'unknown',
        amountAtomic: call.priceAtomic.toString(),
        asset: requirements.asset,
        tx: null,
        proofIds: [x402ProofId(payload)],
        settlement: { payload, requirements } satisfies Settlement,
      },
    };
  },
  async settle(payment): Promise<SettleResult> {
    const { payload, requirements } = payment.settlement as Settlement;
    const scope: { failure?: VerifierUnavailableError } = {};
    const result = await rpcTrouble.run(scope, () => schemes.facilitator.settle(payload, requirements));
    if (result.success) return { ok: true, tx: result.transaction ?? null };
    if (result.errorReason?.includes('pending')) return { ok: false, pending: true, tx: result.transaction ?? null };
    // Not broadcast because the chain (or the settler's coordination) did not answer: retry with the same payment.
    if (scope.failure && !result.transaction) return { ok: false, tx: null, unavailable: scope.failure };
    return { ok: false, tx: result.transaction ?? null, message: result.errorReason ?? 'settlement failed' };
  },
});

/** The x402 `accepts` entries this gateway can settle (a subset of all offered options). */
export const x402Networks = (schemes: X402Schemes, accepts: Accept[]): Accept[] =>
  accepts.filter((a) => schemes.requirements.has(a.network));

/**
 * Registers the Solana `exact` scheme with the gateway's fee payer (the gateway settles SVM payments itself). Its
 * settlement counts once the transaction reaches the rail's commitment (`CROCHET_SOLANA_COMMITMENT`), waited for up
 * to `confirmationTimeoutMs`; past that it is pending, remembered in `pendingSettlementStore` — shared by all
 * proxies, so that the buyer's retry on any of them waits for the same transaction instead of sending another.
 */
export const registerSvmScheme = async (
  schemes: X402Schemes,
  solana: NonNullable<PaymentsConfig['solana']>,
  maxTimeoutSeconds: number,
  options: { confirmationTimeoutMs?: number; pendingSettlementStore?: PendingSettlementStore } = {},
): Promise<string | undefined> => {
  if (!solana.feePayerKey) return undefined;
  const kit = await import('@solana/kit');
  const { toFacilitatorSvmSigner, TransactionOnchainFailureError } = await import('@x402/svm');
  const { ExactSvmScheme } = await import('@x402/svm/exact/facilitator');
  const signer = await kit.createKeyPairSignerFromBytes(kit.getBase58Encoder().encode(solana.feePayerKey));
  // The facilitator's RPC, watched: a transport failure during a payment is noted for the rail (see rpcTrouble).
  const http = kit.createDefaultRpcTransport({ url: solana.rpcUrl });
  const verifier = `Solana RPC (${solana.network})`;
  const watched = (async (request: Parameters<typeof http>[0]) => {
    try {
      return await http(request);
    } catch (error) {
      noteRpcFailure(verifier, error);
      throw error;
    }
  }) as typeof http;
  const rpc = kit.createSolanaRpcFromTransport(watched);
  const base = toFacilitatorSvmSigner(signer, { [solana.network]: rpc } as never);
  const confirmationTimeoutMs = options.confirmationTimeoutMs ?? 30_000;
  const reached = (status: string | null | undefined) =>
    status === 'finalized' || (solana.commitment === 'confirmed' && status === 'confirmed');
  const facilitatorSigner = {
    ...base,
    // As x402's own wait (getSignatureStatuses, failed transactions are final), but up to the rail's commitment.
    confirmTransaction: async (signature: string) => {
      const giveUpAt = Date.now() + confirmationTimeoutMs;
      for (;;) {
        const { value } = await rpc.getSignatureStatuses([signature as never]).send();
        const status = value[0];
        const landed = status?.confirmationStatus === 'confirmed' || status?.confirmationStatus === 'finalized';
        if (landed && status?.err) {
          const reason = JSON.stringify(status.err, (_, v) => (typeof v === 'bigint' ? v.toString() : v));
          throw new TransactionOnchainFailureError(`Transaction failed onchain: ${reason}`);
        }
        if (reached(status?.confirmationStatus)) return;
        if (Date.now() >= giveUpAt) {
          throw new Error(`Transaction not ${solana.commitment} within ${confirmationTimeoutMs} ms`);
        }
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    },
  };
  schemes.facilitator.register(
    solana.network as PaymentRequirements['network'],
    new ExactSvmScheme(
      facilitatorSigner,
      undefined,
      options.pendingSettlementStore ? { pendingSettlementStore: options.pendingSettlementStore } : {},
    ),
  );
  schemes.requirements.set(solana.network, (priceAtomic: bigint) => ({
    scheme: 'exact',
    network: solana.network as PaymentRequirements['network'],
    asset: solana.usdcMint,
    amount: priceAtomic.toString(),
    payTo: solana.payTo,
    maxTimeoutSeconds,
    extra: { feePayer: signer.address, decimals: 6 },
  }));
  return signer.address;
};
