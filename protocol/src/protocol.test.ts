import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { apiKeyDisplayPrefix, bearerToken, generateApiKey, hashApiKey, isWellFormedApiKey } from './api-key.js';
import { decodeCursor, encodeCursor } from './envelope.js';
import { isId, newId, ulid, ulidTimeMs } from './ids.js';
import { fromAtomic, toAtomic } from './money.js';
import { currentUtcDay, utcDay } from './redis-keys.js';
import { canonicalString, signatureEntry, signatureHeader } from './signature.js';
import { SIGNATURE_SPEC, SIGNATURE_TEST_VECTORS } from './signature-vectors.js';

describe('api keys', () => {
  it('generates well-formed keys whose checksum catches any single-character change', () => {
    const key = generateApiKey();
    expect(key).toMatch(/^am_k_[0-9A-Za-z]{38}$/);
    expect(isWellFormedApiKey(key)).toBe(true);
    for (let i = 5; i < key.length; i++) {
      const swapped = key[i] === 'a' ? 'b' : 'a';
      expect(isWellFormedApiKey(key.slice(0, i) + swapped + key.slice(i + 1))).toBe(false);
    }
    expect(isWellFormedApiKey(key.slice(0, -1))).toBe(false);
    expect(isWellFormedApiKey(`${key}x`)).toBe(false);
  });

  it('hashes to lowercase sha256 hex and shows only a short prefix', () => {
    const key = generateApiKey();
    expect(hashApiKey(key)).toMatch(/^[0-9a-f]{64}$/);
    expect(apiKeyDisplayPrefix(key)).toBe(key.slice(0, 13));
  });

  it('reads bearer tokens', () => {
    expect(bearerToken('Bearer am_k_x')).toBe('am_k_x');
    expect(bearerToken('bearer  am_k_x ')).toBe('am_k_x');
    expect(bearerToken('Basic abc')).toBeUndefined();
    expect(bearerToken(undefined)).toBeUndefined();
  });
});

describe('ids', () => {
  it('are prefixed, well-formed and time-sortable', () => {
    const first = newId('listing');
    const later = newId('listing');
    expect(isId('listing', first)).toBe(true);
    expect(isId('agent', first)).toBe(false);
    expect(first.slice(0, 14) <= later.slice(0, 14)).toBe(true);
  });

  it('encode their time in the first 10 characters and 80 random bits in the other 16', () => {
    const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
    const timeOf = (id: string) => [...id.slice(0, 10)].reduce((t, c) => t * 32 + alphabet.indexOf(c), 0);
    for (const at of [0, 1, 31, 32, 1_733_280_000_000, 2 ** 48 - 1]) {
      const id = ulid(at);
      expect(id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
      expect(timeOf(id)).toBe(at);
      expect(ulidTimeMs(id)).toBe(at);
      expect(ulidTimeMs(id.toLowerCase())).toBe(at);
    }
    expect(ulid(0).slice(0, 10)).toBe('0000000000');
    // A time with a fraction of a millisecond is that millisecond.
    expect(timeOf(ulid(1_733_280_000_000.75))).toBe(1_733_280_000_000);
    const ids = Array.from({ length: 10_000 }, () => ulid(5));
    expect(new Set(ids).size).toBe(ids.length);
    // Every random character takes every value: the 80 bits are all used.
    for (let position = 10; position < 26; position++) expect(new Set(ids.map((id) => id[position])).size).toBe(32);
  });
});

describe('money', () => {
  it.each([
    ['0.01', 10_000n],
    ['1', 1_000_000n],
    ['0', 0n],
    ['12.345678', 12_345_678n],
    ['0.000001', 1n],
  ])('parses %s', (amount, atomic) => {
    expect(toAtomic(amount, 'USDC')).toBe(atomic);
    expect(fromAtomic(atomic, 'USDC')).toBe(amount);
  });

  it.each(['-1', '1e3', '0.0000001', '', ' 1', '01', '1.', '.5', 'NaN'])('rejects %j', (amount) => {
    expect(toAtomic(amount, 'USDC')).toBeNull();
  });
});

describe('cursors', () => {
  it('round-trip and reject garbage', () => {
    expect(decodeCursor(encodeCursor(['2026-01-01', 'lst_1', 5]))).toEqual(['2026-01-01', 'lst_1', 5]);
    expect(decodeCursor('not-a-cursor')).toBeNull();
    expect(decodeCursor(Buffer.from('{"a":1}').toString('base64url'))).toBeNull();
  });
});

describe('signature', () => {
  it('matches an independently computed HMAC over the canonical string', () => {
    const canonical = canonicalString(1700000000, 'gr_1', 'lst_1', 'ab'.repeat(32));
    expect(canonical).toBe(`1700000000.gr_1.lst_1.${'ab'.repeat(32)}`);
    // Known answer: HMAC-SHA256(key="crs_test", msg=canonical), computed with openssl.
    expect(signatureEntry('crs_test', canonical)).toBe(
      'v1=b03b50d76ed46310e7a89afa72814866541015797263a94ae0207c0d8e89ad76',
    );
    expect(signatureHeader(['a', 'b'], canonical).split(',')).toHaveLength(2);
  });

  it('reproduces every published test vector: body hash, canonical string and header', () => {
    for (const v of SIGNATURE_TEST_VECTORS) {
      expect(createHash('sha256').update(Buffer.from(v.body, 'utf8')).digest('hex'), v.name).toBe(v.body_sha256);
      expect(canonicalString(v.timestamp, v.request_id, v.listing_id, v.body_sha256), v.name).toBe(v.canonical);
      expect(signatureHeader(v.secrets, v.canonical), v.name).toBe(v.expected_header);
    }
    // The spec the vectors come with names the two things agents got wrong: key encoding and timestamp unit.
    expect(SIGNATURE_SPEC.join('\n')).toMatch(/UTF-8 string[\s\S]*do NOT base64-decode/);
    expect(SIGNATURE_SPEC.join('\n')).toContain('unix time in SECONDS');
  });
});

describe('utc day', () => {
  it('names the UTC day, and the cached form changes exactly at midnight', () => {
    const midnight = Date.UTC(2026, 10, 28);
    expect(utcDay(midnight - 1)).toBe('20261127');
    expect(utcDay(midnight)).toBe('20261128');
    expect(currentUtcDay(midnight - 1)).toBe('20261127');
    expect(currentUtcDay(midnight - 1000)).toBe('20261127');
    expect(currentUtcDay(midnight)).toBe('20261128');
    expect(currentUtcDay(midnight + 86_399_999)).toBe('20261128');
    expect(currentUtcDay(midnight + 86_400_000)).toBe('20261129');
    // A clock that steps back is followed too.
    expect(currentUtcDay(midnight - 1)).toBe('20261127');
  });
});
