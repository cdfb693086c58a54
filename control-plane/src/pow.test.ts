import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { leadingZeroBits, solveChallenge, solvesChallenge } from './pow.js';

describe('proof of work', () => {
  it('counts leading zero bits', () => {
    expect(leadingZeroBits(Uint8Array.from([0x80]))).toBe(0);
    expect(leadingZeroBits(Uint8Array.from([0x01]))).toBe(7);
    expect(leadingZeroBits(Uint8Array.from([0x00, 0x10]))).toBe(11);
    expect(leadingZeroBits(Uint8Array.from([0, 0]))).toBe(16);
  });

  it('finds a nonce that an independent check accepts', () => {
    const nonce = solveChallenge('a1b2', 12);
    const digest = createHash('sha256').update(`a1b2${nonce}`).digest('hex');
    expect(digest.startsWith('000')).toBe(true);
    expect(solvesChallenge('a1b2', nonce, 12)).toBe(true);
  });

  it('rejects a nonce that does not reach the difficulty', () => {
    let nonce = 0;
    while (solvesChallenge('salt', String(nonce), 1)) nonce++;
    expect(solvesChallenge('salt', String(nonce), 1)).toBe(false);
    expect(solvesChallenge('salt', String(nonce), 0)).toBe(true);
  });
});
