import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane, verifyWallet } from './helpers.js';
import { evmWallet, publishedEvmWallets, solanaWallet } from './wallets-support.js';

/**
 * A wallet belongs to one agent (DESIGN §3.9). One verified by an agent cannot be taken by another, also when both
 * sign at once; one only named at registration, never proved, gives way to the agent that signs with it.
 */
let plane: TestPlane;
beforeAll(async () => {
  plane = await startTestControlPlane();
});
afterAll(() => plane?.stop());

const wallets = async (apiKey: string) =>
  (await plane.call('GET', '/api/v1/me/wallets', { key: apiKey })).body.data as { address: string }[];

describe('a wallet verified by one agent', () => {
  it('cannot be claimed by another: refused at the challenge, and at the signature if verified in between', async () => {
    const owner = await plane.register('owner');
    const other = await plane.register('other');
    const wallet = evmWallet();

    // The other agent asked first; the owner verifies before it signs.
    const early = await plane.call('POST', '/api/v1/me/wallets/challenge', {
      key: other.apiKey,
      body: { chain: 'evm', address: wallet.address },
    });
    expect(early.status).toBe(201);
    expect((await verifyWallet(plane, owner.apiKey, wallet)).status).toBe(201);
    const late = await plane.call('POST', '/api/v1/me/wallets', {
      key: other.apiKey,
      body: {
        chain: 'evm',
        address: wallet.address,
        message: early.body.data.message,
        signature: await wallet.sign(early.body.data.message),
      },
    });
    expect(late.status).toBe(409);
    expect(late.body.error.code).toBe('WALLET_ALREADY_VERIFIED');
    expect(late.body.error.hint).toContain('DELETE /api/v1/me/wallets/:address');

    const refused = await verifyWallet(plane, other.apiKey, wallet);
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('WALLET_ALREADY_VERIFIED');
    const solana = solanaWallet();
    expect((await verifyWallet(plane, owner.apiKey, solana)).status).toBe(201);
    expect((await verifyWallet(plane, other.apiKey, solana)).body.error.code).toBe('WALLET_ALREADY_VERIFIED');

    expect(await wallets(other.apiKey)).toEqual([]);
    expect((await wallets(owner.apiKey)).map((w) => w.address)).toEqual([wallet.address, solana.address]);
    expect(await publishedEvmWallets(plane, other.agentId)).toEqual([]);
    expect(await publishedEvmWallets(plane, owner.agentId)).toEqual([wallet.address.toLowerCase()]);
  });

  it('goes to exactly one of two agents signing for it at once', async () => {
    const wallet = evmWallet();
    const agents = await Promise.all(Array.from({ length: 4 }, (_, i) => plane.register(`racer ${i}`)));
    const signed = await Promise.all(
      agents.map(async ({ apiKey }) => {
        const { body } = await plane.call('POST', '/api/v1/me/wallets/challenge', {
          key: apiKey,
          body: { chain: 'evm', address: wallet.address },
        });
        return { apiKey, message: body.data.message as string, signature: await wallet.sign(body.data.message) };
      }),
    );
    const answers = await Promise.all(
      signed.map(({ apiKey, message, signature }) =>
        plane.call('POST', '/api/v1/me/wallets', {
          key: apiKey,
          body: { chain: 'evm', address: wallet.address, message, signature },
        }),
      ),
    );
    expect(answers.map((a) => a.status).sort()).toEqual([201, 409, 409, 409]);
    for (const a of answers.filter((a) => a.status === 409)) expect(a.body.error.code).toBe('WALLET_ALREADY_VERIFIED');
    const { rows } = await plane.deps.pool.query('SELECT agent_id FROM wallets WHERE address = $1', [wallet.address]);
    expect(rows).toHaveLength(1);
    const winner = agents.find((_, i) => answers[i]!.status === 201)!;
    expect(rows[0].agent_id).toBe(winner.agentId);
  });
});

describe('a wallet another agent only named at registration', () => {
  it('moves to the agent that signs with it; recovery with it then recovers that agent', async () => {
    const wallet = evmWallet();
    const squatter = await plane.register('squatter', { chain: 'evm', address: wallet.address });
    const owner = await plane.register('owner');
    const moved = await verifyWallet(plane, owner.apiKey, wallet);
    expect(moved.status, moved.text).toBe(201);
    expect(moved.body.data).toMatchObject({ address: wallet.address, verified: true });
    expect(await wallets(squatter.apiKey)).toEqual([]);
    expect((await wallets(owner.apiKey)).map((w) => w.address)).toEqual([wallet.address]);

    const { message } = (
      await plane.call('POST', '/api/v1/auth/recover/challenge', { body: { chain: 'evm', address: wallet.address } })
    ).body.data;
    const recovered = await plane.call('POST', '/api/v1/auth/recover', {
      body: { chain: 'evm', address: wallet.address, message, signature: await wallet.sign(message) },
    });
    expect(recovered.status, recovered.text).toBe(200);
    expect(recovered.body.data.agent.id).toBe(owner.agentId);
    // The squatter's key was never touched.
    expect((await plane.call('GET', '/api/v1/me', { key: squatter.apiKey })).status).toBe(200);
  });
});
