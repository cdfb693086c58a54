import { mintSolanaUsdc, solBalanceOf, usdcBalanceOf } from '@crochet/dev-chains';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyWallet } from '../../control-plane/test/helpers.js';
import { solanaWallet } from '../../control-plane/test/wallets-support.js';
import { createPaidListing, type PaymentStack, paySolana, startPaymentStack } from './payment-stack.js';
import { eventually, expectApiError, gatewayCall, startSeller, type TestSeller } from './stack.js';
import { runTransfersOnce, runTransferWorker, transferRow } from './transfer-support.js';

/**
 * Second reading of money out (DESIGN §3.9): cases a review found where a payout was sent twice or the API answered
 * wrongly — an RPC that forgot a landed transaction, an Idempotency-Key reused with another body, a payout smaller
 * than the token account it makes — and the re-sign a dropped payout still needs.
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

const TRANSFERS_LOCK = 7_312_004_120;

const runWorker = (crashAt: string) => runTransferWorker(stack, crashAt);
const row = (id: string) => transferRow(stack, id);

/** A seller with 1.9 USDC payable (one 2 USDC call, 5 % fee) and a verified Solana wallet. */
const earningSeller = async () => {
  const agent = await stack.plane.register('seller');
  const listingId = await createPaidListing(stack, agent.apiKey, `${seller.url}/svc`, '2');
  const proof = await paySolana(stack, listingId, buyerKey, 2_000_000n);
  expect((await gatewayCall(stack.proxies[0]!, listingId, buyerKey, { headers: proof })).status).toBe(200);
  await eventually(async () => {
    const res = await stack.plane.call('GET', '/api/v1/ledger/balances', { key: agent.apiKey });
    expect(res.body.data.find((b: any) => b.account === 'payable')?.amount).toBe('1.9');
  }, 10_000);
  const wallet = solanaWallet();
  expect((await verifyWallet(stack.plane, agent.apiKey, wallet)).status).toBe(201);
  return { ...agent, wallet };
};

/** Asks for a payout while the job's lock is held here, so that nothing is sent until the test says. */
const askHeld = async (key: string, body: Record<string, string>, headers?: Record<string, string>) => {
  const holder = await stack.plane.deps.pool.connect();
  await holder.query('SELECT pg_advisory_lock($1)', [TRANSFERS_LOCK]);
  try {
    const res = await stack.plane.call('POST', '/api/v1/payouts', { key, body, ...(headers ? { headers } : {}) });
    await stack.plane.transfers.idle();
    return res;
  } finally {
    await holder.query('SELECT pg_advisory_unlock($1)', [TRANSFERS_LOCK]);
    holder.release();
  }
};

describe('review: a payout judged "dropped" while it had landed', () => {
  it('is not sent a second time when the RPC no longer remembers the landed transaction', async () => {
    const earner = await earningSeller();
    // The treasury holds more than this one payout (other sellers' money): a second send would go through.
    await mintSolanaUsdc(stack.solana, stack.solanaPayTo, 10_000_000n);
    const asked = await askHeld(earner.apiKey, { network: stack.solana.caip2, amount: '1.5' });
    expect(asked.status, asked.text).toBe(201);

    // The sender dies right after the broadcast: the payout landed, the ledger does not know yet.
    const worker = await runWorker('broadcast');
    expect(worker.signal, worker.stderr).toBe('SIGKILL');
    const left = await row(asked.body.data.id);
    expect(left).toMatchObject({ status: 'broadcast', signed: true });
    expect(await usdcBalanceOf(stack.solana, earner.wallet.address)).toBe(1_500_000n);

    // The control plane (or its PostgreSQL) stays down a while: the blockhash expires, and the RPC it talks to keeps
    // no history that far back (a non-archival node, or one behind a load balancer that has not seen the slot):
    // getSignatureStatuses(searchTransactionHistory) answers null for a transaction that did land.
    // Long enough that "not found" no longer proves anything (past the status window every node keeps).
    stack.solana.advanceSlots(400);
    (stack.solana.engine as unknown as { records: Map<string, unknown> }).records.delete(left.tx);

    // Runs that took the job's lock: the killed worker's session may hold it a moment longer.
    await runTransfersOnce(stack);
    await runTransfersOnce(stack);
    await runTransfersOnce(stack);

    // Exactly once: the wallet holds 1.5 USDC, not 3.
    expect(await usdcBalanceOf(stack.solana, earner.wallet.address)).toBe(1_500_000n);
    // Held for an operator, its amount still reserved (open), its transaction kept.
    const held = (
      await stack.plane.deps.pool.query('SELECT status, tx, review FROM money_transfers WHERE id = $1', [
        asked.body.data.id,
      ])
    ).rows[0];
    expect(held).toMatchObject({ status: 'broadcast', tx: left.tx });
    expect(held.review).toMatch(/not sent again/);
  });
});

describe('review: a payout that really was dropped', () => {
  it('signed, never sent, blockhash expired: signed anew and sent exactly once', async () => {
    const earner = await earningSeller();
    await mintSolanaUsdc(stack.solana, stack.solanaPayTo, 10_000_000n);
    const asked = await askHeld(earner.apiKey, { network: stack.solana.caip2, amount: '1.5' });
    expect(asked.status, asked.text).toBe(201);
    const worker = await runWorker('signed');
    expect(worker.signal, worker.stderr).toBe('SIGKILL');
    const left = await row(asked.body.data.id);
    expect(left).toMatchObject({ status: 'pending', signed: true });

    // Its blockhash expires before anyone sends it: it can never land.
    stack.solana.advanceSlots(200);
    await runTransfersOnce(stack); // judged dropped (a run that took the lock the killed worker held)
    // Signed anew and sent, then confirmed — by the next runs, or on a slow machine (a confirmation wait that ran out)
    // by a later one: every run may come again, and the balance below shows it was sent once.
    await expect
      .poll(
        async () => {
          await stack.plane.transfers.runOnce();
          return (await row(asked.body.data.id)).status;
        },
        { timeout: 30_000, interval: 100 },
      )
      .toBe('confirmed');
    const done = await row(asked.body.data.id);
    expect(done.tx).not.toBe(left.tx);
    expect(await usdcBalanceOf(stack.solana, earner.wallet.address)).toBe(1_500_000n);
  });
});

describe('review: bad input at the payouts API', () => {
  it('a threshold beyond what an amount can be is a 400, not a 500', async () => {
    const earner = await earningSeller();
    const res = await stack.plane.call('PUT', '/api/v1/me/auto-payout', {
      key: earner.apiKey,
      body: { network: stack.solana.caip2, threshold: '99999999999999999999999999999' },
    });
    expectApiError({ status: res.status, json: res.body, text: res.text }, 400, 'PAYOUT_AMOUNT_INVALID');
  });

  it('the same Idempotency-Key with a different body (amount left out) is 409, not the earlier payout', async () => {
    const earner = await earningSeller();
    const network = stack.solana.caip2;
    const first = await askHeld(earner.apiKey, { network, amount: '0.5' }, { 'idempotency-key': 'review-k1' });
    expect(first.status, first.text).toBe(201);
    // Another request under the same key: "pay me everything payable" (1.4 now) is not "pay me 0.5".
    const second = await askHeld(earner.apiKey, { network }, { 'idempotency-key': 'review-k1' });
    expectApiError({ status: second.status, json: second.body, text: second.text }, 409, 'IDEMPOTENCY_KEY_REUSED');
  });
});

describe('review: the cost of sending a payout', () => {
  it('a payout of one atomic unit to a fresh wallet is refused (it costs the treasury an account rent)', async () => {
    const earner = await earningSeller();
    const before = await solBalanceOf(stack.solana, stack.solanaPayTo);
    const res = await stack.plane.call('POST', '/api/v1/payouts', {
      key: earner.apiKey,
      body: { network: stack.solana.caip2, amount: '0.000001' },
    });
    if (res.status === 201) {
      await stack.plane.transfers.idle();
      await stack.plane.transfers.runOnce();
      const sent = await stack.plane.call('GET', `/api/v1/payouts/${res.body.data.id}`, { key: earner.apiKey });
      expect(sent.body.data.status).toBe('confirmed');
      const spent = before - (await solBalanceOf(stack.solana, stack.solanaPayTo));
      // The treasury paid the fee and the rent of the seller's new USDC account (which its owner may close and keep).
      expect.soft(spent, `lamports the treasury spent to send 0.000001 USDC`).toBeLessThan(10_000n);
    }
    expect(res.status, res.text).toBe(400);
  });
});
