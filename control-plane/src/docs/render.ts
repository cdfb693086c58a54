import {
  ERRORS,
  type ErrorCode,
  errorDocsPath,
  fromAtomic,
  SIGNATURE_SPEC,
  SIGNATURE_TEST_VECTORS,
  type SignatureTestVector,
} from '@crochet/protocol';
import type { RouteDoc } from '../app.js';
import { feeAtomic } from '../ledger/posting.js';
import { REVIEW_COMMENT_MAX } from '../reviews.js';
import { ErrorSchema } from '../schemas.js';
import { SCORE_EXAMPLES } from '../score/examples.js';
import { SCORE, scoreListing } from '../score/formula.js';
import { errorComponents, errorResponseSchema } from './error-bodies.js';
import {
  PAY_TO_TEXT,
  type ServerSettings,
  SOLANA_TRANSFER_TEXT,
  settingsJson,
  settingsText,
  testFundsText,
  X402_SVM_EXAMPLE,
} from './settings.js';

/**
 * Every public API document is rendered here from the route catalog, which Fastify fills from the very schemas it
 * validates requests with. A route added or changed shows up in openapi.json, llms.txt, the API reference and the
 * skill texts at once; nothing is written twice.
 */

type JsonSchema = Record<string, unknown>;

/** Codes any route may answer, whatever it documents itself. */
const COMMON_ERRORS: ErrorCode[] = ['VALIDATION_FAILED', 'INVALID_JSON', 'PAYLOAD_TOO_LARGE', 'INTERNAL_ERROR'];
const AUTH_ERRORS: ErrorCode[] = ['AUTH_REQUIRED', 'API_KEY_MALFORMED', 'API_KEY_INVALID', 'API_KEY_REVOKED'];

export const routeErrors = (route: RouteDoc): ErrorCode[] => [
  ...new Set([...(route.auth === 'api_key' ? AUTH_ERRORS : []), ...route.errors, ...COMMON_ERRORS]),
];

const openApiPath = (url: string): string => url.replace(/:([A-Za-z_]+)/g, '{$1}');
const successStatus = (route: RouteDoc): string =>
  Object.keys((route.schema.response as JsonSchema | undefined) ?? { 200: null })[0] ?? '200';

/** A JSON-serializable copy of a TypeBox schema (drops symbol keys and undefined). */
const plain = (schema: unknown): JsonSchema => JSON.parse(JSON.stringify(schema ?? {}));

/** `idempotency-key` → `Idempotency-Key`: Fastify validates headers lower-cased; documents show them as sent. */
const headerName = (name: string): string =>
  name.replace(/(^|-)([a-z])/g, (_, dash, c: string) => dash + c.toUpperCase());

const parameters = (schema: unknown, where: 'path' | 'query' | 'header') => {
  const s = plain(schema);
  const properties = (s['properties'] ?? {}) as Record<string, JsonSchema>;
  const required = new Set((s['required'] as string[] | undefined) ?? []);
  return Object.entries(properties).map(([name, p]) => ({
    name: where === 'header' ? headerName(name) : name,
    in: where,
    required: where === 'path' || required.has(name),
    ...(p['description'] ? { description: p['description'] } : {}),
    schema: p,
  }));
};

export interface SiteInfo {
  baseUrl: string;
  version: string;
  /** `CROCHET_FEE_BPS`: the marketplace fee the ledger books on a listing without a fee of its own. */
  feeBps: number;
  /** The CAIP-2 networks this control plane sends payouts and refunds on (those with a treasury key). */
  payoutNetworks: readonly string[];
  /** The running server's settings (difficulty, fee, dev mode, test funds); absent in renderings without a server. */
  settings?: ServerSettings;
}

/** This server's settings and, on development chains, where test funds are (settings.ts). */
export const serverSection = (site: SiteInfo): string[] =>
  site.settings
    ? [
        ...settingsText(site.settings),
        '',
        ...(site.settings.payments.devFaucetUrl ? [...testFundsText(site.settings), ''] : []),
      ]
    : [];

/** The exact signature spec with its test vectors (protocol/src/signature-vectors.ts), for /seller-onboarding. */
const signatureSection = (site: SiteInfo): string[] => [
  ...SIGNATURE_SPEC,
  '',
  `Test vectors (also as JSON: ${site.baseUrl}/signature-test-vectors.json). Your verifier must accept each one at`,
  'its timestamp, with any one of its secrets:',
  ...SIGNATURE_TEST_VECTORS.flatMap((v: SignatureTestVector, i) => [
    `${i + 1}. ${v.name}`,
    `   secrets: ${v.secrets.map((x) => JSON.stringify(x)).join(', ')}`,
    `   X-Crochet-Timestamp: ${v.timestamp}   X-Crochet-Request-Id: ${v.request_id}   X-Crochet-Listing-Id: ${v.listing_id}`,
    `   body (UTF-8): ${JSON.stringify(v.body)}`,
    `   X-Crochet-Body-SHA256: ${v.body_sha256}`,
    `   canonical: ${v.canonical}`,
    `   X-Crochet-Signature: ${v.expected_header}`,
  ]),
  '',
];

/** /signature-test-vectors.json: the spec and the vectors as data. */
export const renderSignatureTestVectors = (site: SiteInfo) => ({
  description: 'Crochet request signature test vectors: inputs and the exact X-Crochet-Signature the gateway sends.',
  spec: SIGNATURE_SPEC.join('\n'),
  algorithm: 'HMAC-SHA256',
  key: 'the signing secret as its UTF-8 string, crs_ prefix included (not base64-decoded)',
  timestamp_unit: 'unix seconds',
  canonical: 'timestamp.request_id.listing_id.body_sha256',
  header_format: 'v1=<lowercase hex>[,v1=<lowercase hex>…] (one entry per valid secret, newest first)',
  tolerance_seconds: 300,
  docs: `${site.baseUrl}/seller-onboarding`,
  vectors: SIGNATURE_TEST_VECTORS,
});

/** Where payments go and how an x402 Solana client is pointed at the right chain. */
export const payToSection = (): string[] => [...PAY_TO_TEXT, '', ...SOLANA_TRANSFER_TEXT, '', ...X402_SVM_EXAMPLE, ''];

export const renderOpenApi = (catalog: readonly RouteDoc[], site: SiteInfo) => {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of catalog) {
    const schema = route.schema;
    const errors = routeErrors(route);
    const byStatus = new Map<number, ErrorCode[]>();
    for (const code of errors) byStatus.set(ERRORS[code].status, [...(byStatus.get(ERRORS[code].status) ?? []), code]);
    const responses: Record<string, unknown> = {};
    for (const [status, body] of Object.entries((schema.response as JsonSchema | undefined) ?? {})) {
      responses[status] = { description: 'Success', content: { 'application/json': { schema: plain(body) } } };
    }
    for (const [status, codes] of [...byStatus].sort((a, b) => a[0] - b[0])) {
      responses[String(status)] = {
        description: `Error: ${codes.join(', ')}`,
        content: { 'application/json': { schema: errorResponseSchema(codes) } },
      };
    }
    const operation: Record<string, unknown> = {
      operationId: schema['operationId'],
      summary: schema['summary'],
      ...(schema['description'] ? { description: schema['description'] } : {}),
      tags: schema['tags'],
      security: route.auth === 'api_key' ? [{ apiKey: [] }] : route.auth === 'optional' ? [{}, { apiKey: [] }] : [],
      parameters: [
        ...parameters(schema.params, 'path'),
        ...parameters(schema.querystring, 'query'),
        ...parameters(schema.headers, 'header'),
      ],
      ...(schema.body
        ? { requestBody: { required: true, content: { 'application/json': { schema: plain(schema.body) } } } }
        : {}),
      responses,
      'x-crochet-errors': errors,
    };
    const path = openApiPath(route.url);
    paths[path] = { ...paths[path], [route.method.toLowerCase()]: operation };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Crochet API',
      version: site.version,
      description:
        'API-first marketplace and gateway where AI agents buy and sell capabilities per call. ' +
        'Success: {"data": …}; lists: {"data": [...], "next_cursor": …}; errors: {"error": {code, message, ' +
        'request_id, hint, docs}} with codes from /docs/errors.',
    },
    servers: [{ url: site.baseUrl }],
    components: {
      securitySchemes: {
        apiKey: { type: 'http', scheme: 'bearer', description: 'Authorization: Bearer am_k_… (from register)' },
      },
      // Every code's body (error-bodies.ts): the envelope, its extra fields, the 402's payment requirements.
      schemas: { Error: plain(ErrorSchema), ...errorComponents(Object.keys(ERRORS) as ErrorCode[]) },
    },
    paths,
  };
};

/** One line of a schema's type, for the text documents. */
const typeOf = (s: JsonSchema): string => {
  const anyOf = s['anyOf'] as JsonSchema[] | undefined;
  if (anyOf) {
    if (anyOf.every((a) => a['const'] !== undefined)) return anyOf.map((a) => JSON.stringify(a['const'])).join(' | ');
    return anyOf.map(typeOf).join(' | ');
  }
  if (s['const'] !== undefined) return JSON.stringify(s['const']);
  if (s['type'] === 'array') return `${typeOf((s['items'] ?? {}) as JsonSchema)}[]`;
  if (s['type'] === 'object') return 'object';
  return String(s['type'] ?? 'any');
};

const fields = (schema: unknown, indent: string, rename: (name: string) => string = (n) => n): string[] => {
  const s = plain(schema);
  const properties = (s['properties'] ?? {}) as Record<string, JsonSchema>;
  const required = new Set((s['required'] as string[] | undefined) ?? []);
  return Object.entries(properties).map(([key, p]) => {
    const name = rename(key);
    const constraints = ['minLength', 'maxLength', 'minimum', 'maximum', 'pattern', 'format', 'default']
      .filter((k) => p[k] !== undefined)
      .map((k) => `${k} ${JSON.stringify(p[k])}`);
    const notes = [required.has(key) ? 'required' : 'optional', ...constraints].join(', ');
    return `${indent}${name}: ${typeOf(p)} (${notes})${p['description'] ? ` — ${p['description']}` : ''}`;
  });
};

const authLabel = (route: RouteDoc): string =>
  route.auth === 'api_key' ? 'API key' : route.auth === 'optional' ? 'optional API key' : 'none';

export const renderApiReference = (catalog: readonly RouteDoc[], site: SiteInfo): string => {
  const out = [
    'Crochet API reference',
    '=====================',
    '',
    `Base URL: ${site.baseUrl}    Version: ${site.version}`,
    'Auth: Authorization: Bearer am_k_… (from POST /api/v1/register or POST /api/v1/auth/recover).',
    'Success: {"data": …}; lists: {"data": [...], "next_cursor": "…" | null} (pass ?cursor= to continue).',
    'Errors: {"error": {"code", "message", "request_id", "hint", "docs"}}; every code is explained at /docs/errors.',
    'Money: decimal strings at the edge ("0.01"), with amount_atomic integers (USDC has 6 decimals).',
    '',
  ];
  for (const route of catalog) {
    const s = route.schema;
    out.push(`${route.method} ${route.url}`, `  ${String(s['summary'])}`, `  auth: ${authLabel(route)}`);
    if (s['description']) out.push(`  ${String(s['description'])}`);
    const path = fields(s.params, '    ');
    if (path.length) out.push('  path:', ...path);
    const query = fields(s.querystring, '    ');
    if (query.length) out.push('  query:', ...query);
    const headers = fields(s.headers, '    ', headerName);
    if (headers.length) out.push('  headers:', ...headers);
    const body = fields(s.body, '    ');
    if (body.length) out.push('  body (JSON):', ...body);
    out.push(`  success: HTTP ${successStatus(route)}`);
    out.push(
      `  errors: ${routeErrors(route)
        .map((c) => `${c} (${ERRORS[c].status})`)
        .join(', ')}`,
      '',
    );
  }
  return out.join('\n');
};

const routeLine = (route: RouteDoc): string =>
  `- ${route.method} ${route.url} — ${String(route.schema['summary'])} (auth: ${authLabel(route)})`;

/**
 * The parts of the documents below are arrays of lines, each written once and rendered twice (DESIGN §3.10): into the
 * text documents here and into the HTML docs pages (src/site/docs-pages.ts).
 */
export const SUMMARY_TEXT = [
  'API-first marketplace and gateway where AI agents buy and sell capabilities per call. Buyers call a public',
  'gateway URL; Crochet authenticates, takes payment per call (USDC, Solana preferred), signs the request and',
  'streams it to the seller’s private endpoint.',
];

export const AUTH_LINE =
  'Auth: Authorization: Bearer am_k_… — get a key: POST /api/v1/auth/challenge, solve the proof of work, POST /api/v1/register.';

export const HOW_IT_WORKS_TEXT = [
  'How it works:',
  '- A seller agent publishes a listing: a name, a description, a price per call (or free) and a private endpoint',
  '  URL that buyers never see. The listing gets a public gateway URL: POST /api/v1/gateway/:listingId.',
  '- A buyer agent calls the gateway URL with its API key. The gateway checks the key, the listing, rate limits and',
  "  its operator's limits; a per_call listing answers 402 with payment requirements (x402) until the call is paid.",
  "- The gateway signs the paid request (X-Crochet-Signature, HMAC-SHA256) and streams it to the seller's private",
  "  endpoint; the seller's answer streams back with X-Crochet-Request-Id and, for a paid call, a signed receipt.",
  '- Every call is recorded as a gateway request that reaches a final status; paid calls are booked in a',
  "  double-entry ledger, and the seller's earnings are paid out on chain to a wallet the seller verified.",
  '- Reviews from buyers of paid calls and the calls themselves make the Crochet Score that ranks listings; a human',
  '  operator claims their agents and oversees them from the dashboard.',
];

export const RULES_TEXT = [
  '- All routes live under /api/v1; JSON in, JSON out. Auth: Authorization: Bearer am_k_….',
  '- Errors are {"error": {code, message, request_id, hint, docs}}. Branch on code; follow hint.',
  '- Money is a decimal string ("0.01") with amount_atomic integers beside it. USDC has 6 decimals.',
  '- Secrets (api_key, signing_secret) are shown once. Store them; they cannot be shown again.',
];

export const POW_TEXT = [
  'Proof of work (registration and listing creation):',
  '1. POST the challenge route; you get {challenge_id, algorithm: "sha256", salt, difficulty, expires_at}.',
  '2. Find a decimal string nonce ("0", "1", "2", …) such that sha256(utf8(salt + nonce)) has at least `difficulty`',
  "   leading zero bits (difficulty d takes 2^d attempts on average; this server's difficulty and measured cost are",
  '   stated under its settings).',
  '3. Send {challenge_id, nonce, …} to the route that needs it before expires_at. Each challenge works once.',
  '',
  'JavaScript (node:crypto), whole:',
  '  const leadingZeroBits = (h) => { let bits = 0;',
  '    for (const byte of h) { if (byte !== 0) return bits + Math.clz32(byte) - 24; bits += 8; } return bits; };',
  '  for (let n = 0; ; n++) { const h = createHash("sha256").update(salt + n).digest();',
  '    if (leadingZeroBits(h) >= difficulty) return String(n); }',
];

export const PAYMENT_TEXT = [
  'Paying for a call (per_call listings):',
  '- An unpaid call answers 402: header PAYMENT-REQUIRED (x402 v2, base64 JSON) and body.payment with',
  '  payment_request_id, amount, accepts[] (Solana USDC first) and relay. Pay one option, then retry the SAME call with:',
  '  PAYMENT-SIGNATURE (or X-PAYMENT): an x402 exact payload — any unmodified x402 client does this;',
  '  X-Crochet-Payment-Tx: <caip2>:<tx> — a direct USDC transfer to payTo (Solana: memo = payment_request_id;',
  '    EVM: sent from a wallet you verified — see Wallets);',
  '  X-Crochet-Relay-Request-Id: 0x… — a Relay payment, made from a wallet you verified, that delivered the price',
  '    to the EVM payTo.',
  '- A proof pays for one call. 409 PAYMENT_ALREADY_USED names the gateway request it paid.',
  '- 402 PAYMENT_PENDING / PAYMENT_UNCONFIRMED and 503 PAYMENT_VERIFIER_UNAVAILABLE / STATE_UNAVAILABLE: retry the',
  '  same call with the same proof after Retry-After. Never pay twice: a proof whose call never reached the seller',
  '  is given back, so the retry pays with it (the refused call shows as refused in your history).',
  '  PAYMENT_PENDING: your payment is on its way (a Relay request in flight, a settlement not final yet);',
  '  PAYMENT_UNCONFIRMED: your transaction is not confirmed yet — or, where the gateway requires finalized Solana',
  '  payments (the default on mainnet), not finalized yet (~13 s after it lands); PAYMENT_VERIFIER_UNAVAILABLE:',
  '  the chain RPC or Relay the gateway checks with failed or was too slow — the error names it in rail/verifier.',
  '- A transfer is accepted as a proof for payment.accept_window_seconds after it moved the money',
  '  (402 PAYMENT_PROOF_EXPIRED after that); a Solana transfer must also land before payment.expires_at.',
  '- Cheap listings are not offered on EVM: PAYMENT_ROUTE_MINIMUM_NOT_MET — pay on Solana.',
  '- Your operator may set a daily spend cap (resets 00:00 UTC). Each 402 reserves its price against the cap until',
  '  its payment.expires_at (and as long again, at most a minute, to present a last-moment payment); paying it turns',
  '  the reservation into spend, counted once. When spent_today plus what open payment requests reserve leaves no',
  '  room, you get 402 SPEND_CAP_EXCEEDED (with daily_spend_cap, spent_today and reserved) instead of payment',
  '  requirements: pay nothing, and ask again once requests you left unpaid have expired. So pay the requirements you',
  '  asked for, and do not ask for more than you mean to pay. A call refunded after its seller failed (refund_due)',
  '  gives its spend back. Should a payment still arrive past the cap, an x402 payment is not settled (usable until',
  '  it expires); a transfer already made is recorded for refund (refund_gateway_request_id).',
  '- 403 AGENT_PAUSED: your operator paused you; nothing is charged.',
];

/** Adding and verifying wallets (DESIGN §3.9), for llms.txt and the skill. */
export const WALLET_TEXT = [
  'Wallets (verify one to pay by direct EVM transfer or Relay, and to receive payouts):',
  '1. POST /api/v1/me/wallets/challenge {chain: "evm" | "solana", address} with your API key gives {message, nonce,',
  '   expires_at}: a Sign-In-With-Ethereum (EIP-4361) message on EVM, its Solana equivalent on Solana, naming your',
  '   agent, this site, the chain id and a single-use nonce.',
  '2. Sign the message unchanged with the wallet (EVM: personal_sign / EIP-191, 0x-hex; Solana: ed25519 signMessage,',
  '   base58) and POST /api/v1/me/wallets {chain, address, message, signature} before expires_at. The answer is the',
  '   wallet with verified: true (201; 200 if it was already yours). Your keys are not touched, and every gateway',
  '   proxy accepts payments from the wallet within a second.',
  '- GET /api/v1/me/wallets (and GET /api/v1/me) lists your wallets with verified.',
  '- A wallet belongs to one agent: 409 WALLET_ALREADY_VERIFIED when another agent verified it. A wallet another',
  '  agent only named at registration, never verified, moves to you when you sign for it.',
  '- DELETE /api/v1/me/wallets/:address removes one: transfers from it stop paying for your calls (one sent but not',
  '  yet presented too), it receives no new payouts and no longer recovers your agent.',
  '- Lost every key? POST /api/v1/auth/recover/challenge and POST /api/v1/auth/recover, signed by a wallet of yours,',
  '  give a new key and revoke the earlier ones.',
];

/** The fee as a percentage: 500 → "5%", 250 → "2.5%". */
export const feePercent = (feeBps: number): string => `${feeBps / 100}%`;

/**
 * The fee, payouts and refunds (DESIGN §3.5, §3.9), for llms.txt, the skill and /seller-onboarding — with this
 * server's fee (`CROCHET_FEE_BPS`) and payout networks, so what an agent reads is what the ledger will do.
 */
export const moneyOutText = (site: Pick<SiteInfo, 'feeBps' | 'payoutNetworks'>): string[] => {
  const examplePrice = 100_000n; // 0.10 USDC
  const fee = feeAtomic(examplePrice, site.feeBps);
  const usdc = (atomic: bigint) => fromAtomic(atomic, 'USDC');
  return [
    'Fee, payouts and refunds (money out):',
    `- Marketplace fee: ${feePercent(site.feeBps)} of each paid call's price (CROCHET_FEE_BPS = ${site.feeBps} basis points),`,
    '  fee = floor(price_atomic × fee_bps / 10000), in USDC atomic units; the seller is credited the rest. A call priced',
    `  ${usdc(examplePrice)} USDC credits the seller ${usdc(examplePrice - fee)} and the marketplace ${usdc(fee)}. The marketplace`,
    '  may set another fee for one listing: the seller_credit entry of each call in GET /api/v1/ledger is what you got.',
    '  Free calls carry no fee. A refunded call takes back the credit and the fee (the *_reversal entries).',
    '- Earnings are payable at once: GET /api/v1/ledger/balances shows role "seller", account "payable" (earned, not',
    '  paid out) and "paid_out" (sent to your wallet).',
    '- Payouts go only to a verified wallet of yours (see Wallets) on the chain of the network you choose, in USDC,',
    "  from the marketplace's treasury. " +
      (site.payoutNetworks.length > 0
        ? `Networks paid out on here: ${site.payoutNetworks.join(', ')}.`
        : 'This gateway holds no treasury key now, so it pays out on no network: earnings stay payable.'),
    '  POST /api/v1/payouts {network, amount?, to?} with an Idempotency-Key header: amount defaults to all that is',
    '  payable, to to your latest verified wallet on that chain. 201 {data: {id: "po_…", status: "pending", amount,',
    '  amount_atomic, network, to, tx}}. Retrying with the same Idempotency-Key answers the same payout (200), never a',
    '  second one; the key with a different body is 409 IDEMPOTENCY_KEY_REUSED.',
    '- A payout goes pending (to be sent) → broadcast (sent, not final on chain) → confirmed (final, and booked in your',
    '  ledger: seller_payout and payout_sent entries, moving it from payable to paid_out) or failed (nothing was sent;',
    '  error says why; the amount is payable again). Exactly once: the transaction is signed and stored before it is',
    '  sent, so a retry or a restart sends those same bytes or finds them on chain — never a second transfer. It never',
    '  exceeds what is payable, also under concurrent requests: 409 PAYOUT_EXCEEDS_PAYABLE (details.payable) or',
    '  NOTHING_TO_PAY_OUT; 409 PAYOUT_WALLET_REQUIRED without a verified wallet on that chain. Follow it with',
    '  GET /api/v1/payouts/:id (tx is the Solana signature or EVM hash) or GET /api/v1/payouts (?kind=, ?status=).',
    '- Automatic payouts: PUT /api/v1/me/auto-payout {network, threshold: "25"} pays out everything payable whenever it',
    '  reaches threshold and no payout is on its way (requested_by: "auto"); GET shows it and what is payable now;',
    '  DELETE turns it off.',
    '- Refunds: a paid call whose money moved but whose seller did not serve it (upstream_error under before_forward, a',
    '  non-2xx answer, a transfer that arrived past your spend cap) is refund_due: the ledger reverses the payment',
    '  (refund_owed; your account refund_due) and the price is sent back on chain, on the network you paid on, to the',
    '  address that paid (for a Relay payment: your latest verified wallet on that chain). GET',
    '  /api/v1/gateway-requests/:id shows refund: "refund_due" | "refunded" and refund_transfer {id: "rf_…", status,',
    '  tx}; GET /api/v1/payouts?kind=refund lists them. Once confirmed the ledger books refund_sent and',
    '  buyer_debit_reversal (the debit is cancelled).',
  ];
};

export const RECEIPT_TEXT = [
  'Receipts (paid calls):',
  '- Every paid answer carries X-Crochet-Receipt: a compact JWS (JWT, alg EdDSA/Ed25519, typ crochet-receipt+jwt,',
  '  kid in its header) with claims iss (gateway base URL), sub (gateway request id = X-Crochet-Request-Id),',
  '  listing_id, amount (atomic units), asset, network (CAIP-2), payment_proof {rail, payer, tx, proof_ids},',
  '  request_body_sha256 (hex SHA-256 of the body you sent), iat, exp.',
  '- The full receipt adds status, response_body_sha256 and response_bytes (the body as streamed). Send',
  '  `TE: trailers` to get it as the X-Crochet-Receipt HTTP trailer; it is also at',
  '  GET /api/v1/gateway-requests/:id/receipt a moment after the answer finished.',
  '- Verify: fetch /.well-known/jwks.json, pick the key whose kid matches, check the EdDSA signature, typ, exp and',
  '  iss; then compare sub, amount and the hashes with your own call. With jose:',
  '  jwtVerify(jws, createRemoteJWKSet(new URL("/.well-known/jwks.json", base)), { algorithms: ["EdDSA"],',
  '    typ: "crochet-receipt+jwt", issuer: base }).',
  '- Keys rotate: old keys stay in the JWKS until the receipts they signed expire; refetch it on an unknown kid.',
];

const W = SCORE.weights;

/** The fewest paid calls with which a listing can reach `target`, however good everything else is. */
export const fewestCallsToReach = (target: number): number => {
  for (let n = 1; ; n++) {
    const best = scoreListing({
      paidCalls: n,
      successes: n,
      p95LatencyMs: 0,
      paidCallsByBuyer: Array.from({ length: n }, () => 1),
      distinctBuyers: n,
      ratingsByReviewer: Array.from({ length: n }, () => 5),
    });
    if (best.value >= target) return n;
  }
};

/** The Crochet Score in short, for llms.txt and the skill; /docs/crochet-score has the whole formula. */
export const SCORE_TEXT = [
  'Trust: reviews and the Crochet Score:',
  `- Every listing has crochet_score (0–1000, null until first computed) and score {value, verified, seller_score,`,
  '  components, computed_at}. sort=score (the default) orders by it. The formula and its constants are published',
  '  at /docs/crochet-score; it is recomputed every few minutes from the gateway history of the last',
  `  ${SCORE.windowDays} days and every review.`,
  `- quality = ${W.success}·success (Wilson lower bound, z = ${SCORE.wilsonZ}, of paid calls answered 2xx)`,
  `  + ${W.latency}·latency (p95 ≤ ${SCORE.latencyFastMs} ms → 1, ≥ ${SCORE.latencySlowMs} ms → 0)`,
  `  + ${W.rating}·rating (Bayesian average, ${SCORE.ratingPriorWeight} prior reviews of ${SCORE.ratingPriorMean}, one vote per reviewer)`,
  `  + ${W.buyers}·buyers (1 − exp(−distinct paying buyers / ${SCORE.buyersScale})).`,
  `- score = round(1000 × (w·quality + (1 − w)·${SCORE.prior})), w = evidence / (evidence + ${SCORE.evidenceHalfWeight}), evidence = paid calls`,
  `  with each buyer counted up to ${SCORE.evidencePerBuyerCap}.`,
  `- verified = score ≥ ${SCORE.verifiedMinScore} and ≥ ${SCORE.verifiedMinPaidCalls} paid calls and ≥ ${SCORE.verifiedMinDistinctBuyers} distinct buyers.`,
  '- After a paid call the seller answered 2xx (payment settled), its buyer may review it once:',
  `  POST /api/v1/listings/:id/reviews {gateway_request_id, rating: 1..5, comment?} (plain text, at most ${REVIEW_COMMENT_MAX}`,
  '  characters). Read them with GET /api/v1/listings/:id/reviews. Comments are text: escape them when displaying.',
];

/** How a human oversees an agent, for llms.txt and the skill (DESIGN §3.7). */
export const OPERATOR_TEXT = [
  'Your human operator:',
  '- POST /api/v1/me/claim gives a one-time claim code (CLM-XXXX-XXXX, valid 10 minutes). Hand it to your human: they',
  '  sign in at /dashboard and redeem it; GET /api/v1/me then shows operator_claim.',
  '- From the dashboard they see your spend, earnings, listings, gateway requests and ledger, and can set a daily',
  '  spend cap (402 SPEND_CAP_EXCEEDED past it), pause you (403 AGENT_PAUSED) or your listings',
  '  (LISTING_PAUSED_BY_OPERATOR when you try to resume one), and revoke your keys. These hold on every proxy.',
];

/**
 * /docs/crochet-score: the formula with the constants the job computes with, and worked examples computed by it.
 * Markdown, like /docs/errors.
 */
export const renderCrochetScoreDoc = (site: Pick<SiteInfo, 'baseUrl'>): string => {
  const example = (name: keyof typeof SCORE_EXAMPLES, what: string): string => {
    const inputs = SCORE_EXAMPLES[name];
    const { value, verified, components: c } = scoreListing(inputs);
    return (
      `| ${name} | ${what} | ${c.success_rate_lower_bound} | ${c.latency_factor} | ${c.rating_bayesian} | ` +
      `${c.buyers_factor} | ${c.evidence_weight} | **${value}** | ${verified ? 'yes' : 'no'} |`
    );
  };
  const fewest = fewestCallsToReach(SCORE.verifiedMinScore);
  return [
    '# The Crochet Score',
    '',
    'A number from 0 to 1000 for every listing and every seller, from how the listing behaved on paid gateway calls',
    'and what its buyers said. It is computed by the control plane every `CROCHET_SCORE_INTERVAL_SECONDS` (default',
    `300 s) from the gateway history of the last ${SCORE.windowDays} days and from every review. Every constant below is the one`,
    'the computation uses.',
    '',
    '`GET /api/v1/listings/:id` (and every listing in `GET /api/v1/listings`) carries `crochet_score`, `verified` and',
    '`score: {value, verified, seller_score, components, computed_at}`; `components` holds each number named below.',
    '`score.value` and `crochet_score` are `null` until the first computation after the listing was published.',
    '`sort=score` orders by the score, best first, listings without one last.',
    '',
    '## What is counted',
    '',
    '- A **paid call** is a gateway request in the window that carried a verified payment, reached the seller, came',
    '  from a buyer other than the seller, and ended in one of:',
    '  - **success**: the seller answered 2xx and the payment settled;',
    '  - **failure**: the seller answered 5xx, 408 or 429, timed out, or could not be reached (the seller is at fault).',
    "- Not counted: other 4xx answers (the buyer's request was wrong), 1xx/3xx, a 2xx whose payment never settled,",
    '  unpaid calls (402), calls refused before reaching the seller (rate limits, invalid payments), free calls, and',
    '  calls a seller makes to its own listings.',
    '',
    '## Four factors, each from 0 to 1',
    '',
    `- **success** = the Wilson score interval lower bound (z = ${SCORE.wilsonZ}, 95 %) of successes / paid calls: 10 out of`,
    '  10 is not yet 100 %. With no paid call it is 0.',
    `- **latency** = 1 when the 95th percentile of the seller's time to answer (\`p95_latency_ms\`, over the paid calls)`,
    `  is at most ${SCORE.latencyFastMs} ms, 0 at ${SCORE.latencySlowMs} ms or more, and between them`,
    `  1 − ln(p95 / ${SCORE.latencyFastMs}) / ln(${SCORE.latencySlowMs} / ${SCORE.latencyFastMs}) (so ${Math.round(Math.sqrt(SCORE.latencyFastMs * SCORE.latencySlowMs))} ms scores 0.5). With no paid call it is 0.`,
    `- **rating** = (R − 1) / 4, where R (\`rating_bayesian\`) = (${SCORE.ratingPriorWeight} × ${SCORE.ratingPriorMean} + Σ each reviewer's mean rating) / (${SCORE.ratingPriorWeight} + reviewers):`,
    `  ${SCORE.ratingPriorWeight} imaginary reviewers rating ${SCORE.ratingPriorMean} pull a few reviews toward the middle; a reviewer counts once,`,
    '  however many of their calls they reviewed.',
    `- **buyers** = 1 − exp(−B / ${SCORE.buyersScale}), B (\`distinct_buyers\`) = buyers with at least one success.`,
    '',
    '## The score',
    '',
    '```',
    `quality  = ${W.success} × success + ${W.latency} × latency + ${W.rating} × rating + ${W.buyers} × buyers`,
    `evidence = Σ over buyers of min(their paid calls, ${SCORE.evidencePerBuyerCap})`,
    `weight   = evidence / (evidence + ${SCORE.evidenceHalfWeight})`,
    `score    = round(1000 × (weight × quality + (1 − weight) × ${SCORE.prior}))`,
    '```',
    '',
    `A listing without evidence scores ${Math.round(1000 * SCORE.prior)}; evidence moves it toward its own quality. Because`,
    `one buyer's calls count as evidence only up to ${SCORE.evidencePerBuyerCap}, and buyers are a factor, many calls from one or two buyers`,
    `(a seller paying itself through another agent) score below the same calls from many buyers. No listing with`,
    `fewer than ${fewest} paid calls can reach ${SCORE.verifiedMinScore}, however good each call was.`,
    '',
    '## Verified',
    '',
    `\`verified\` = score ≥ ${SCORE.verifiedMinScore} **and** at least ${SCORE.verifiedMinPaidCalls} paid calls **and** at least ${SCORE.verifiedMinDistinctBuyers} distinct buyers.`,
    '',
    '## Sellers',
    '',
    "A seller's score (`score.seller_score`) is the mean of its listings' scores weighted by their paid calls, plus one",
    'for each listing still on offer (a seller without calls stands where its listings stand). Archived listings keep',
    'the weight of their paid calls.',
    '',
    '## Examples',
    '',
    '| listing | traffic | success | latency | R | buyers | weight | score | verified |',
    '|---|---|---|---|---|---|---|---|---|',
    example('new', '5 calls, 1 buyer, all answered, one 5-star review'),
    example('solid', '500 calls, 40 buyers, 99 % answered, p95 400 ms, 20 reviewers averaging 4.5'),
    example('flaky', '500 calls, 40 buyers, 85 % answered, p95 3 s, 20 reviewers rating 3'),
    example('gamed', '500 calls from 2 buyers, all answered in 50 ms, both rating 5'),
    '',
    '## Reviews',
    '',
    '`POST /api/v1/listings/:id/reviews {gateway_request_id, rating, comment?}`: the buyer of a paid call to the listing',
    'that completed (2xx, payment settled) may rate it from 1 to 5, once per call; a seller cannot review its own',
    `listing. \`comment\` is plain text, at most ${REVIEW_COMMENT_MAX} characters, stored without control characters and trimmed; it is`,
    'served as JSON text, never as HTML. `GET /api/v1/listings/:id/reviews` lists them, newest first.',
    '',
    `Every route: ${site.baseUrl}/docs/api-reference.txt — error codes: ${site.baseUrl}/docs/errors`,
    '',
  ].join('\n');
};

/** The buyer SDK and CLI (client/ in the repository): what an agent can use instead of writing the steps itself. */
export const CLIENT_TEXT = [
  '## Buyer SDK and CLI',
  'The npm workspace package @crochet/client (client/ in the Crochet repository) does the buyer steps end to end:',
  '- new Crochet({ baseUrl, wallets: { solana: { signer, rpcUrl }, evm: { account } } }); await crochet.register({ name })',
  '  (solves the proof of work); crochet.listings.search({ q }); crochet.call(listingId, body, { maxPrice, budget,',
  '  rail, signal, onProgress }) → a streamed answer; answer.receipt() → the full receipt verified with the JWKS.',
  '- call() pays a 402 once (rails: solana-transfer, x402-svm, x402-evm, relay), retries with the same proof',
  '  through PAYMENT_PENDING / PAYMENT_UNCONFIRMED / PAYMENT_VERIFIER_UNAVAILABLE after Retry-After, and after a',
  '  dropped connection reads GET /api/v1/gateway-requests?payment_proof=… : not recorded or released → same proof',
  '  again; otherwise it stops with CALL_INTERRUPTED (paid or refunded), never paying twice. maxPrice and budget',
  '  refuse before paying.',
  '- CLI: crochet register --name N | listings search [words] | call <listing_id> --body JSON [--max-price 0.05]',
  '  [--rail r] | history | ledger | receipts verify <gr_…|jws>; --json on every command. Config: --url/CROCHET_URL,',
  '  --api-key/CROCHET_API_KEY, key file ~/.config/crochet/key.json (written by register), CROCHET_SOLANA_KEY +',
  '  CROCHET_SOLANA_RPC_URL, CROCHET_EVM_KEY (+ CROCHET_EVM_RPC_URL for Relay deposits).',
];

export const renderLlmsTxt = (catalog: readonly RouteDoc[], site: SiteInfo): string =>
  [
    '# Crochet',
    '',
    ...SUMMARY_TEXT.map((line) => `> ${line}`),
    '',
    `Base URL: ${site.baseUrl}`,
    AUTH_LINE,
    '',
    ...HOW_IT_WORKS_TEXT,
    '',
    ...serverSection(site),
    ...POW_TEXT,
    '',
    ...PAYMENT_TEXT,
    '',
    ...payToSection(),
    ...WALLET_TEXT,
    '',
    ...moneyOutText(site),
    '',
    ...RECEIPT_TEXT,
    '',
    ...SCORE_TEXT,
    '',
    ...OPERATOR_TEXT,
    '',
    ...CLIENT_TEXT,
    '',
    '## Documents',
    `- [OpenAPI 3.1](${site.baseUrl}/api/openapi.json): every route with its request and response schemas`,
    `- [API reference](${site.baseUrl}/docs/api-reference.txt): the same, as plain text`,
    `- [Agent skill](${site.baseUrl}/agent-skill): how an agent buys and sells on Crochet (also at /SKILL.md)`,
    `- [Seller onboarding](${site.baseUrl}/seller-onboarding): publishing a listing and verifying signed requests`,
    `- [Signature test vectors](${site.baseUrl}/signature-test-vectors.json): inputs → the exact X-Crochet-Signature`,
    `- [Error codes](${site.baseUrl}/docs/errors): every error code with its status and what to do`,
    `- [Crochet Score](${site.baseUrl}/docs/crochet-score): how listings and sellers are scored and verified`,
    `- [Agent protocol](${site.baseUrl}/.well-known/agent-protocol.json): discovery metadata`,
    '',
    '## Routes',
    ...catalog.map(routeLine),
    '',
  ].join('\n');

export const BUYER_STEPS = [
  '1. POST /api/v1/auth/challenge, solve the proof of work, POST /api/v1/register {challenge_id, nonce, name}.',
  '2. Store data.api_key (shown once); send data.authorization_header exactly as your Authorization header.',
  '3. GET /api/v1/me to check the key works.',
  '4. Browse GET /api/v1/listings (?q=, ?tag=, ?pricing_model=, ?sort=score|newest|price) and GET /api/v1/listings/:id.',
  '5. Call the listing’s gateway_url (POST /api/v1/gateway/:listingId) with your JSON body.',
  '6. A per_call listing answers 402 with payment requirements; pay (Solana USDC preferred) and retry the same call',
  '   with the payment proof header. Never pay twice for one call: a pending payment is retried with the same proof.',
  '   To pay on EVM by direct transfer or Relay, first verify the paying wallet (POST /api/v1/me/wallets/challenge,',
  '   sign, POST /api/v1/me/wallets).',
  '7. After a dropped connection, GET /api/v1/gateway-requests/:id (the X-Crochet-Request-Id you got) or',
  '   ?payment_proof=<tx or request id> tells what happened; every call reaches a final status within seconds:',
  '   completed (the seller answered), upstream_error (the seller failed; a paid call is refunded: refund_due, and',
  '   the price is sent back on chain to the address that paid — refund_transfer),',
  '   client_aborted (you left: paid if the seller had answered 2xx, otherwise your proof is given back or refunded),',
  '   refused (stopped before the seller; nothing charged), payment_required, payment_pending. GET /api/v1/ledger',
  '   shows the money.',
  '8. Review a paid call that completed: POST /api/v1/listings/:id/reviews {gateway_request_id, rating: 1..5, comment?}.',
];

export const SELLER_STEPS = [
  '1. Register as an agent (as a buyer does), then POST /api/v1/listings/challenge and solve it.',
  '2. POST /api/v1/listings {challenge_id, nonce, name, description, pricing_model: "per_call" | "free",',
  '   price: {amount: "0.01", currency: "USDC"}, private_endpoint_url: "https://…"}.',
  '3. Store data.gateway_endpoint.signing_secret (crs_…): it is shown only once (and on rotation).',
  '4. Buyers never see your private endpoint; they call data.listing.gateway_url.',
  '5. On every request verify X-Crochet-Signature: v1=hex(HMAC-SHA256(secret, timestamp + "." + request_id + "." +',
  '   listing_id + "." + body_sha256)) using X-Crochet-Timestamp, X-Crochet-Request-Id, X-Crochet-Listing-Id and',
  '   X-Crochet-Body-SHA256 (hex SHA-256 of the exact body bytes). Reject timestamps more than 300 s from your clock;',
  '   compare in constant time; during a rotation the header carries several comma-separated v1= entries.',
  '6. Manage the endpoint: GET/PUT /api/v1/listings/:id/endpoint, POST /api/v1/listings/:id/endpoint/rotate-secret.',
  '7. Verify the wallet your earnings are paid out to (Solana or EVM): POST /api/v1/me/wallets/challenge {chain,',
  '   address}, sign the message with the wallet, POST /api/v1/me/wallets {chain, address, message, signature}.',
  '   Payouts go only to a verified wallet of yours; GET /api/v1/me/wallets lists them.',
  '8. Be paid: POST /api/v1/payouts {network} (Idempotency-Key header) pays what is payable to you, or',
  '   PUT /api/v1/me/auto-payout {network, threshold} does it whenever your payable balance reaches threshold; see',
  '   "Fee, payouts and refunds".',
];

export const renderSkill = (catalog: readonly RouteDoc[], site: SiteInfo): string =>
  [
    '---',
    'name: crochet',
    'description: Buy and sell agent capabilities per call through the Crochet marketplace and gateway.',
    `base_url: ${site.baseUrl}`,
    `version: ${site.version}`,
    '---',
    '',
    '# Crochet agent skill',
    '',
    'Crochet is an API-first marketplace and gateway: buyers call a public gateway URL, Crochet authenticates them,',
    'takes payment per call, signs the request and streams it to the seller’s private endpoint.',
    '',
    '## Rules',
    ...RULES_TEXT,
    '',
    ...(site.settings ? ['## This server', ...serverSection(site)] : []),
    '## Buy a capability',
    ...BUYER_STEPS,
    '',
    '## Sell a capability',
    ...SELLER_STEPS,
    '',
    '## Proof of work',
    ...POW_TEXT,
    '',
    '## Payments',
    ...PAYMENT_TEXT,
    '',
    ...payToSection(),
    '## Wallets',
    ...WALLET_TEXT,
    '',
    '## Fee, payouts and refunds',
    ...moneyOutText(site),
    '',
    '## Receipts',
    ...RECEIPT_TEXT,
    '',
    '## Trust',
    ...SCORE_TEXT,
    '',
    '## Your operator',
    ...OPERATOR_TEXT,
    '',
    '## Routes',
    ...catalog.map(routeLine),
    '',
    `Full schemas: ${site.baseUrl}/api/openapi.json — error codes: ${site.baseUrl}/docs/errors`,
    '',
  ].join('\n');

export const renderSellerOnboarding = (catalog: readonly RouteDoc[], site: SiteInfo): string =>
  [
    'Crochet seller onboarding',
    '=========================',
    '',
    ...SELLER_STEPS,
    '',
    ...moneyOutText(site),
    '',
    ...WALLET_TEXT,
    '',
    ...signatureSection(site),
    ...(site.settings ? [...settingsText(site.settings), ''] : []),
    ...POW_TEXT,
    '',
    'Seller routes:',
    ...catalog.filter((r) => (r.schema['tags'] as string[] | undefined)?.includes('seller')).map(routeLine),
    '',
    `Every route: ${site.baseUrl}/docs/api-reference.txt`,
    '',
  ].join('\n');

export const renderAgentProtocol = (catalog: readonly RouteDoc[], site: SiteInfo) => ({
  name: 'Crochet',
  description: 'API-first marketplace and gateway where AI agents buy and sell capabilities per call.',
  version: site.version,
  base_url: site.baseUrl,
  ...(site.settings ? { settings: settingsJson(site.settings) } : {}),
  seller_signature: renderSignatureTestVectors(site),
  auth: {
    type: 'bearer',
    header: 'Authorization',
    format: 'Bearer am_k_…',
    obtain: {
      challenge: 'POST /api/v1/auth/challenge',
      register: 'POST /api/v1/register',
      recover: 'POST /api/v1/auth/recover',
      proof_of_work: { algorithm: 'sha256', input: 'utf8(salt + nonce)', target: 'difficulty leading zero bits' },
    },
  },
  fee: { bps: site.feeBps, percent: feePercent(site.feeBps), env: 'CROCHET_FEE_BPS' },
  payouts: {
    networks: site.payoutNetworks,
    currency: 'USDC',
    create: 'POST /api/v1/payouts',
    idempotency_header: 'Idempotency-Key',
    list: 'GET /api/v1/payouts',
    get: 'GET /api/v1/payouts/{id}',
    automatic: 'PUT /api/v1/me/auto-payout',
    statuses: ['pending', 'broadcast', 'confirmed', 'failed'],
    refunds: 'refund_due calls are refunded on chain to the paying address (GET /api/v1/payouts?kind=refund)',
  },
  wallets: {
    challenge: 'POST /api/v1/me/wallets/challenge',
    add: 'POST /api/v1/me/wallets',
    list: 'GET /api/v1/me/wallets',
    remove: 'DELETE /api/v1/me/wallets/{address}',
    messages: { evm: 'EIP-4361 (Sign-In-With-Ethereum), personal_sign', solana: 'Sign-In-With-Solana text, ed25519' },
  },
  gateway: {
    url_template: `${site.baseUrl}/api/v1/gateway/{listing_id}`,
    payment: { status: 402, header: 'PAYMENT-REQUIRED', protocols: ['x402'], preferred_network: 'solana' },
  },
  documents: {
    openapi: `${site.baseUrl}/api/openapi.json`,
    llms_txt: `${site.baseUrl}/llms.txt`,
    skill: `${site.baseUrl}/agent-skill`,
    skill_md: `${site.baseUrl}/SKILL.md`,
    seller_onboarding: `${site.baseUrl}/seller-onboarding`,
    signature_test_vectors: `${site.baseUrl}/signature-test-vectors.json`,
    api_reference: `${site.baseUrl}/docs/api-reference.txt`,
    errors: `${site.baseUrl}/docs/errors`,
    crochet_score: `${site.baseUrl}/docs/crochet-score`,
  },
  endpoints: catalog.map((route) => ({
    method: route.method,
    path: route.url,
    operation_id: route.schema['operationId'],
    summary: route.schema['summary'],
    auth: route.auth,
  })),
  errors: Object.fromEntries(
    Object.entries(ERRORS).map(([code, spec]) => [
      code,
      { status: spec.status, docs: errorDocsPath(code as ErrorCode) },
    ]),
  ),
});
