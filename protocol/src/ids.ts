import { randomBytes } from 'node:crypto';

/** Prefixes of every kind of id. An id is `<prefix>_<26 chars>`: a ULID (time-sortable, Crockford base32). */
export const ID_PREFIX = Object.freeze({
  agent: 'agt',
  key: 'key',
  listing: 'lst',
  challenge: 'chl',
  gatewayRequest: 'gr',
  payment: 'pay',
  review: 'rev',
  operator: 'op',
  signingKey: 'sk',
  request: 'req',
  payout: 'po',
  refund: 'rf',
} as const);

export type IdKind = keyof typeof ID_PREFIX;
export type IdPrefix = (typeof ID_PREFIX)[IdKind];

/** A prefixed id such as `lst_01JD…`; the template type keeps kinds apart at compile time. */
export type Id<P extends IdPrefix> = `${P}_${string}`;
export type AgentId = Id<'agt'>;
export type KeyId = Id<'key'>;
export type ListingId = Id<'lst'>;
export type ChallengeId = Id<'chl'>;
export type GatewayRequestId = Id<'gr'>;
export type PaymentRequestId = Id<'pay'>;

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const ULID_PATTERN = '[0-9A-HJKMNP-TV-Z]{26}';

// Ids are made on every gateway request: take their randomness from a pooled buffer instead of one
// randomBytes(10) call (a syscall-backed fill) each time.
const POOL_SIZE = 4096;
let pool = randomBytes(POOL_SIZE);
let poolOffset = 0;
const randomTen = (): Buffer => {
  if (poolOffset + 10 > POOL_SIZE) {
    pool = randomBytes(POOL_SIZE);
    poolOffset = 0;
  }
  const out = pool.subarray(poolOffset, poolOffset + 10);
  poolOffset += 10;
  return out;
};

const ALPHABET = Buffer.from(CROCKFORD, 'latin1');
/** The 26 characters being made, reused: one string is allocated per id, not one per character. */
const chars = Buffer.alloc(26);

/** Encodes a 48-bit millisecond time and 80 random bits as a 26-character ULID. */
export const ulid = (timeMs: number = Date.now()): string => {
  let time = Math.floor(timeMs);
  for (let i = 9; i >= 0; i--) {
    chars[i] = ALPHABET[time % 32]!;
    time = Math.floor(time / 32);
  }
  const random = randomTen();
  // 80 bits → 16 base32 characters, 5 bits at a time.
  let bits = 0;
  let value = 0;
  let at = 10;
  for (let i = 0; i < 10; i++) {
    value = ((value << 8) | random[i]!) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      chars[at++] = ALPHABET[(value >>> (bits - 5)) & 31]!;
      bits -= 5;
    }
  }
  return chars.toString('latin1', 0, 26);
};

/** The millisecond time a ULID (or the ULID part of an id, after its `<prefix>_`) was made at. */
export const ulidTimeMs = (value: string): number => {
  let time = 0;
  for (let i = 0; i < 10; i++) time = time * 32 + CROCKFORD.indexOf(value[i]!.toUpperCase());
  return time;
};

/** A new id of the given kind. */
export const newId = <K extends IdKind>(kind: K): Id<(typeof ID_PREFIX)[K]> =>
  `${ID_PREFIX[kind]}_${ulid()}` as Id<(typeof ID_PREFIX)[K]>;

/** A JSON-schema pattern that matches ids of one kind. */
export const idPattern = (kind: IdKind): string => `^${ID_PREFIX[kind]}_${ULID_PATTERN}$`;

const ID_REGEX = new Map(
  (Object.keys(ID_PREFIX) as IdKind[]).map((kind) => [kind, new RegExp(idPattern(kind))] as const),
);

/** True when `value` is a well-formed id of the given kind. */
export const isId = <K extends IdKind>(kind: K, value: string): value is Id<(typeof ID_PREFIX)[K]> =>
  ID_REGEX.get(kind)!.test(value);
