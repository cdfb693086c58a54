import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CryptoBox } from './crypto-box.js';

describe('CryptoBox', () => {
  const key = randomBytes(32);

  it('round-trips and never contains the plaintext', () => {
    const box = new CryptoBox(key);
    const sealed = box.seal('https://seller.example/private', 'listing:lst_1:url');
    expect(sealed).not.toContain('seller.example');
    expect(box.open(sealed, 'listing:lst_1:url')).toBe('https://seller.example/private');
  });

  it('refuses another context, a tampered value and an unknown key', () => {
    const box = new CryptoBox(key);
    const sealed = box.seal('secret', 'listing:lst_1:url');
    expect(() => box.open(sealed, 'listing:lst_2:url')).toThrow();
    const tampered = sealed.slice(0, -2) + (sealed.endsWith('A') ? 'BB' : 'AA');
    expect(() => box.open(tampered, 'listing:lst_1:url')).toThrow();
    expect(() => new CryptoBox(randomBytes(32)).open(sealed, 'listing:lst_1:url')).toThrow();
  });

  it('opens values sealed with a previous key during a rotation', () => {
    const sealed = new CryptoBox(key).seal('secret', 'ctx');
    const rotated = new CryptoBox(randomBytes(32), [key]);
    expect(rotated.open(sealed, 'ctx')).toBe('secret');
    expect(rotated.seal('secret', 'ctx').split('.')[1]).not.toBe(sealed.split('.')[1]);
  });

  it('parses base64 and base64url keys of 32 bytes only', () => {
    expect(CryptoBox.parseKey(key.toString('base64'))?.equals(key)).toBe(true);
    expect(CryptoBox.parseKey(key.toString('base64url'))?.equals(key)).toBe(true);
    expect(CryptoBox.parseKey(randomBytes(16).toString('base64'))).toBeNull();
  });
});
