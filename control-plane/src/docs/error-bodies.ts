import type { ErrorCode } from '@crochet/protocol';

/**
 * OpenAPI schemas of the error bodies (issue 14): every error is the envelope `{error: {code, message, request_id,
 * hint, docs}}`; some codes add fields beside `code`, and 402 PAYMENT_REQUIRED adds `payment` beside `error` — the
 * payment requirements an agent pays from. Each code's schema pins `code` to it, so a client can tell them apart.
 */

type JsonSchema = Record<string, unknown>;

const str = (description?: string): JsonSchema => ({ type: 'string', ...(description ? { description } : {}) });
const int = (description: string): JsonSchema => ({ type: 'integer', description });
const obj = (properties: Record<string, JsonSchema>, required: string[], description?: string): JsonSchema => ({
  type: 'object',
  properties,
  required,
  ...(description ? { description } : {}),
});

/** Fields some codes add beside `code` in the error object, with whether they are always there. */
const ERROR_DETAILS: Partial<Record<ErrorCode, { properties: Record<string, JsonSchema>; required: string[] }>> = {
  VALIDATION_FAILED: { properties: { field: str('the field at fault, e.g. body.price.amount') }, required: [] },
  PAYLOAD_TOO_LARGE: { properties: { limit_bytes: int('the largest body accepted') }, required: ['limit_bytes'] },
  PAYMENT_ALREADY_USED: {
    properties: { gateway_request_id: str('gr_… — the call this proof already paid for') },
    required: ['gateway_request_id'],
  },
  PAYMENT_VERIFIER_UNAVAILABLE: {
    properties: {
      rail: str('the payment rail whose check failed'),
      verifier: str('the service that failed, e.g. "Solana RPC (solana:…)"'),
    },
    required: ['rail'],
  },
  SPEND_CAP_EXCEEDED: {
    properties: {
      daily_spend_cap: str('your operator’s cap per UTC day, USDC'),
      spent_today: str('USDC spent since 00:00 UTC'),
      refund_gateway_request_id: str('a transfer already made for this call is due back to you under this request'),
    },
    required: ['daily_spend_cap', 'spent_today'],
  },
  RATE_LIMITED: { properties: { retry_after_seconds: int('wait this long (also Retry-After)') }, required: [] },
  IDEMPOTENCY_KEY_REUSED: { properties: { payout_id: str('po_… made with this key') }, required: ['payout_id'] },
  PAYOUT_AMOUNT_INVALID: { properties: { amount: str('the amount refused') }, required: [] },
  PAYOUT_EXCEEDS_PAYABLE: {
    properties: { payable: str('USDC payable to you now'), payable_atomic: str('the same in atomic units') },
    required: ['payable', 'payable_atomic'],
  },
  PAYOUT_NETWORK_UNSUPPORTED: {
    properties: { networks: { type: 'array', items: str(), description: 'CAIP-2 networks payouts are sent on' } },
    required: ['networks'],
  },
};

/** One x402 `accepts` entry, as in the PAYMENT-REQUIRED header. */
const ACCEPT = obj(
  {
    scheme: { const: 'exact' },
    network: str('CAIP-2, e.g. solana:… or eip155:8453'),
    amount: str('price in atomic units of asset'),
    asset: str('USDC mint (Solana) or contract (EVM)'),
    payTo: str(
      'the marketplace’s OWNER address: on Solana a wallet address (USDC goes to its associated token account for ' +
        'asset; a transfer that also creates that account in the same transaction is accepted), on EVM the receiving address',
    ),
    maxTimeoutSeconds: { type: 'integer' },
    extra: {
      type: 'object',
      description:
        'Solana: feePayer (the gateway pays the fee), decimals, memo (= payment_request_id), rpcUrl (where this ' +
        'network is reached, when the gateway publishes one: ExactSvmScheme(signer, { rpcUrl })). EVM: name, ' +
        'version (EIP-712 domain of the USDC contract), decimals.',
      additionalProperties: true,
    },
  },
  ['scheme', 'network', 'amount', 'asset', 'payTo', 'maxTimeoutSeconds', 'extra'],
);

/** The `payment` object of a 402 PAYMENT_REQUIRED body (plugins/src/payments/requirements.ts buildPaymentBody). */
export const PAYMENT_SCHEMA = obj(
  {
    payment_request_id: str('pay_… — a Solana transfer’s memo must be this'),
    listing_id: str(),
    amount: str('decimal, e.g. "0.01"'),
    amount_atomic: str('the same in atomic units (USDC: 6 decimals)'),
    currency: { const: 'USDC' },
    expires_at: { type: 'string', format: 'date-time', description: 'pay (a Solana transfer: land) before this' },
    accept_window_seconds: int('a transfer is accepted as proof this long after it moved the money'),
    accepts: {
      type: 'array',
      items: ACCEPT,
      description:
        'the x402 options, Solana first; the same as PAYMENT-REQUIRED (pay one, retry with PAYMENT-SIGNATURE)',
    },
    direct: obj(
      {
        header: { const: 'X-Crochet-Payment-Tx' },
        format: { const: '<caip2-network>:<transaction id>' },
        networks: {
          type: 'array',
          items: obj(
            {
              network: str(),
              asset: str(),
              pay_to: str('owner address (see accepts[].payTo)'),
              pay_to_kind: { const: 'owner' },
              memo: str('Solana: put this in an SPL Memo instruction of the transfer'),
              sender: str('EVM: the transfer must come from a wallet you verified'),
              rpc_url: str('where this network is reached, when the gateway publishes one'),
            },
            ['network', 'asset', 'pay_to'],
          ),
        },
      },
      ['header', 'format', 'networks'],
      'pay by a plain USDC transfer, then retry with its id in X-Crochet-Payment-Tx',
    ),
    relay: {
      anyOf: [
        obj(
          {
            header: { const: 'X-Crochet-Relay-Request-Id' },
            recipient: str('the EVM address the Relay fill must deliver to'),
            currency: obj(
              { chain_id: { type: 'integer' }, address: str(), symbol: str(), decimals: { type: 'integer' } },
              ['chain_id', 'address', 'symbol', 'decimals'],
            ),
            amount: str('atomic units the fill must deliver, at least'),
            destination_chain_id: { type: 'integer' },
            api_url: str(
              'the Relay API the gateway checks payments with: quote there (POST /quote/v2) and run the deposit step',
            ),
          },
          ['header', 'recipient', 'currency', 'amount', 'destination_chain_id', 'api_url'],
        ),
        { type: 'null' },
      ],
      description: 'what a Relay payment must deliver (from a wallet you verified); null when Relay is not offered',
    },
    test_funds: obj(
      {
        faucet_url: str(),
        help: str('GET it for the faucet’s routes'),
        requests: {
          type: 'array',
          items: obj({ network: str(), request: str('e.g. POST <faucet>/solana'), body: { type: 'object' } }, []),
        },
        rpc_urls: { type: 'object', additionalProperties: { type: 'string' }, description: 'CAIP-2 → RPC URL' },
      },
      ['faucet_url', 'requests', 'rpc_urls'],
      'development chains only: where test funds come from',
    ),
  },
  [
    'payment_request_id',
    'listing_id',
    'amount',
    'amount_atomic',
    'currency',
    'expires_at',
    'accepts',
    'direct',
    'relay',
  ],
);

const ENVELOPE_FIELDS = {
  message: str(),
  request_id: str(),
  hint: str('the next request to make, where there is one'),
  docs: str('/docs/errors#CODE'),
};

/** The component name of a code's body. */
export const errorSchemaName = (code: ErrorCode): string => `Error_${code}`;

/** Components for every code: its envelope with `code` pinned, its extra fields, and `payment` for PAYMENT_REQUIRED. */
export const errorComponents = (codes: readonly ErrorCode[]): Record<string, JsonSchema> =>
  Object.fromEntries(
    codes.map((code) => {
      const details = ERROR_DETAILS[code];
      const error = obj({ code: { const: code }, ...ENVELOPE_FIELDS, ...details?.properties }, [
        'code',
        'message',
        'request_id',
        'hint',
        'docs',
        ...(details?.required ?? []),
      ]);
      const body =
        code === 'PAYMENT_REQUIRED'
          ? obj({ error, payment: PAYMENT_SCHEMA }, ['error', 'payment'])
          : obj({ error }, ['error']);
      return [errorSchemaName(code), body];
    }),
  );

/** The schema of an error response that may carry any of `codes`. */
export const errorResponseSchema = (codes: readonly ErrorCode[]): JsonSchema =>
  codes.length === 1
    ? { $ref: `#/components/schemas/${errorSchemaName(codes[0]!)}` }
    : { oneOf: codes.map((code) => ({ $ref: `#/components/schemas/${errorSchemaName(code)}` })) };
