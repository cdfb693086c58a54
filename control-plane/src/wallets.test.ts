import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { getBase58Decoder } from '@solana/kit';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { describe, expect, it } from 'vitest';
import {
  buildSignInMessage,
  normalizeWalletAddress,
  RECOVERY_STATEMENT,
  type SignInMessageInput,
  type SignInSite,
  signInMessageMatches,
  signInMessageNonce,
  signInSite,
  verificationStatement,
  verifyWalletSignature,
} from './wallets.js';

const issuedAt = new Date('2030-01-01T00:00:00.000Z');
const expiresAt = new Date('2030-01-01T00:10:00.000Z');
const during = new Date('2030-01-01T00:05:00.000Z');
const after = new Date('2030-01-01T00:10:00.000Z');

const site: SignInSite = signInSite('http://localhost:8080', 31337, 'localnet');

function input(
  chain: SignInMessageInput['chain'],
  address: string,
  nonce = 'abcDEF123456',
  statement = RECOVERY_STATEMENT,
): SignInMessageInput {
  return { chain, address, statement, site, nonce, issuedAt, expiresAt };
}

function solanaKeypair(): { address: string; privateKey: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const jwk = publicKey.export({ format: 'jwk' });
  const raw = Buffer.from(jwk.x!, 'base64url');
  return { address: getBase58Decoder().decode(raw), privateKey };
}

function signSolana(privateKey: KeyObject, message: string): Buffer {
  return sign(null, Buffer.from(message, 'utf8'), privateKey);
}

describe('EVM wallets', () => {
  const account = privateKeyToAccount(generatePrivateKey());
  const other = privateKeyToAccount(generatePrivateKey());
  const message = buildSignInMessage(input('evm', account.address));

  it('normalizes addresses to their EIP-55 checksum form', () => {
    expect(normalizeWalletAddress('evm', account.address.toLowerCase())).toBe(account.address);
    expect(normalizeWalletAddress('evm', ` ${account.address} `)).toBe(account.address);
    expect(normalizeWalletAddress('evm', '0x1234')).toBeNull();
    expect(normalizeWalletAddress('evm', 'not an address')).toBeNull();
    // Mixed case with a broken checksum is a typo, not a wallet.
    const flipped = account.address.replace(/[a-f]/, (c) => c.toUpperCase());
    if (flipped !== account.address) expect(normalizeWalletAddress('evm', flipped)).toBeNull();
  });

  it('builds a SIWE message with the recovery statement', () => {
    expect(message.split('\n').slice(0, 4)).toEqual([
      'localhost:8080 wants you to sign in with your Ethereum account:',
      account.address,
      '',
      'Recover your Crochet API key. Your earlier keys will be revoked.',
    ]);
    expect(message).toContain('Chain ID: 31337');
    expect(message).toContain('Expiration Time: 2030-01-01T00:10:00.000Z');
  });

  it('accepts the owner signature and rejects others', async () => {
    const signature = await account.signMessage({ message });
    expect(await verifyWalletSignature('evm', account.address, message, signature)).toBe(true);
    expect(await verifyWalletSignature('evm', account.address.toLowerCase(), message, signature)).toBe(true);
    const otherSignature = await other.signMessage({ message });
    expect(await verifyWalletSignature('evm', account.address, message, otherSignature)).toBe(false);
    expect(await verifyWalletSignature('evm', account.address, `${message} `, signature)).toBe(false);
  });

  it('returns false for garbage without throwing', async () => {
    const signature = await account.signMessage({ message });
    for (const bad of ['0x1234', 'zz', '', `0x${'zz'.repeat(65)}`, `0x${'00'.repeat(65)}`]) {
      await expect(verifyWalletSignature('evm', account.address, message, bad)).resolves.toBe(false);
    }
    await expect(verifyWalletSignature('evm', 'nope', message, signature)).resolves.toBe(false);
  });

  it('round-trips the nonce', () => {
    expect(signInMessageNonce(message)).toBe('abcDEF123456');
    expect(signInMessageNonce('no nonce here')).toBeNull();
    expect(signInMessageNonce(`${message}\nNonce: zzzzzzzzzz`)).toBeNull();
  });

  it('matches only the issued message while it is valid', () => {
    const base = {
      chain: 'evm' as const,
      address: account.address,
      statement: RECOVERY_STATEMENT,
      site,
      nonce: 'abcDEF123456',
    };
    expect(signInMessageMatches({ ...base, message, now: during })).toBe(true);
    expect(signInMessageMatches({ ...base, address: account.address.toLowerCase(), message, now: during })).toBe(true);
    expect(signInMessageMatches({ ...base, message, now: after })).toBe(false);
    expect(signInMessageMatches({ ...base, site: { ...site, domain: 'evil.example' }, message, now: during })).toBe(
      false,
    );
    expect(signInMessageMatches({ ...base, site: { ...site, uri: 'http://evil.example' }, message, now: during })).toBe(
      false,
    );
    expect(signInMessageMatches({ ...base, site: { ...site, evmChainId: 1 }, message, now: during })).toBe(false);
    expect(signInMessageMatches({ ...base, nonce: 'otherNonce99', message, now: during })).toBe(false);
    expect(signInMessageMatches({ ...base, address: other.address, message, now: during })).toBe(false);
    expect(signInMessageMatches({ ...base, message: `${message}\nextra`, now: during })).toBe(false);
    expect(signInMessageMatches({ ...base, message: 'garbage', now: during })).toBe(false);
  });
});

describe('Solana wallets', () => {
  const wallet = solanaKeypair();
  const other = solanaKeypair();
  const message = buildSignInMessage(input('solana', wallet.address));

  it('normalizes addresses that decode to 32 bytes', () => {
    expect(normalizeWalletAddress('solana', wallet.address)).toBe(wallet.address);
    expect(normalizeWalletAddress('solana', '11111111111111111111111111111111')).toBe(
      '11111111111111111111111111111111',
    );
    expect(normalizeWalletAddress('solana', 'abc')).toBeNull();
    expect(normalizeWalletAddress('solana', '0OIl'.repeat(11))).toBeNull();
    expect(normalizeWalletAddress('solana', account0x())).toBeNull();
  });

  it('builds a Sign-In-With-Solana message', () => {
    expect(message).toBe(
      [
        'localhost:8080 wants you to sign in with your Solana account:',
        wallet.address,
        '',
        'Recover your Crochet API key. Your earlier keys will be revoked.',
        '',
        'URI: http://localhost:8080',
        'Version: 1',
        'Chain ID: localnet',
        'Nonce: abcDEF123456',
        'Issued At: 2030-01-01T00:00:00.000Z',
        'Expiration Time: 2030-01-01T00:10:00.000Z',
      ].join('\n'),
    );
    expect(() => buildSignInMessage(input('solana', wallet.address, 'short'))).toThrow();
  });

  it('accepts base58 and base64 signatures by the owner', async () => {
    const signature = signSolana(wallet.privateKey, message);
    const base58 = getBase58Decoder().decode(signature);
    expect(await verifyWalletSignature('solana', wallet.address, message, base58)).toBe(true);
    expect(await verifyWalletSignature('solana', wallet.address, message, signature.toString('base64'))).toBe(true);
  });

  it('rejects other keys, altered messages and garbage', async () => {
    const signature = getBase58Decoder().decode(signSolana(wallet.privateKey, message));
    const otherSignature = getBase58Decoder().decode(signSolana(other.privateKey, message));
    expect(await verifyWalletSignature('solana', wallet.address, message, otherSignature)).toBe(false);
    expect(await verifyWalletSignature('solana', other.address, message, signature)).toBe(false);
    expect(await verifyWalletSignature('solana', wallet.address, `${message} `, signature)).toBe(false);
    for (const bad of ['', 'zz', '0x1234', '!!!!', 'A'.repeat(88), signature.slice(0, 40)]) {
      await expect(verifyWalletSignature('solana', wallet.address, message, bad)).resolves.toBe(false);
    }
    await expect(verifyWalletSignature('solana', 'abc', message, signature)).resolves.toBe(false);
  });

  it('round-trips the nonce', () => {
    expect(signInMessageNonce(message)).toBe('abcDEF123456');
  });

  it('matches only the issued message while it is valid', () => {
    const base = {
      chain: 'solana' as const,
      address: wallet.address,
      statement: RECOVERY_STATEMENT,
      site,
      nonce: 'abcDEF123456',
    };
    expect(signInMessageMatches({ ...base, message, now: during })).toBe(true);
    expect(signInMessageMatches({ ...base, message, now: after })).toBe(false);
    expect(signInMessageMatches({ ...base, site: { ...site, domain: 'evil.example' }, message, now: during })).toBe(
      false,
    );
    expect(signInMessageMatches({ ...base, site: { ...site, uri: 'http://evil.example' }, message, now: during })).toBe(
      false,
    );
    expect(signInMessageMatches({ ...base, site: { ...site, solanaChainId: 'mainnet' }, message, now: during })).toBe(
      false,
    );
    expect(signInMessageMatches({ ...base, nonce: 'otherNonce99', message, now: during })).toBe(false);
    expect(signInMessageMatches({ ...base, address: other.address, message, now: during })).toBe(false);
    const laterExpiry = message.replace('Expiration Time: 2030-01-01T00:10:00.000Z', 'Expiration Time: 2031-01-01');
    expect(signInMessageMatches({ ...base, message: laterExpiry, now: after })).toBe(false);
    const evmMessage = buildSignInMessage(input('evm', privateKeyToAccount(generatePrivateKey()).address));
    expect(signInMessageMatches({ ...base, message: evmMessage, now: during })).toBe(false);
  });
});

describe('what a message is for', () => {
  const account = privateKeyToAccount(generatePrivateKey());
  const wallet = solanaKeypair();

  it('names the agent in a verification message, and one agent’s message never counts for another or for recovery', () => {
    for (const [chain, address] of [
      ['evm', account.address],
      ['solana', wallet.address],
    ] as const) {
      const statement = verificationStatement('agt_alice');
      const message = buildSignInMessage(input(chain, address, 'abcDEF123456', statement));
      expect(message).toContain(`\n${statement}\n`);
      const base = { chain, address, site, nonce: 'abcDEF123456', message, now: during };
      expect(signInMessageMatches({ ...base, statement })).toBe(true);
      expect(signInMessageMatches({ ...base, statement: verificationStatement('agt_mallory') })).toBe(false);
      expect(signInMessageMatches({ ...base, statement: RECOVERY_STATEMENT })).toBe(false);
      // And a recovery message does not verify a wallet.
      const recovery = buildSignInMessage(input(chain, address));
      expect(signInMessageMatches({ ...base, message: recovery, statement })).toBe(false);
    }
  });
});

function account0x(): string {
  return privateKeyToAccount(generatePrivateKey()).address;
}
