import { createHash } from 'node:crypto';
import { type PaymentsConfig, SOLANA_MEMO_PROGRAMS, testFunds } from '@crochet/plugins';
import type { ControlPlaneConfig } from '../config.js';

/**
 * The running server's real settings, for the documents (issue 14): proof-of-work difficulty and what it costs,
 * the fee, whether development endpoints are accepted, and — when the rails point at development chains — where
 * test funds and the chains' RPC URLs are. Rendered into llms.txt, the skill and agent-protocol.json.
 */
export interface ServerSettings {
  powDifficulty: number;
  /** How long a challenge stays valid (`CROCHET_POW_TTL_SECONDS`). */
  powTtlSeconds: number;
  /** SHA-256 proof-of-work attempts per second this server measured (node:crypto, one core, best of three runs). */
  powHashesPerSecond: number;
  feeBps: number;
  allowPrivateEndpoints: boolean;
  /** `CROCHET_HISTORY_RETENTION_DAYS`: how long gateway-request history is kept (0: all of it). */
  historyRetentionDays: number;
  payments: Pick<PaymentsConfig, 'solana' | 'evm' | 'devFaucetUrl'>;
}

/** Attempts per second of the loop the documents show (createHash per nonce), for about `ms` milliseconds. */
const hashRate = (ms: number): number => {
  const started = process.hrtime.bigint();
  const budgetNs = BigInt(ms) * 1_000_000n;
  let n = 0;
  let elapsedNs = 0n;
  while (elapsedNs < budgetNs) {
    for (let i = 0; i < 2_000; i++, n++) createHash('sha256').update(`0123456789abcdef0123456789abcdef${n}`).digest();
    elapsedNs = process.hrtime.bigint() - started;
  }
  return Math.round((n * 1e9) / Number(elapsedNs));
};

/**
 * This machine's proof-of-work speed: after a warm-up (the first runs are not yet optimised), the best of three
 * 0.1 s runs — the uncontended rate; a busy machine, or a solver in another language, differs and the documents say so.
 */
export const measurePowHashesPerSecond = (): number => {
  hashRate(50);
  return Math.max(hashRate(100), hashRate(100), hashRate(100));
};

export const serverSettings = (config: ControlPlaneConfig, powHashesPerSecond: number): ServerSettings => ({
  powDifficulty: config.powDifficulty,
  powTtlSeconds: config.powTtlSeconds,
  powHashesPerSecond,
  feeBps: config.feeBps,
  allowPrivateEndpoints: config.allowPrivateEndpoints,
  historyRetentionDays: config.historyRetentionDays,
  payments: config.payments,
});

/** Expected attempts to find a nonce (the mean of a geometric distribution) and the 95th percentile (≈ 3× the mean). */
const powAttempts = (difficulty: number) => ({ mean: 2 ** difficulty, p95: Math.ceil(3 * 2 ** difficulty) });

const seconds = (attempts: number, rate: number): string => {
  const s = attempts / Math.max(1, rate);
  return s < 0.1 ? 'under 0.1 s' : s < 10 ? `about ${s.toFixed(1)} s` : `about ${Math.round(s)} s`;
};

const percent = (bps: number): string => `${(bps / 100).toFixed(2).replace(/\.?0+$/, '')} %`;

/** Plain-text lines stating the settings, for llms.txt and the skill. */
export const settingsText = (s: ServerSettings): string[] => {
  const { mean, p95 } = powAttempts(s.powDifficulty);
  return [
    'This server’s settings (read from its configuration when it started):',
    `- Proof of work: difficulty ${s.powDifficulty} = ${mean.toLocaleString('en-US')} sha256 attempts on average,`,
    `  ${p95.toLocaleString('en-US')} in 95 % of challenges. This server measured ${s.powHashesPerSecond.toLocaleString('en-US')} attempts/s with the`,
    `  JavaScript loop below (node:crypto, one core, best of three runs at start): ${seconds(mean, s.powHashesPerSecond)} on average,`,
    `  up to ${seconds(p95, s.powHashesPerSecond)}. Expect more on a busy machine; a challenge is valid for ${s.powTtlSeconds} s.`,
    `- Marketplace fee: ${s.feeBps} bps (${percent(s.feeBps)}) of each paid call, kept from the seller's credit`,
    '  (the buyer pays the listed price; seller credit = price − floor(price × fee_bps / 10000)). A listing may carry',
    '  its own fee_bps. GET /api/v1/me shows fee_bps.',
    s.allowPrivateEndpoints
      ? '- Seller endpoints: DEVELOPMENT MODE (CROCHET_ALLOW_PRIVATE_ENDPOINTS=1): http and loopback/private addresses are\n' +
        '  accepted, e.g. private_endpoint_url "http://127.0.0.1:3000/run". In production only public https URLs are.'
      : '- Seller endpoints: private_endpoint_url must be https and resolve to a public address (no loopback,\n' +
        '  private, link-local or metadata addresses), checked when saved and at every connect.',
    s.historyRetentionDays > 0
      ? `- Call history (GET /api/v1/gateway-requests, receipts by id, reviews of a call): kept at least ${s.historyRetentionDays} days,\n` +
        '  then dropped a whole month at a time (never a call whose money is not settled). Review a call before then;\n' +
        '  the ledger (GET /api/v1/ledger) is kept for good.'
      : '- Call history (GET /api/v1/gateway-requests): kept for good on this server, as is the ledger.',
  ];
};

/** Where test funds come from, or nothing outside development. For llms.txt and the skill. */
export const testFundsText = (s: ServerSettings): string[] => {
  const { solana, evm, devFaucetUrl } = s.payments;
  if (!devFaucetUrl) return [];
  const lines = [
    'Test funds (this server runs on local development chains; nothing here has value):',
    `- Faucet: ${devFaucetUrl} — GET ${devFaucetUrl}/ describes it. Answers {"data": …} or the error envelope above.`,
  ];
  if (solana) {
    lines.push(
      `- Solana (${solana.network}): POST ${devFaucetUrl}/solana {"address": "<base58 owner>", "sol": 1,`,
      '  "usdc_atomic": "1000000"} (sol: fees for a direct transfer; x402 needs none — the gateway pays the fee).',
      `  RPC URL: ${solana.publicRpcUrl ?? '(not published)'} — a LOCAL chain that reuses public devnet's CAIP-2 id and USDC mint`,
      `  (${solana.usdcMint}) because x402 knows no other test network: send nothing to api.devnet.solana.com.`,
      '  The 402 says so too: accepts[0].extra.rpcUrl and payment.direct.networks[0].rpc_url.',
    );
  }
  if (evm) {
    lines.push(
      `- EVM (${evm.network}, chain id ${evm.chainId}): POST ${devFaucetUrl}/evm {"address": "0x…", "eth": 1,`,
      `  "usdc_atomic": "1000000"}. RPC URL: ${evm.publicRpcUrl ?? '(not published)'}; test USDC ${evm.usdcAddress}.`,
    );
  }
  lines.push(
    '- Unknown fields are refused (400 VALIDATION_FAILED); usdc_atomic is a decimal string of atomic units (6 decimals).',
  );
  return lines;
};

/** The x402 Solana client, pointed at the RPC the 402 names (`@x402/svm` otherwise uses public clusters). */
export const X402_SVM_EXAMPLE = [
  'x402 on Solana with @x402/fetch and @x402/svm (the RPC URL comes from the 402: accepts[i].extra.rpcUrl where',
  'the gateway publishes one; without it @x402/svm picks the public cluster of the network id):',
  '  import { wrapFetchWithPayment, x402Client } from "@x402/fetch";',
  '  import { ExactSvmScheme } from "@x402/svm/exact/client";',
  '  const required = (await (await fetch(gatewayUrl, init)).json()).payment;  // or decode PAYMENT-REQUIRED',
  '  const svm = required.accepts.find((a) => a.network.startsWith("solana:"));',
  '  const client = new x402Client().register(svm.network, new ExactSvmScheme(signer, { rpcUrl: svm.extra.rpcUrl }));',
  '  const paidFetch = wrapFetchWithPayment(fetch, client);',
  '  const answer = await paidFetch(gatewayUrl, init);  // 402 → pay → retry, once',
  '  (signer: a @solana/kit KeyPairSigner holding USDC; it needs no SOL.)',
];

/** Where to pay: what the 402's `payTo` is on each network. */
export const PAY_TO_TEXT = [
  'payTo (accepts[].payTo, direct.networks[].pay_to): the marketplace’s OWNER address on that network.',
  '- Solana: an owner (wallet) address, not a token account. USDC goes to its associated token account for the',
  '  asset mint (ATA: owner + token program + mint), which exists; a transfer whose transaction also creates it',
  '  (CreateAssociatedTokenAccountIdempotent before the TransferChecked) is accepted just the same.',
  '- EVM: the address that receives the USDC (ERC-20 transfer or EIP-3009 transferWithAuthorization `to`).',
];

/**
 * The programs a direct Solana payment uses: USDC (devnet, mainnet and the dev chain's copy) is a classic SPL Token
 * mint, and the memo that names the payment request is an SPL Memo instruction (the gateway reads the v3 and the
 * legacy v1 program, top level or inner).
 */
export const SOLANA_TOKEN_PROGRAM = 'TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA';
const [SOLANA_MEMO_PROGRAM, SOLANA_LEGACY_MEMO_PROGRAM] = SOLANA_MEMO_PROGRAMS;

/** A direct Solana USDC transfer (X-Crochet-Payment-Tx), instruction by instruction. */
export const SOLANA_TRANSFER_TEXT = [
  'A direct Solana transfer (X-Crochet-Payment-Tx), step by step; d = the solana: entry of payment.direct.networks:',
  '1. One transaction, signed by your wallet as fee payer (it needs a little SOL for the fee, 0.000005 per signature):',
  '   - optional: CreateAssociatedTokenAccountIdempotent for ATA(d.pay_to, d.asset) (it exists; harmless);',
  '   - TransferChecked from ATA(you, d.asset) to ATA(d.pay_to, d.asset): mint d.asset, amount payment.amount_atomic,',
  '     decimals 6, authority you;',
  `   - an SPL Memo instruction: program ${SOLANA_MEMO_PROGRAM}`,
  `     (or the legacy ${SOLANA_LEGACY_MEMO_PROGRAM}), no accounts,`,
  '     data = the UTF-8 bytes of d.memo (the payment_request_id).',
  `   USDC is a classic SPL Token mint (token program ${SOLANA_TOKEN_PROGRAM}):`,
  '   ATA = findAssociatedTokenPda({ owner, mint: d.asset, tokenProgram: TOKEN_PROGRAM_ADDRESS }) (@solana-program/token).',
  '2. Send it to d.rpc_url (where the 402 names one; otherwise your RPC for d.network) and wait until',
  '   getSignatureStatuses reports it confirmed.',
  '3. Retry the same call with X-Crochet-Payment-Tx: <d.network>:<signature>. 402 PAYMENT_UNCONFIRMED: retry with the',
  '   same header after Retry-After.',
];

/** The same, as data, for agent-protocol.json. */
export const settingsJson = (s: ServerSettings) => {
  const { mean, p95 } = powAttempts(s.powDifficulty);
  return {
    proof_of_work: {
      difficulty: s.powDifficulty,
      challenge_ttl_seconds: s.powTtlSeconds,
      expected_attempts: mean,
      attempts_p95: p95,
      measured_attempts_per_second: s.powHashesPerSecond,
      expected_seconds: Number((mean / Math.max(1, s.powHashesPerSecond)).toFixed(2)),
    },
    fee_bps: s.feeBps,
    dev_endpoints_allowed: s.allowPrivateEndpoints,
    /** Days of gateway-request history kept (whole months past it are dropped); null: kept for good. */
    history_retention_days: s.historyRetentionDays > 0 ? s.historyRetentionDays : null,
    networks: [
      ...(s.payments.solana
        ? [
            {
              network: s.payments.solana.network,
              asset: s.payments.solana.usdcMint,
              pay_to: s.payments.solana.payTo,
              pay_to_kind: 'owner',
              rpc_url: s.payments.solana.publicRpcUrl ?? null,
              token_program: SOLANA_TOKEN_PROGRAM,
              memo_programs: SOLANA_MEMO_PROGRAMS,
            },
          ]
        : []),
      ...(s.payments.evm
        ? [
            {
              network: s.payments.evm.network,
              asset: s.payments.evm.usdcAddress,
              pay_to: s.payments.evm.payTo,
              pay_to_kind: 'owner',
              rpc_url: s.payments.evm.publicRpcUrl ?? null,
            },
          ]
        : []),
    ],
    test_funds: s.payments.devFaucetUrl ? testFunds(s.payments) : null,
  };
};
