import { mintUsdc, usdcBalance, usdcBalanceOf } from '@crochet/dev-chains';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyWallet } from '../../control-plane/test/helpers.js';
import { evmWallet, solanaWallet } from '../../control-plane/test/wallets-support.js';
import { createPaidListing, type PaymentStack, paySolana, startPaymentStack } from './payment-stack.js';
import { eventually, gatewayCall, startSeller, type TestSeller } from './stack.js';
import { runTransfersOnce, runTransferWorker, transferRow } from './transfer-support.js';

/**
 * DESIGN §3.9, exactly once across crashes: the transfers job runs in a process of its own that is killed (SIGKILL)
 * at a point of a payout's way out; the control plane then finds the payout where its row says and finishes it. Killed
 * after signing and before sending: it is sent once. Killed after sending and before booking: the transaction is
 * found on chain and booked once — never sent twice.
 */

let stack: PaymentStack;
let seller: TestSeller;
let buyerKey: string;

beforeAll(async () => {
  // No timer: transfers run only when this test says (the worker, or runOnce).
  stack = await startPaymentStack({ planeEnv: { CROCHET_TRANSFERS_INTERVAL_MS: '0' } });
  seller = await startSeller();
  buyerKey = (await stack.plane.register('buyer')).apiKey;
}, 60_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

const runWorker = (crashAt: string) => runTransferWorker(stack, crashAt);
const row = (id: string) => transferRow(stack, id);

const journals = async (id: string) =>
  (await stack.plane.deps.pool.query('SELECT kind FROM ledger_journals WHERE transfer_id = $1', [id])).rows;

/** A seller with 1.9 USDC payable, a verified wallet on `chain`, and a payout of 1.5 asked for (not sent yet). */
const payoutAskedFor = async (chain: 'solana' | 'evm' = 'solana') => {
  const agent = await stack.plane.register('seller');
  const listingId = await createPaidListing(stack, agent.apiKey, `${seller.url}/svc`, '2');
  const proof = await paySolana(stack, listingId, buyerKey, 2_000_000n);
  expect((await gatewayCall(stack.proxies[0]!, listingId, buyerKey, { headers: proof })).status).toBe(200);
  await eventually(async () => {
    const res = await stack.plane.call('GET', '/api/v1/ledger/balances', { key: agent.apiKey });
    expect(res.body.data.find((b: any) => b.account === 'payable')?.amount).toBe('1.9');
  }, 10_000);
  const wallet = chain === 'solana' ? solanaWallet() : evmWallet();
  expect((await verifyWallet(stack.plane, agent.apiKey, wallet)).status).toBe(201);
  const network = chain === 'solana' ? stack.solana.caip2 : stack.evm.caip2;
  // The control plane would start the payout at once: the job's lock, held here, keeps it for the worker.
  const holder = await stack.plane.deps.pool.connect();
  await holder.query('SELECT pg_advisory_lock(7312004120)');
  const asked = await stack.plane.call('POST', '/api/v1/payouts', {
    key: agent.apiKey,
    body: { network, amount: '1.5' },
  });
  await stack.plane.transfers.idle(); // its run, started by the request, found the lock taken
  await holder.query('SELECT pg_advisory_unlock(7312004120)');
  holder.release();
  expect(asked.status, asked.text).toBe(201);
  return { id: asked.body.data.id as string, wallet: wallet.address, key: agent.apiKey };
};

/** The USDC balance of an address on the chain of `chain`. */
const balanceOf = (chain: 'solana' | 'evm', owner: string): Promise<bigint> =>
  chain === 'solana' ? usdcBalanceOf(stack.solana, owner) : usdcBalance(stack.evm, owner as `0x${string}`);

describe('a payout whose sender dies', () => {
  it('after signing, before sending: sent once on restart', async () => {
    const payout = await payoutAskedFor();
    const worker = await runWorker('signed');
    expect(worker.signal, worker.stderr).toBe('SIGKILL');
    const left = await row(payout.id);
    expect(left).toMatchObject({ status: 'pending', signed: true, journal_id: null });
    expect(await usdcBalanceOf(stack.solana, payout.wallet)).toBe(0n);

    // A run that took the job's lock: the killed worker's session may hold it a moment longer.
    await runTransfersOnce(stack);
    expect(await row(payout.id)).toMatchObject({ status: 'confirmed', tx: left.tx });
    expect(await usdcBalanceOf(stack.solana, payout.wallet)).toBe(1_500_000n);
    expect(await journals(payout.id)).toEqual([{ kind: 'payout' }]);
    // Runs after change nothing.
    await runTransfersOnce(stack);
    expect(await usdcBalanceOf(stack.solana, payout.wallet)).toBe(1_500_000n);
    expect(await journals(payout.id)).toHaveLength(1);
  });

  it.each(['solana', 'evm'] as const)(
    'after sending, before booking (%s): found on chain and booked once, never sent again',
    async (chain) => {
      // The EVM treasury holds USDC from EVM payments; here it is minted.
      if (chain === 'evm') await mintUsdc(stack.evm, stack.evmPayTo, 10_000_000n);
      const payout = await payoutAskedFor(chain);
      const worker = await runWorker('broadcast');
      expect(worker.signal, worker.stderr).toBe('SIGKILL');
      const left = await row(payout.id);
      expect(left).toMatchObject({ status: 'broadcast', signed: true, journal_id: null });
      // The money moved; the ledger does not know yet.
      expect(await balanceOf(chain, payout.wallet)).toBe(1_500_000n);
      expect(await journals(payout.id)).toEqual([]);

      await runTransfersOnce(stack);
      expect(await row(payout.id)).toMatchObject({ status: 'confirmed', tx: left.tx });
      expect(await balanceOf(chain, payout.wallet)).toBe(1_500_000n);
      expect(await journals(payout.id)).toEqual([{ kind: 'payout' }]);
      const balances = await stack.plane.call('GET', '/api/v1/ledger/balances', { key: payout.key });
      expect(Object.fromEntries(balances.body.data.map((b: any) => [b.account, b.amount]))).toMatchObject({
        payable: '0.4',
        paid_out: '1.5',
      });
    },
  );
});
