import { generateKeyPairSync, sign } from 'node:crypto';
import { getBase58Decoder } from '@solana/kit';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';

let plane: TestPlane;
beforeAll(async () => {
  plane = await startTestControlPlane();
});
afterAll(() => plane.stop());

const solanaWallet = () => {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  const base58 = getBase58Decoder();
  return {
    address: base58.decode(raw),
    sign: (message: string) => base58.decode(sign(null, Buffer.from(message, 'utf8'), privateKey)),
  };
};

describe('wallet recovery', () => {
  it('recovers an EVM agent with a SIWE signature, revoking its earlier keys', async () => {
    const account = privateKeyToAccount(generatePrivateKey());
    const { apiKey, agentId } = await plane.register('evm-agent', { chain: 'evm', address: account.address });
    const challenge = await plane.call('POST', '/api/v1/auth/recover/challenge', {
      body: { chain: 'evm', address: account.address.toLowerCase() },
    });
    expect(challenge.status).toBe(201);
    const { message } = challenge.body.data;
    expect(message).toContain('wants you to sign in with your Ethereum account');
    expect(message).toContain(account.address);
    const signature = await account.signMessage({ message });

    const recovered = await plane.call('POST', '/api/v1/auth/recover', {
      body: { chain: 'evm', address: account.address, message, signature },
    });
    expect(recovered.status).toBe(200);
    expect(recovered.body.data.agent.id).toBe(agentId);
    const newKey = recovered.body.data.api_key;
    expect((await plane.call('GET', '/api/v1/me', { key: newKey })).status).toBe(200);
    const old = await plane.call('GET', '/api/v1/me', { key: apiKey });
    expect(old.status).toBe(401);
    expect(old.body.error.code).toBe('API_KEY_REVOKED');
    const me = await plane.call('GET', '/api/v1/me', { key: newKey });
    expect(me.body.data.wallets[0]).toMatchObject({ chain: 'evm', verified: true });

    // The message is single-use.
    const again = await plane.call('POST', '/api/v1/auth/recover', {
      body: { chain: 'evm', address: account.address, message, signature },
    });
    expect(again.status).toBe(400);
    expect(again.body.error.code).toBe('RECOVERY_MESSAGE_INVALID');
  });

  it('recovers a Solana agent with an ed25519 signature', async () => {
    const wallet = solanaWallet();
    const { agentId } = await plane.register('sol-agent', { chain: 'solana', address: wallet.address });
    const { message } = (
      await plane.call('POST', '/api/v1/auth/recover/challenge', { body: { chain: 'solana', address: wallet.address } })
    ).body.data;
    expect(message).toContain('wants you to sign in with your Solana account');
    const res = await plane.call('POST', '/api/v1/auth/recover', {
      body: { chain: 'solana', address: wallet.address, message, signature: wallet.sign(message) },
    });
    expect(res.status).toBe(200);
    expect(res.body.data.agent.id).toBe(agentId);
  });

  it('refuses a signature by another wallet, an altered message and an unknown wallet', async () => {
    const owner = privateKeyToAccount(generatePrivateKey());
    const thief = privateKeyToAccount(generatePrivateKey());
    const { apiKey } = await plane.register('victim', { chain: 'evm', address: owner.address });
    const { message } = (
      await plane.call('POST', '/api/v1/auth/recover/challenge', { body: { chain: 'evm', address: owner.address } })
    ).body.data;

    const forged = await plane.call('POST', '/api/v1/auth/recover', {
      body: { chain: 'evm', address: owner.address, message, signature: await thief.signMessage({ message }) },
    });
    expect(forged.status).toBe(401);
    expect(forged.body.error.code).toBe('RECOVERY_SIGNATURE_INVALID');

    const altered = message.replace('Recover', 'recover');
    const tampered = await plane.call('POST', '/api/v1/auth/recover', {
      body: {
        chain: 'evm',
        address: owner.address,
        message: altered,
        signature: await owner.signMessage({ message: altered }),
      },
    });
    expect(tampered.status).toBe(400);
    expect(tampered.body.error.code).toBe('RECOVERY_MESSAGE_INVALID');

    const garbage = await plane.call('POST', '/api/v1/auth/recover', {
      body: { chain: 'evm', address: owner.address, message, signature: '0x1234' },
    });
    expect(garbage.status).toBe(401);
    expect(garbage.body.error.code).toBe('RECOVERY_SIGNATURE_INVALID');

    // Nothing above revoked the owner's key.
    expect((await plane.call('GET', '/api/v1/me', { key: apiKey })).status).toBe(200);

    const unknown = await plane.call('POST', '/api/v1/auth/recover/challenge', {
      body: { chain: 'evm', address: thief.address },
    });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('WALLET_NOT_FOUND');
  });

  it('refuses an expired recovery message', async () => {
    const account = privateKeyToAccount(generatePrivateKey());
    await plane.register('late', { chain: 'evm', address: account.address });
    const { message, nonce } = (
      await plane.call('POST', '/api/v1/auth/recover/challenge', { body: { chain: 'evm', address: account.address } })
    ).body.data;
    await plane.deps.pool.query(
      "UPDATE wallet_challenges SET expires_at = now() - interval '1 second' WHERE nonce = $1",
      [nonce],
    );
    const res = await plane.call('POST', '/api/v1/auth/recover', {
      body: { chain: 'evm', address: account.address, message, signature: await account.signMessage({ message }) },
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('RECOVERY_MESSAGE_INVALID');
  });
});
