import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane, type TestWallet, verifyWallet } from './helpers.js';
import { evmWallet, publishedEvmWallets, solanaWallet } from './wallets-support.js';

/**
 * DESIGN §3.9 wallets: an agent adds a wallet by signing a sign-in message with it, with its API key, and keeps its
 * keys. The message is bound to the site, the wallet and the agent, works once and expires; a signed message is
 * worth nothing to another agent or to recovery.
 */
let plane: TestPlane;
beforeAll(async () => {
  plane = await startTestControlPlane({ CROCHET_SIWE_CHAIN_ID: '31337', CROCHET_SIWS_CHAIN_ID: 'localnet' });
});
afterAll(() => plane?.stop());

const challenge = async (apiKey: string, chain: string, address: string) => {
  const res = await plane.call('POST', '/api/v1/me/wallets/challenge', { key: apiKey, body: { chain, address } });
  expect(res.status, res.text).toBe(201);
  return res.body.data as { message: string; nonce: string; expires_at: string };
};
const add = (apiKey: string, body: Record<string, unknown>) =>
  plane.call('POST', '/api/v1/me/wallets', { key: apiKey, body });
/** Sends `message` for `wallet`, signed by `signer` (the wallet itself unless a test says otherwise). */
const signAndAdd = async (apiKey: string, wallet: TestWallet, message: string, signer: TestWallet = wallet) =>
  add(apiKey, { chain: wallet.chain, address: wallet.address, message, signature: await signer.sign(message) });

describe('adding a wallet with an API key', () => {
  it('verifies an EVM wallet with a SIWE signature, publishes it to the proxies, and leaves the keys alone', async () => {
    const { apiKey, agentId } = await plane.register('evm adder');
    const wallet = evmWallet();
    const { message, nonce, expires_at } = await challenge(apiKey, 'evm', wallet.address.toLowerCase());
    const lines = message.split('\n');
    expect(lines.slice(0, 4)).toEqual([
      'crochet.test:8080 wants you to sign in with your Ethereum account:',
      wallet.address,
      '',
      `Add this wallet to Crochet agent ${agentId}: payments from it count as this agent's and payouts may be sent to it.`,
    ]);
    expect(lines).toContain('URI: http://crochet.test:8080');
    expect(lines).toContain('Chain ID: 31337');
    expect(lines).toContain(`Nonce: ${nonce}`);
    expect(lines.some((l) => l.startsWith('Issued At: '))).toBe(true);
    expect(lines).toContain(`Expiration Time: ${expires_at}`);

    const added = await signAndAdd(apiKey, wallet, message);
    expect(added.status, added.text).toBe(201);
    expect(added.body.data).toMatchObject({ chain: 'evm', address: wallet.address, verified: true });
    expect(added.body.data.verified_at).toEqual(expect.any(String));
    // Published before the answer: the proxies' next config read has it.
    expect(await publishedEvmWallets(plane, agentId)).toEqual([wallet.address.toLowerCase()]);

    const me = await plane.call('GET', '/api/v1/me', { key: apiKey });
    expect(me.status).toBe(200);
    expect(me.body.data.keys).toHaveLength(1);
    expect(me.body.data.keys[0].revoked_at).toBeNull();
    expect(me.body.data.wallets).toEqual([added.body.data]);
    const list = await plane.call('GET', '/api/v1/me/wallets', { key: apiKey });
    expect(list.body.data).toEqual([added.body.data]);

    // Once only.
    const again = await signAndAdd(apiKey, wallet, message);
    expect(again.status).toBe(400);
    expect(again.body.error.code).toBe('WALLET_MESSAGE_INVALID');
    expect(again.body.error.hint).toContain('POST /api/v1/me/wallets/challenge');
    // Verifying it again is harmless: 200, nothing changes.
    const repeated = await verifyWallet(plane, apiKey, wallet);
    expect(repeated.status, repeated.text).toBe(200);
    expect(repeated.body.data).toEqual(added.body.data);
  });

  it('verifies a Solana wallet with an ed25519 signature (not an EVM wallet for the proxies)', async () => {
    const { apiKey, agentId } = await plane.register('sol adder');
    const wallet = solanaWallet();
    const { message } = await challenge(apiKey, 'solana', wallet.address);
    expect(message).toContain('wants you to sign in with your Solana account');
    expect(message).toContain(`Crochet agent ${agentId}:`);
    expect(message).toContain('Chain ID: localnet');
    const added = await signAndAdd(apiKey, wallet, message);
    expect(added.status, added.text).toBe(201);
    expect(added.body.data).toMatchObject({ chain: 'solana', address: wallet.address, verified: true });
    expect(await publishedEvmWallets(plane, agentId)).toEqual([]);
  });

  it('verifies the wallet named at registration (200: it was already yours)', async () => {
    const wallet = evmWallet();
    const { apiKey, agentId } = await plane.register('named', { chain: 'evm', address: wallet.address });
    expect((await plane.call('GET', '/api/v1/me/wallets', { key: apiKey })).body.data[0].verified).toBe(false);
    expect(await publishedEvmWallets(plane, agentId)).toEqual([]);
    const res = await verifyWallet(plane, apiKey, wallet);
    expect(res.status, res.text).toBe(200);
    expect(res.body.data).toMatchObject({ address: wallet.address, verified: true });
    expect(await publishedEvmWallets(plane, agentId)).toEqual([wallet.address.toLowerCase()]);
  });

  it('refuses a signature by another wallet (the challenge stays usable), an altered message and an expired one', async () => {
    const { apiKey } = await plane.register('careful');
    const wallet = evmWallet();
    const thief = evmWallet();
    const { message, nonce } = await challenge(apiKey, 'evm', wallet.address);
    const forged = await signAndAdd(apiKey, wallet, message, thief);
    expect(forged.status).toBe(400);
    expect(forged.body.error.code).toBe('WALLET_SIGNATURE_INVALID');
    const garbage = await add(apiKey, { chain: 'evm', address: wallet.address, message, signature: '0x1234' });
    expect(garbage.body.error.code).toBe('WALLET_SIGNATURE_INVALID');

    const altered = message.replace('payouts may be sent', 'payouts may not be sent');
    const tampered = await signAndAdd(apiKey, wallet, altered);
    expect(tampered.status).toBe(400);
    expect(tampered.body.error.code).toBe('WALLET_MESSAGE_INVALID');
    // The message names its wallet: it does not add another one the signer holds.
    const otherWallet = await signAndAdd(apiKey, thief, message);
    expect(otherWallet.body.error.code).toBe('WALLET_MESSAGE_INVALID');

    await plane.deps.pool.query(
      "UPDATE wallet_challenges SET expires_at = now() - interval '1 second' WHERE nonce = $1",
      [nonce],
    );
    const late = await signAndAdd(apiKey, wallet, message);
    expect(late.status).toBe(400);
    expect(late.body.error.code).toBe('WALLET_MESSAGE_INVALID');
    expect((await plane.call('GET', '/api/v1/me/wallets', { key: apiKey })).body.data).toEqual([]);

    // Before it expired, the failed attempts had not used it up.
    const fresh = await challenge(apiKey, 'evm', wallet.address);
    await signAndAdd(apiKey, wallet, fresh.message, thief);
    const ok = await signAndAdd(apiKey, wallet, fresh.message);
    expect(ok.status, ok.text).toBe(201);
  });

  it('refuses a signed message replayed by another agent, and a recovery message; neither works the other way', async () => {
    const alice = await plane.register('alice');
    const mallory = await plane.register('mallory');
    const wallet = evmWallet();
    const { message } = await challenge(alice.apiKey, 'evm', wallet.address);
    const signature = await wallet.sign(message);
    const replayed = await add(mallory.apiKey, { chain: 'evm', address: wallet.address, message, signature });
    expect(replayed.status).toBe(400);
    expect(replayed.body.error.code).toBe('WALLET_MESSAGE_INVALID');
    expect((await plane.call('GET', '/api/v1/me/wallets', { key: mallory.apiKey })).body.data).toEqual([]);
    // Nor does it recover anything (and Alice keeps her key).
    const asRecovery = await plane.call('POST', '/api/v1/auth/recover', {
      body: { chain: 'evm', address: wallet.address, message, signature },
    });
    expect(asRecovery.status).toBe(400);
    expect(asRecovery.body.error.code).toBe('RECOVERY_MESSAGE_INVALID');
    // Alice's own message still works, once.
    const added = await add(alice.apiKey, { chain: 'evm', address: wallet.address, message, signature });
    expect(added.status, added.text).toBe(201);

    // Now registered: a verification message still does not recover the agent, and a recovery one does not add it.
    const stillNot = await plane.call('POST', '/api/v1/auth/recover', {
      body: { chain: 'evm', address: wallet.address, ...(await signedChallenge(alice.apiKey, wallet)) },
    });
    expect(stillNot.status).toBe(400);
    expect(stillNot.body.error.code).toBe('RECOVERY_MESSAGE_INVALID');
    const recovery = await plane.call('POST', '/api/v1/auth/recover/challenge', {
      body: { chain: 'evm', address: wallet.address },
    });
    const recoveryMessage = recovery.body.data.message as string;
    const asVerification = await signAndAdd(alice.apiKey, wallet, recoveryMessage);
    expect(asVerification.body.error.code).toBe('WALLET_MESSAGE_INVALID');
    expect((await plane.call('GET', '/api/v1/me', { key: alice.apiKey })).status).toBe(200);
  });

  it('needs an API key and a valid address', async () => {
    const noKey = await plane.call('POST', '/api/v1/me/wallets/challenge', {
      body: { chain: 'evm', address: evmWallet().address },
    });
    expect(noKey.status).toBe(401);
    const { apiKey } = await plane.register('typo');
    const bad = await plane.call('POST', '/api/v1/me/wallets/challenge', {
      key: apiKey,
      body: { chain: 'evm', address: '0x1234' },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('WALLET_ADDRESS_INVALID');
    const solanaAsEvm = await plane.call('POST', '/api/v1/me/wallets/challenge', {
      key: apiKey,
      body: { chain: 'evm', address: solanaWallet().address },
    });
    expect(solanaAsEvm.body.error.code).toBe('WALLET_ADDRESS_INVALID');
  });
});

async function signedChallenge(apiKey: string, wallet: ReturnType<typeof evmWallet>) {
  const { message } = await challenge(apiKey, wallet.chain, wallet.address);
  return { message, signature: await wallet.sign(message) };
}
