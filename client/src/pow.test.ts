import { randomBytes } from 'node:crypto';
import { solveChallenge as bruteForce, solvesChallenge } from '@crochet/protocol';
import { describe, expect, it } from 'vitest';
import { solveChallenge } from './pow.js';

describe('the one-block proof-of-work solver', () => {
  it('finds the same (smallest) nonce as the plain search, for salts of any length that fits a block', () => {
    for (const length of [0, 1, 16, 32, 40]) {
      for (let i = 0; i < 5; i++) {
        const salt = randomBytes(32).toString('hex').slice(0, length);
        const nonce = solveChallenge(salt, 10);
        expect(solvesChallenge(salt, nonce, 10)).toBe(true);
        expect(nonce).toBe(bruteForce(salt, 10));
      }
    }
  });

  it('falls back to the plain search for salts too long for one block', () => {
    const salt = 'x'.repeat(60);
    expect(solveChallenge(salt, 6)).toBe(bruteForce(salt, 6));
  });
});
