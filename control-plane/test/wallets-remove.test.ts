import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane, verifyWallet } from './helpers.js';
import { evmWallet, publishedEvmWallets, solanaWallet } from './wallets-support.js';

/**
 * DELETE /api/v1/me/wallets/:address (DESIGN §3.9): removal is the agent's own, takes effect in the published config
 * before it answers (transfers from the wallet stop paying), frees the wallet for whoever proves control next, and
 * ends recovery with it. Nobody removes another agent's wallet.
 */
let plane: TestPlane;
beforeAll(async () => {
  plane = await startTestControlPlane({ CROCHET_MAX_WALLETS: '2' });
});
afterAll(() => plane?.stop());

const remove = (apiKey: string, address: string) =>
  plane.call('DELETE', `/api/v1/me/wallets/${encodeURIComponent(address)}`, { key: apiKey });
const wallets = async (apiKey: string) =>
  ((await plane.call('GET', '/api/v1/me/wallets', { key: apiKey })).body.data as { address: string }[]).map(
    (w) => w.address,
  );

describe('removing a wallet', () => {
  it('unpublishes it at once, frees it for another agent and ends recovery with it', async () => {
    const owner = await plane.register('owner');
    const wallet = evmWallet();
    expect((await verifyWallet(plane, owner.apiKey, wallet)).status).toBe(201);
    expect(await publishedEvmWallets(plane, owner.agentId)).toEqual([wallet.address.toLowerCase()]);

    const removed = await remove(owner.apiKey, wallet.address.toLowerCase());
    expect(removed.status, removed.text).toBe(200);
    expect(removed.body.data).toMatchObject({ chain: 'evm', address: wallet.address, verified: true });
    expect(await publishedEvmWallets(plane, owner.agentId)).toEqual([]);
    expect(await wallets(owner.apiKey)).toEqual([]);
    expect((await plane.call('GET', '/api/v1/me', { key: owner.apiKey })).status).toBe(200);

    const recovery = await plane.call('POST', '/api/v1/auth/recover/challenge', {
      body: { chain: 'evm', address: wallet.address },
    });
    expect(recovery.status).toBe(404);
    expect(recovery.body.error.code).toBe('WALLET_NOT_FOUND');

    const next = await plane.register('next');
    expect((await verifyWallet(plane, next.apiKey, wallet)).status).toBe(201);
    expect(await publishedEvmWallets(plane, next.agentId)).toEqual([wallet.address.toLowerCase()]);
  });

  it("refuses to remove another agent's wallet, an unknown one and a malformed address", async () => {
    const owner = await plane.register('keeper');
    const other = await plane.register('meddler');
    const evm = evmWallet();
    const solana = solanaWallet();
    expect((await verifyWallet(plane, owner.apiKey, evm)).status).toBe(201);
    expect((await verifyWallet(plane, owner.apiKey, solana)).status).toBe(201);

    for (const address of [evm.address, solana.address, evmWallet().address]) {
      const res = await remove(other.apiKey, address);
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('WALLET_NOT_FOUND');
      expect(res.body.error.hint).toBe('GET /api/v1/me/wallets lists your wallets.');
    }
    expect((await remove(other.apiKey, '0x1234')).body.error.code).toBe('WALLET_ADDRESS_INVALID');
    expect((await remove(other.apiKey, 'not-base58!')).body.error.code).toBe('WALLET_ADDRESS_INVALID');
    expect(await wallets(owner.apiKey)).toEqual([evm.address, solana.address]);
    expect(await publishedEvmWallets(plane, owner.agentId)).toEqual([evm.address.toLowerCase()]);

    // A Solana address names its chain too.
    expect((await remove(owner.apiKey, solana.address)).status).toBe(200);
    expect(await wallets(owner.apiKey)).toEqual([evm.address]);
  });

  it('makes room under the wallet limit', async () => {
    const agent = await plane.register('collector');
    expect((await verifyWallet(plane, agent.apiKey, evmWallet())).status).toBe(201);
    const second = evmWallet();
    expect((await verifyWallet(plane, agent.apiKey, second)).status).toBe(201);
    const third = solanaWallet();
    const full = await verifyWallet(plane, agent.apiKey, third);
    expect(full.status).toBe(409);
    expect(full.body.error.code).toBe('WALLET_LIMIT_REACHED');
    expect(full.body.error.message).toBe('You have 2 wallets, the maximum.');
    // Verifying one it already has is not an addition.
    expect((await verifyWallet(plane, agent.apiKey, second)).status).toBe(200);

    expect((await remove(agent.apiKey, second.address)).status).toBe(200);
    expect((await verifyWallet(plane, agent.apiKey, third)).status).toBe(201);
  });
});
