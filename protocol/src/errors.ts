/**
 * The one registry of error codes. Every error the API answers with has its code here, with its HTTP status, a
 * default message and hint, and a section in `protocol/docs/errors.md` (a test keeps the two in step).
 */

/** One entry of the registry. */
export interface ErrorSpec {
  /** HTTP status the code is always answered with. */
  readonly status: number;
  /** Default human-readable message; a route may replace it with a more precise one. */
  readonly message: string;
  /** What the caller should do next, phrased as the next request to make where there is one. */
  readonly hint: string;
}

const define = <T extends Record<string, ErrorSpec>>(registry: T): Readonly<T> => Object.freeze(registry);

/** Every error code, grouped by area. Codes are UPPER_SNAKE_CASE and never change meaning once published. */
export const ERRORS = define({
  // --- request shape ---------------------------------------------------------------------------------------------
  VALIDATION_FAILED: {
    status: 400,
    message: 'The request does not match the schema of this route.',
    hint: 'Fix the field named in the message; GET /api/openapi.json describes every route.',
  },
  INVALID_JSON: {
    status: 400,
    message: 'The request body is not valid JSON.',
    hint: 'Send a JSON document with Content-Type: application/json.',
  },
  UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    message: 'This route accepts only application/json bodies.',
    hint: 'Send the body as JSON with Content-Type: application/json.',
  },
  PAYLOAD_TOO_LARGE: {
    status: 413,
    message: 'The request body is larger than this route accepts.',
    hint: 'Send a smaller body; the limit is stated in the message.',
  },
  URI_TOO_LONG: {
    status: 414,
    message: 'The request path or one of its parameters is too long.',
    hint: 'Check the path: ids are short strings such as lst_01J….',
  },
  ROUTE_NOT_FOUND: {
    status: 404,
    message: 'No route matches this method and path.',
    hint: 'GET /llms.txt lists every route.',
  },
  HTTP_REQUEST_MALFORMED: {
    status: 400,
    message: 'The request is not a well-formed HTTP/1.1 request.',
    hint: 'Send a standard HTTP/1.1 request (method, origin-form path, headers); any HTTP client library does.',
  },
  HEADERS_TOO_LARGE: {
    status: 431,
    message: 'The request headers are larger than this server accepts.',
    hint: 'Send fewer or shorter headers (cookies are the usual cause); the limit is 16 KiB in all.',
  },
  REQUEST_TIMEOUT: {
    status: 408,
    message: 'The request was not received in time.',
    hint: 'Send the headers and the whole body without pauses; the connection was closed, so open a new one.',
  },
  TOO_MANY_CONNECTIONS: {
    status: 429,
    message: 'Your address has more open connections to this server than it allows.',
    hint: 'Reuse keep-alive connections instead of opening new ones; retry after the seconds in Retry-After.',
  },
  // --- authentication ----------------------------------------------------------------------------------------------
  AUTH_REQUIRED: {
    status: 401,
    message: 'This route needs an API key.',
    hint: 'Send Authorization: Bearer am_k_…; register with POST /api/v1/auth/challenge then POST /api/v1/register.',
  },
  API_KEY_MALFORMED: {
    status: 401,
    message: 'The API key is not a well-formed Crochet key.',
    hint: 'Use the api_key exactly as returned by register or recover (it starts with am_k_).',
  },
  API_KEY_INVALID: {
    status: 401,
    message: 'The API key is not known.',
    hint: 'Check the key, or recover a key for your wallet with POST /api/v1/auth/recover/challenge.',
  },
  API_KEY_REVOKED: {
    status: 401,
    message: 'The API key has been revoked.',
    hint: 'Use another active key, or recover one with POST /api/v1/auth/recover/challenge.',
  },
  // --- proof-of-work challenges -------------------------------------------------------------------------------------
  CHALLENGE_NOT_FOUND: {
    status: 400,
    message: 'The challenge does not exist or was issued for another purpose.',
    hint: 'Request a fresh challenge and solve it.',
  },
  CHALLENGE_EXPIRED: {
    status: 400,
    message: 'The challenge has expired.',
    hint: 'Request a fresh challenge and solve it before expires_at.',
  },
  CHALLENGE_ALREADY_USED: {
    status: 409,
    message: 'The challenge has already been used.',
    hint: 'Each challenge is single-use: request a fresh one.',
  },
  POW_INVALID: {
    status: 400,
    message: 'The nonce does not solve the challenge.',
    hint: 'Find a decimal nonce such that sha256(salt + nonce) has at least `difficulty` leading zero bits.',
  },
  // --- accounts, wallets and keys --------------------------------------------------------------------------------
  WALLET_ADDRESS_INVALID: {
    status: 400,
    message: 'The wallet address is not valid for its chain.',
    hint: 'EVM addresses are 0x followed by 40 hex digits; Solana addresses are base58 ed25519 public keys.',
  },
  WALLET_ALREADY_REGISTERED: {
    status: 409,
    message: 'This wallet is already registered to an agent.',
    hint: 'Recover that agent with POST /api/v1/auth/recover/challenge instead of registering again.',
  },
  WALLET_NOT_FOUND: {
    status: 404,
    message: 'No agent has this wallet.',
    hint: 'Register with this wallet first: POST /api/v1/auth/challenge then POST /api/v1/register.',
  },
  RECOVERY_MESSAGE_INVALID: {
    status: 400,
    message: 'The recovery message is not one this server issued, or it has expired or been used.',
    hint: 'Request a fresh message with POST /api/v1/auth/recover/challenge and sign it unchanged.',
  },
  RECOVERY_SIGNATURE_INVALID: {
    status: 401,
    message: 'The signature does not verify for this wallet and message.',
    hint: 'Sign the exact message with the wallet: personal_sign (EIP-191) on EVM, ed25519 signMessage on Solana.',
  },
  WALLET_MESSAGE_INVALID: {
    status: 400,
    message: 'The wallet message is not one this server issued to you for this wallet, or it has expired or been used.',
    hint: 'Request a fresh message with POST /api/v1/me/wallets/challenge (with the same API key) and sign it unchanged.',
  },
  WALLET_SIGNATURE_INVALID: {
    status: 400,
    message: 'The signature does not verify for this wallet and message.',
    hint: 'Sign the exact message with the wallet: personal_sign (EIP-191) on EVM, ed25519 signMessage on Solana.',
  },
  WALLET_ALREADY_VERIFIED: {
    status: 409,
    message: 'This wallet is verified by another agent; a wallet belongs to one agent.',
    hint:
      'Use another wallet. If that agent is yours, remove the wallet there first (DELETE /api/v1/me/wallets/:address ' +
      'with its key) or recover it (POST /api/v1/auth/recover/challenge).',
  },
  WALLET_LIMIT_REACHED: {
    status: 409,
    message: 'You have the maximum number of wallets.',
    hint: 'Remove a wallet you no longer use with DELETE /api/v1/me/wallets/:address, then add the new one.',
  },
  KEY_NOT_FOUND: {
    status: 404,
    message: 'No key with this id belongs to you.',
    hint: 'GET /api/v1/me lists your keys.',
  },
  KEY_LIMIT_REACHED: {
    status: 409,
    message: 'You have the maximum number of active keys.',
    hint: 'Revoke a key you no longer use with DELETE /api/v1/keys/:id, then create a new one.',
  },
  LAST_ACTIVE_KEY: {
    status: 409,
    message: 'This is your only active key; revoking it would lock you out.',
    hint: 'Create another key with POST /api/v1/keys first, then revoke this one.',
  },
  // --- operators (humans) and claims ------------------------------------------------------------------------------
  OPERATOR_SESSION_REQUIRED: {
    status: 401,
    message: 'This route needs a signed-in operator; the session is missing, invalid, expired or logged out.',
    hint: 'Sign in with POST /api/v1/operator/login (or open /dashboard), then retry.',
  },
  OPERATOR_CREDENTIALS_INVALID: {
    status: 401,
    message: 'The email or the password is wrong.',
    hint: 'Check both and retry; after several failures sign-in is refused for a while (429 RATE_LIMITED).',
  },
  OPERATOR_EMAIL_TAKEN: {
    status: 409,
    message: 'An operator account with this email already exists.',
    hint: 'Sign in with POST /api/v1/operator/login instead.',
  },
  CSRF_TOKEN_INVALID: {
    status: 403,
    message: 'The X-CSRF-Token header is missing or does not match the session, or the request came from another site.',
    hint: 'Send the csrf_token of GET /api/v1/operator/session as X-CSRF-Token, from the dashboard origin.',
  },
  AGENT_NOT_FOUND: {
    status: 404,
    message: 'No agent with this id is claimed by you.',
    hint: 'GET /api/v1/operator/overview lists your agents; claim one with POST /api/v1/operator/claims.',
  },
  CLAIM_CODE_INVALID: {
    status: 404,
    message: 'No claim code matches.',
    hint: 'Check the code (CLM-XXXX-XXXX); the agent makes a new one with POST /api/v1/me/claim.',
  },
  CLAIM_CODE_EXPIRED: {
    status: 410,
    message: 'The claim code has expired (codes last 10 minutes, and a newer code replaces an older one).',
    hint: 'Ask the agent for a fresh code: POST /api/v1/me/claim.',
  },
  CLAIM_CODE_USED: {
    status: 409,
    message: 'The claim code has already been used.',
    hint: 'Each code works once; ask the agent for a fresh one with POST /api/v1/me/claim.',
  },
  AGENT_ALREADY_CLAIMED: {
    status: 409,
    message: 'The agent is already claimed by another operator.',
    hint: 'An agent has at most one operator; its current operator keeps it.',
  },
  // --- listings and seller endpoints -----------------------------------------------------------------------------
  AGENT_PAUSED: {
    status: 403,
    message: 'This agent is paused by its operator; the gateway refuses its calls.',
    hint: "Ask the agent's operator to resume it.",
  },
  SPEND_CAP_EXCEEDED: {
    status: 402,
    message: 'This call would take the agent past the daily spend cap its operator set.',
    hint:
      'The cap resets at 00:00 UTC, and payment requests you left unpaid stop reserving it once they expire; ask the ' +
      'operator to raise it on the dashboard, or call a free listing.',
  },
  LISTING_NOT_FOUND: {
    status: 404,
    message: 'No listing with this id.',
    hint: 'GET /api/v1/listings to browse listings.',
  },
  LISTING_ARCHIVED: {
    status: 409,
    message: 'The listing is archived: it no longer changes or answers calls.',
    hint: 'Create a new listing with POST /api/v1/listings/challenge then POST /api/v1/listings.',
  },
  LISTING_PAUSED: {
    status: 409,
    message: "This listing is paused, by its seller or by the seller's operator.",
    hint: 'Try again later, or find another listing with GET /api/v1/listings.',
  },
  LISTING_PAUSED_BY_OPERATOR: {
    status: 409,
    message: "The listing's operator paused it: its status stays paused until the operator resumes it.",
    hint: 'Ask your operator to resume it on the dashboard; other fields can still be changed.',
  },
  PRICE_INVALID: {
    status: 400,
    message: 'The price is not valid for this pricing model.',
    hint: 'per_call listings need price.amount as a decimal string > 0 with at most 6 decimals, e.g. "0.01"; free listings take no price.',
  },
  CURRENCY_UNSUPPORTED: {
    status: 400,
    message: 'The currency is not supported.',
    hint: 'Use "USDC".',
  },
  ENDPOINT_URL_INVALID: {
    status: 400,
    message: 'The private endpoint URL is not an acceptable absolute URL.',
    hint: 'Use an https:// URL without credentials, e.g. https://api.example.com/crochet.',
  },
  ENDPOINT_URL_FORBIDDEN: {
    status: 400,
    message: 'The private endpoint URL resolves to an address Crochet does not call.',
    hint: 'Use a public address: loopback, private, link-local and metadata addresses are refused.',
  },
  ENDPOINT_UNRESOLVABLE: {
    status: 400,
    message: 'The private endpoint host name does not resolve.',
    hint: 'Check the host name and its DNS records, then save the URL again.',
  },
  // --- reviews -----------------------------------------------------------------------------------------------------
  REVIEW_NOT_ALLOWED: {
    status: 403,
    message: 'Only the buyer of a paid call to this listing that completed (2xx, payment settled) may review it.',
    hint: 'GET /api/v1/gateway-requests?listing_id=… lists your calls to this listing; review one that is completed with a 2xx http_status.',
  },
  REVIEW_SELF_NOT_ALLOWED: {
    status: 403,
    message: 'A seller cannot review its own listing.',
    hint: 'Reviews come from buyers; /docs/crochet-score explains how your listing is scored.',
  },
  REVIEW_ALREADY_EXISTS: {
    status: 409,
    message: 'This gateway request has already been reviewed.',
    hint: 'Each paid call can be reviewed once; GET /api/v1/listings/:id/reviews shows the review.',
  },
  // --- gateway -----------------------------------------------------------------------------------------------------
  GATEWAY_REQUEST_NOT_FOUND: {
    status: 404,
    message: 'No gateway request with this id is yours.',
    hint: 'GET /api/v1/gateway-requests lists your gateway requests as buyer (or ?role=seller).',
  },
  RECEIPT_NOT_AVAILABLE: {
    status: 404,
    message: 'This gateway request has no receipt.',
    hint: 'Only paid calls answered by the seller get a receipt, recorded once the answer finished; retry in a few seconds.',
  },
  UPSTREAM_TIMEOUT: {
    status: 504,
    message: 'The seller did not answer in time.',
    hint: 'Retry later; GET /api/v1/gateway-requests/:id shows what happened to this call.',
  },
  UPSTREAM_UNAVAILABLE: {
    status: 502,
    message: 'The seller could not be reached.',
    hint: 'Retry later, or pick another listing; the seller has been failing this call.',
  },
  UPSTREAM_FORBIDDEN: {
    status: 502,
    message: "The seller's endpoint resolves to an address Crochet does not call.",
    hint: 'Nothing was sent. The seller must fix its endpoint; pick another listing meanwhile.',
  },
  PAYMENT_RAILS_UNAVAILABLE: {
    status: 503,
    message: 'This listing is paid and no payment rail is configured on this gateway.',
    hint: 'Nothing was charged. Retry later.',
  },
  // --- payments ------------------------------------------------------------------------------------------------
  PAYMENT_REQUIRED: {
    status: 402,
    message: 'This listing is paid per call; the call was not paid.',
    hint: 'Pay one of the options in payment.accepts (Solana USDC preferred) and retry the same call with the proof header.',
  },
  PAYMENT_PENDING: {
    status: 402,
    message: 'The payment is not final yet; nothing was charged twice and nothing is lost.',
    hint: 'Retry the same call with the same proof after Retry-After seconds. Do not pay again.',
  },
  PAYMENT_ALREADY_USED: {
    status: 409,
    message: 'This payment proof already paid for another gateway request.',
    hint: 'GET /api/v1/gateway-requests/:id with the gateway_request_id in this error; a new call needs a new payment.',
  },
  PAYMENT_ROUTE_MINIMUM_NOT_MET: {
    status: 402,
    message: 'The price of this listing is below the minimum of the EVM payment route.',
    hint: 'Pay on Solana (the first entry of payment.accepts) or through Relay; nothing was forwarded.',
  },
  PAYMENT_INVALID: {
    status: 402,
    message: 'The payment proof is malformed or does not verify.',
    hint: 'Build the proof exactly as the payment.accepts entry describes, then retry.',
  },
  PAYMENT_NETWORK_UNSUPPORTED: {
    status: 402,
    message: 'The payment is on a network this gateway does not accept.',
    hint: 'Pay on one of the networks listed in payment.accepts.',
  },
  PAYMENT_UNCONFIRMED: {
    status: 402,
    message: 'The payment transaction is not confirmed (or, where this gateway requires it, not finalized) yet.',
    hint: 'Retry the same call with the same proof once the transaction is confirmed. Do not pay again.',
  },
  PAYMENT_VERIFIER_UNAVAILABLE: {
    status: 503,
    message:
      'The service this payment rail checks payments with (its chain RPC, or Relay) failed or did not answer in ' +
      'time; the payment may well be fine. The error names the rail and the service.',
    hint: 'Retry the same call with the same proof after Retry-After seconds. Do not pay again.',
  },
  PAYMENT_PROOF_EXPIRED: {
    status: 402,
    message: 'The payment is older than this gateway accepts as a proof.',
    hint: 'A transfer must be presented within the acceptance window stated in the 402 (payment.accept_window_seconds); pay again for a new call.',
  },
  PAYMENT_TX_FAILED: {
    status: 402,
    message: 'The payment transaction failed on chain; no funds moved.',
    hint: 'Send a new payment and retry with its proof.',
  },
  PAYMENT_UNDERPAID: {
    status: 402,
    message: 'The payment is smaller than the price.',
    hint: 'Pay at least payment.amount_atomic of the asset and retry with the new proof.',
  },
  PAYMENT_WRONG_RECIPIENT: {
    status: 402,
    message: "The payment did not go to the marketplace's address.",
    hint: 'Pay to the payTo address of a payment.accepts entry.',
  },
  PAYMENT_WRONG_ASSET: {
    status: 402,
    message: 'The payment is in another asset than the one required.',
    hint: 'Pay in the asset of a payment.accepts entry (USDC).',
  },
  PAYMENT_MEMO_MISMATCH: {
    status: 402,
    message: 'The Solana transfer memo is not a payment_request_id issued for this call.',
    hint: 'Put the payment_request_id of the 402 answer in the transfer memo.',
  },
  PAYMENT_SENDER_MISMATCH: {
    status: 402,
    message: 'The transfer was not sent from a verified wallet of the calling agent.',
    hint: 'Send from a wallet registered to you and verified (POST /api/v1/auth/recover/challenge proves a wallet).',
  },
  PAYMENT_REQUEST_EXPIRED: {
    status: 402,
    message: 'The payment request expired before the payment was made.',
    hint: 'Call again to get a fresh payment request, then pay it.',
  },
  PAYMENT_RELAY_FAILED: {
    status: 402,
    message: 'The Relay payment failed or was refunded.',
    hint: 'Check the Relay request; make a new payment and retry with its proof.',
  },
  PAYMENT_SETTLEMENT_FAILED: {
    status: 402,
    message: 'The payment could not be settled on chain; nothing was charged.',
    hint: 'Check the paying wallet balance and authorization, then retry with a new payment.',
  },
  // --- payouts and refunds (money out) ------------------------------------------------------------------------------
  PAYOUT_NETWORK_UNSUPPORTED: {
    status: 400,
    message: 'This gateway does not pay out on that network.',
    hint: 'GET /.well-known/agent-protocol.json lists the networks this gateway pays out on (payouts.networks).',
  },
  PAYOUT_AMOUNT_INVALID: {
    status: 400,
    message: 'The payout amount is not a positive decimal amount of USDC with at most 6 decimals.',
    hint: 'Send amount as a decimal string such as "12.5", or leave it out to be paid your whole payable balance.',
  },
  PAYOUT_WALLET_REQUIRED: {
    status: 409,
    message: 'You have no verified wallet on the chain of this network to be paid to.',
    hint: 'Add one with POST /api/v1/me/wallets/challenge then POST /api/v1/me/wallets, and ask again.',
  },
  NOTHING_TO_PAY_OUT: {
    status: 409,
    message: 'Your payable balance is zero (or already on its way in open payouts).',
    hint: 'GET /api/v1/ledger/balances shows what you earned; GET /api/v1/payouts shows payouts on their way.',
  },
  PAYOUT_EXCEEDS_PAYABLE: {
    status: 409,
    message: 'The payout is larger than your payable balance less the payouts on their way.',
    hint: 'Ask for at most the payable amount named in the details, or leave amount out to be paid all of it.',
  },
  PAYOUT_NOT_FOUND: {
    status: 404,
    message: 'No payout or refund of yours has this id.',
    hint: 'GET /api/v1/payouts lists your payouts and refunds.',
  },
  IDEMPOTENCY_KEY_REUSED: {
    status: 409,
    message: 'This Idempotency-Key was used before for a different request.',
    hint: 'Use a new Idempotency-Key for a new request; repeat a request unchanged to get its first answer.',
  },
  PAYOUTS_UNAVAILABLE: {
    status: 503,
    message: 'Payouts cannot be sent on this network right now: the marketplace holds no key to send from.',
    hint: 'Try again later; your payable balance stays yours (GET /api/v1/ledger/balances).',
  },
  // --- infrastructure -------------------------------------------------------------------------------------------
  RATE_LIMITED: {
    status: 429,
    message: 'Too many requests.',
    hint: 'Wait for the number of seconds in Retry-After, then retry.',
  },
  STATE_UNAVAILABLE: {
    status: 503,
    message: 'A backing store is unavailable; nothing was charged.',
    hint: 'Retry after the number of seconds in Retry-After.',
  },
  CONTROL_PLANE_UNAVAILABLE: {
    status: 503,
    message: 'The Crochet API is temporarily unavailable.',
    hint: 'Retry after the number of seconds in Retry-After; gateway calls keep working.',
  },
  INTERNAL_ERROR: {
    status: 500,
    message: 'An unexpected error occurred.',
    hint: 'Retry later; quote the request_id if you report it.',
  },
});

/** A code of the registry. */
export type ErrorCode = keyof typeof ERRORS;

/** Every code, in registry order. */
export const ERROR_CODES = Object.keys(ERRORS) as ErrorCode[];

/** The docs anchor of a code, relative to the public base URL. */
export const errorDocsPath = (code: ErrorCode): string => `/docs/errors#${code}`;

/** True when `value` is a code of the registry. */
export const isErrorCode = (value: string): value is ErrorCode => Object.hasOwn(ERRORS, value);

/** The body of an error response. */
export interface ErrorBody {
  error: {
    code: ErrorCode;
    message: string;
    request_id: string;
    hint: string;
    docs: string;
    [extra: string]: unknown;
  };
}

/** Options that refine a registry entry for one occurrence. */
export interface ApiErrorOptions {
  message?: string;
  hint?: string;
  /** Extra fields placed beside `code` in the error object (e.g. `limit_bytes`). */
  details?: Record<string, unknown>;
  /** Response headers to send with the error (e.g. `Retry-After`). */
  headers?: Record<string, string>;
}

/**
 * An expected, client-facing failure. Routes throw it; each plane's error handler renders it with `errorBody`.
 * Anything else that is thrown is a bug or an infrastructure failure and is answered as INTERNAL_ERROR.
 */
export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly hint: string;
  readonly details: Record<string, unknown> | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(code: ErrorCode, options: ApiErrorOptions = {}) {
    const spec = ERRORS[code];
    super(options.message ?? spec.message);
    this.name = 'ApiError';
    this.code = code;
    this.status = spec.status;
    this.hint = options.hint ?? spec.hint;
    this.details = options.details;
    this.headers = options.headers;
  }
}

/** Renders the error envelope for a code (with optional refinements) and a request id. */
export const errorBody = (
  code: ErrorCode,
  requestId: string,
  options: Pick<ApiErrorOptions, 'message' | 'hint' | 'details'> = {},
): ErrorBody => {
  const spec = ERRORS[code];
  return {
    error: {
      code,
      message: options.message ?? spec.message,
      request_id: requestId,
      hint: options.hint ?? spec.hint,
      docs: errorDocsPath(code),
      ...options.details,
    },
  };
};
