import { createHash } from 'node:crypto';

/**
 * The proof of work of DESIGN §3.1, as both sides compute it: a decimal string `nonce` solves a challenge when
 * sha256(utf8(salt + nonce)) has at least `difficulty` leading zero bits.
 */

/** Number of leading zero bits of a digest. */
export const leadingZeroBits = (digest: Uint8Array): number => {
  let bits = 0;
  for (const byte of digest) {
    if (byte === 0) {
      bits += 8;
      continue;
    }
    return bits + Math.clz32(byte) - 24;
  }
  return bits;
};

export const solvesChallenge = (salt: string, nonce: string, difficulty: number): boolean =>
  leadingZeroBits(
    createHash('sha256')
      .update(salt + nonce, 'utf8')
      .digest(),
  ) >= difficulty;

/** Brute-forces a nonce; what a client does (used by tests, the demo and the docs' example). */
export const solveChallenge = (salt: string, difficulty: number): string => {
  for (let nonce = 0; ; nonce++) {
    if (solvesChallenge(salt, String(nonce), difficulty)) return String(nonce);
  }
};
