import { createHash, randomBytes } from 'node:crypto';

/**
 * API keys: `am_k_` + 32 base62 characters of randomness + 6 base62 characters of checksum.
 * The checksum lets both planes reject a mistyped or truncated key without a lookup; keys are stored only as the
 * SHA-256 hex of the whole key string.
 */
export const API_KEY_PREFIX = 'am_k_';
const BODY_LENGTH = 32;
const CHECKSUM_LENGTH = 6;
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const KEY_SHAPE = new RegExp(`^${API_KEY_PREFIX}[0-9A-Za-z]{${BODY_LENGTH + CHECKSUM_LENGTH}}$`);

/** How many characters of a key (after the prefix) are shown back as its public prefix. */
export const API_KEY_DISPLAY_LENGTH = 8;

const base62 = (bytes: Uint8Array, length: number): string => {
  let value = BigInt(`0x${Buffer.from(bytes).toString('hex')}`);
  let out = '';
  for (let i = 0; i < length; i++) {
    out = BASE62[Number(value % 62n)] + out;
    value /= 62n;
  }
  return out;
};

const checksum = (body: string): string =>
  base62(createHash('sha256').update(`${API_KEY_PREFIX}${body}`).digest().subarray(0, 8), CHECKSUM_LENGTH);

/** A new random API key. */
export const generateApiKey = (): string => {
  const body = base62(randomBytes(24), BODY_LENGTH);
  return `${API_KEY_PREFIX}${body}${checksum(body)}`;
};

/** True when `key` has the shape of a Crochet key and its checksum matches. */
export const isWellFormedApiKey = (key: string): boolean => {
  if (!KEY_SHAPE.test(key)) return false;
  const body = key.slice(API_KEY_PREFIX.length, API_KEY_PREFIX.length + BODY_LENGTH);
  return key.slice(API_KEY_PREFIX.length + BODY_LENGTH) === checksum(body);
};

/** The stored form of a key: lowercase hex SHA-256 of its UTF-8 bytes. */
export const hashApiKey = (key: string): string => createHash('sha256').update(key, 'utf8').digest('hex');

/** The part of a key that may be shown again (e.g. `am_k_3fA9x0Qe`). */
export const apiKeyDisplayPrefix = (key: string): string =>
  key.slice(0, API_KEY_PREFIX.length + API_KEY_DISPLAY_LENGTH);

/** Extracts the key from an `Authorization` header value; undefined when it is not a Bearer credential. */
export const bearerToken = (header: string | undefined): string | undefined => {
  if (!header) return undefined;
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  return match?.[1];
};
