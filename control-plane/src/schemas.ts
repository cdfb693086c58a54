import { ApiError, decodeCursor, idPattern, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX } from '@crochet/protocol';
import { type TSchema, Type } from 'typebox';
import { CrochetScoreSchema } from './score/view.js';

/**
 * Shared TypeBox schemas. Each is at once the runtime validator/serializer of a route and the source of the
 * OpenAPI document, llms.txt and the skill texts (see routes/docs.ts).
 */

/** A point in time: RFC 3339 on the wire; handlers may hand over a Date (the serializer formats it). */
export const Timestamp = Type.Unsafe<Date | string>({ type: 'string', format: 'date-time' });
export const AgentIdSchema = Type.String({ pattern: idPattern('agent'), description: 'agt_… id' });
export const ListingIdSchema = Type.String({ pattern: idPattern('listing'), description: 'lst_… id' });
export const KeyIdSchema = Type.String({ pattern: idPattern('key'), description: 'key_… id' });
export const ChallengeIdSchema = Type.String({ pattern: idPattern('challenge'), description: 'chl_… id' });

export const Data = <T extends TSchema>(schema: T) => Type.Object({ data: schema });
export const List = <T extends TSchema>(schema: T) =>
  Type.Object({ data: Type.Array(schema), next_cursor: Type.Union([Type.String(), Type.Null()]) });

/**
 * The id a single-position keyset cursor (a `next_cursor` of a list ordered by id) points after; null without a
 * cursor. Anything that is not such a cursor — forged, from another list, out of range — is a 400, never a 500.
 */
export const cursorId = (cursor: string | undefined, valid: (id: string) => boolean): string | null => {
  if (cursor === undefined) return null;
  const position = decodeCursor(cursor);
  const id = position?.[0];
  if (position?.length !== 1 || typeof id !== 'string' || !valid(id)) {
    throw new ApiError('VALIDATION_FAILED', {
      message: 'cursor is not a next_cursor of this list',
      details: { field: 'querystring.cursor' },
    });
  }
  return id;
};

/** A PostgreSQL bigint id (identity column) as text: 1 … 2^63 − 1. */
export const isBigintId = (id: string): boolean => /^[1-9][0-9]{0,18}$/.test(id) && BigInt(id) <= 2n ** 63n - 1n;

export const PageQuery = {
  limit: Type.Optional(
    Type.Integer({ minimum: 1, maximum: PAGE_LIMIT_MAX, default: PAGE_LIMIT_DEFAULT, description: 'page size' }),
  ),
  cursor: Type.Optional(Type.String({ maxLength: 512, description: 'next_cursor of the previous page' })),
};

export const ErrorSchema = Type.Object(
  {
    error: Type.Object(
      {
        code: Type.String({ description: 'stable UPPER_SNAKE_CASE code; see /docs/errors' }),
        message: Type.String(),
        request_id: Type.String(),
        hint: Type.String({ description: 'the next request to make, where there is one' }),
        docs: Type.String(),
      },
      { additionalProperties: true },
    ),
  },
  { $id: 'Error' },
);

export const PowChallenge = Type.Object({
  challenge_id: ChallengeIdSchema,
  algorithm: Type.Literal('sha256'),
  salt: Type.String({ description: 'hex' }),
  difficulty: Type.Integer({ description: 'leading zero bits required of sha256(utf8(salt + nonce))' }),
  expires_at: Timestamp,
});

export const PowSolution = {
  challenge_id: ChallengeIdSchema,
  nonce: Type.String({ pattern: '^[0-9]{1,20}$', description: 'decimal string solving the challenge' }),
};

export const WalletChainSchema = Type.Union([Type.Literal('evm'), Type.Literal('solana')]);

/** A wallet named by its chain and address (normalized by the server: EIP-55 on EVM). */
export const WalletInput = Type.Object(
  { chain: WalletChainSchema, address: Type.String({ minLength: 1, maxLength: 100 }) },
  { additionalProperties: false },
);

/** A challenge message signed by the wallet it names (recovery and verification). */
export const SignedWalletMessage = Type.Object(
  {
    chain: WalletChainSchema,
    address: Type.String({ minLength: 1, maxLength: 100 }),
    message: Type.String({ minLength: 1, maxLength: 4000, description: 'the message from the challenge, unchanged' }),
    signature: Type.String({
      minLength: 1,
      maxLength: 200,
      description: 'EVM: 0x-hex personal_sign signature; Solana: base58 (or base64) ed25519 signature',
    }),
  },
  { additionalProperties: false },
);

/** A sign-in message to sign with the wallet; works once, until expires_at. */
export const WalletChallenge = Type.Object({
  message: Type.String({
    description: 'sign exactly this text: EIP-4361 (SIWE) on EVM, Sign-In-With-Solana on Solana',
  }),
  nonce: Type.String(),
  expires_at: Timestamp,
});

export const Agent = Type.Object({
  id: AgentIdSchema,
  name: Type.String(),
  description: Type.String(),
  status: Type.String(),
  created_at: Timestamp,
});

export const KeyView = Type.Object({
  id: KeyIdSchema,
  prefix: Type.String({ description: 'first characters of the key, for recognising it' }),
  name: Type.String(),
  created_at: Timestamp,
  last_used_at: Type.Union([Timestamp, Type.Null()]),
  revoked_at: Type.Union([Timestamp, Type.Null()]),
});

export const WalletView = Type.Object({
  chain: WalletChainSchema,
  address: Type.String({ description: 'normalized: EIP-55 checksummed on EVM, base58 on Solana' }),
  verified: Type.Boolean({
    description:
      'true once you proved control by signing (POST /api/v1/me/wallets, or recovery). Only a verified EVM wallet ' +
      'pays by direct transfer or Relay, and payouts go only to a verified wallet',
  }),
  verified_at: Type.Union([Timestamp, Type.Null()]),
  created_at: Timestamp,
});

export const IssuedKey = Type.Object({
  agent: Agent,
  api_key: Type.String({ description: 'shown once; store it' }),
  authorization_header: Type.String({ description: 'use exactly as the Authorization header' }),
  key: KeyView,
});

export const Price = Type.Object({
  amount: Type.String({ description: 'decimal string, e.g. "0.01"' }),
  currency: Type.String(),
  amount_atomic: Type.String({ description: 'integer in the asset atomic unit (USDC: 6 decimals)' }),
});

export const PriceInput = Type.Object(
  {
    amount: Type.String({ maxLength: 40, description: 'decimal string > 0 with at most 6 decimals, e.g. "0.01"' }),
    currency: Type.Optional(Type.String({ maxLength: 10, default: 'USDC' })),
  },
  { additionalProperties: false },
);

export const PricingModel = Type.Union([Type.Literal('free'), Type.Literal('per_call')]);

export const Listing = Type.Object({
  id: ListingIdSchema,
  seller_id: AgentIdSchema,
  name: Type.String(),
  description: Type.String(),
  pricing_model: PricingModel,
  price: Price,
  status: Type.Union([Type.Literal('active'), Type.Literal('paused'), Type.Literal('archived')]),
  paused_by: Type.Optional(
    Type.Union([Type.Literal('operator'), Type.Literal('seller'), Type.Null()], {
      description:
        'owner only: who paused the listing, null unless paused; an operator pause holds until the operator resumes it',
    }),
  ),
  gateway_url: Type.String({ description: 'the public URL buyers call' }),
  tags: Type.Array(Type.String()),
  input_schema: Type.Union([Type.Unknown(), Type.Null()]),
  output_example: Type.Union([Type.Unknown(), Type.Null()]),
  crochet_score: Type.Union([Type.Integer(), Type.Null()]),
  verified: Type.Boolean(),
  review_count: Type.Integer(),
  score: CrochetScoreSchema,
  gateway: Type.Object({
    rate_limit_per_minute: Type.Union([Type.Integer(), Type.Null()]),
    body_limit_bytes: Type.Integer(),
    timeout_ms: Type.Integer(),
    settlement_policy: Type.Union([Type.Literal('before_forward'), Type.Literal('after_response')]),
  }),
  created_at: Timestamp,
  updated_at: Timestamp,
});

export const EndpointUrlInput = Type.String({
  minLength: 1,
  maxLength: 2048,
  description: 'https URL of your private endpoint; stored encrypted, never shown to anyone',
});

export const SigningKey = Type.Object({
  signing_secret: Type.String({ description: 'crs_…; returned only here: store it' }),
  key_id: Type.String(),
});
