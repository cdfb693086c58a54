import { mintUsdc, usdcBalance, usdcBalanceOf } from '@crochet/dev-chains';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyWallet } from '../../control-plane/test/helpers.js';
import { evmWallet, solanaWallet } from '../../control-plane/test/wallets-support.js';
import { createPaidListing, type PaymentStack, paySolana, startPaymentStack } from './payment-stack.js';
import { eventually, expectApiError, gatewayCall, startSeller, type TestSeller } from './stack.js';

/**
 * DESIGN §3.9 on the local chains: a seller is paid out what it earned, on Solana and on EVM, to a verified wallet of
 * its own, by exactly the amount — booked once in its ledger; twenty payout requests at once never take more than is
 * payable; a call the seller failed is refunded on chain to the wallet that paid for it.
 */

let stack: PaymentStack;
let seller: TestSeller;
let buyerKey: string;

beforeAll(async () => {
  stack = await startPaymentStack({ planeEnv: { CROCHET_TRANSFERS_INTERVAL_MS: '100' } });
  seller = await startSeller((req, res) => {
    res.writeHead(req.url!.startsWith('/svc/fail') ? 500 : 200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  buyerKey = (await stack.plane.register('buyer')).apiKey;
}, 60_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

const api = (method: string, path: string, key: string, body?: unknown, headers?: Record<string, string>) =>
  stack.plane.call(method, path, { key, ...(body === undefined ? {} : { body }), ...(headers ? { headers } : {}) });

const asRaw = (res: Awaited<ReturnType<typeof api>>) => ({ status: res.status, json: res.body, text: res.text });

const balances = async (key: string): Promise<Record<string, string>> => {
  const res = await api('GET', '/api/v1/ledger/balances', key);
  return Object.fromEntries(res.body.data.map((b: any) => [b.account, b.amount]));
};

/** A seller with a listing at `price` and `calls` calls paid by Solana transfers and answered: its payable earned. */
const sellerWithEarnings = async (price: string, calls: number) => {
  const agent = await stack.plane.register('seller');
  const listingId = await createPaidListing(stack, agent.apiKey, `${seller.url}/svc`, price);
  const atomic = BigInt(Math.round(Number(price) * 1e6));
  for (let i = 0; i < calls; i++) {
    const proof = await paySolana(stack, listingId, buyerKey, atomic);
    const paid = await gatewayCall(stack.proxies[0]!, listingId, buyerKey, { headers: proof });
    expect(paid.status, paid.text).toBe(200);
  }
  await eventually(async () => {
    const { rows } = await stack.plane.deps.pool.query(
      `SELECT count(*)::int AS n FROM ledger_journals WHERE seller_id = $1 AND kind = 'payment'`,
      [agent.agentId],
    );
    expect(rows[0].n).toBe(calls);
  }, 10_000);
  return { ...agent, listingId };
};

const untilFinal = (key: string, id: string) =>
  eventually(async () => {
    const res = await api('GET', `/api/v1/payouts/${id}`, key);
    expect(res.status, res.text).toBe(200);
    expect(['confirmed', 'failed']).toContain(res.body.data.status);
    return res.body.data;
  }, 15_000);

describe('seller payouts', () => {
  it('pays a seller on Solana and on EVM by exactly what is asked, books each once, and refuses what cannot be paid', async () => {
    // 4 calls at 5 USDC, 5 % fee: 19 USDC payable.
    const earner = await sellerWithEarnings('5', 4);
    expect(await balances(earner.apiKey)).toMatchObject({ payable: '19' });
    const solana = stack.solana.caip2;

    expectApiError(
      asRaw(await api('POST', '/api/v1/payouts', earner.apiKey, { network: solana })),
      409,
      'PAYOUT_WALLET_REQUIRED',
    );
    expectApiError(
      asRaw(await api('POST', '/api/v1/payouts', earner.apiKey, { network: 'eip155:999999' })),
      400,
      'PAYOUT_NETWORK_UNSUPPORTED',
    );
    const wallet = solanaWallet();
    expect((await verifyWallet(stack.plane, earner.apiKey, wallet)).status).toBe(201);
    for (const amount of ['0', '-1', '1.0000001', 'ten']) {
      expectApiError(
        asRaw(await api('POST', '/api/v1/payouts', earner.apiKey, { network: solana, amount })),
        400,
        'PAYOUT_AMOUNT_INVALID',
      );
    }
    const tooMuch = await api('POST', '/api/v1/payouts', earner.apiKey, { network: solana, amount: '19.000001' });
    expectApiError(asRaw(tooMuch), 409, 'PAYOUT_EXCEEDS_PAYABLE');
    expect(tooMuch.body.error).toMatchObject({ payable: '19', payable_atomic: '19000000' });

    // Part of it on Solana, with an Idempotency-Key: a retry answers the same payout.
    const key = { 'idempotency-key': `payout-${earner.agentId}` };
    const asked = await api('POST', '/api/v1/payouts', earner.apiKey, { network: solana, amount: '7.25' }, key);
    expect(asked.status, asked.text).toBe(201);
    expect(asked.body.data).toMatchObject({
      id: expect.stringMatching(/^po_/),
      kind: 'payout',
      amount: '7.25',
      amount_atomic: '7250000',
      network: solana,
      to: wallet.address,
      requested_by: 'api',
    });
    const again = await api('POST', '/api/v1/payouts', earner.apiKey, { network: solana, amount: '7.25' }, key);
    expect(again.status, again.text).toBe(200);
    expect(again.body.data.id).toBe(asked.body.data.id);
    expectApiError(
      asRaw(await api('POST', '/api/v1/payouts', earner.apiKey, { network: solana, amount: '8' }, key)),
      409,
      'IDEMPOTENCY_KEY_REUSED',
    );
    const paid = await untilFinal(earner.apiKey, asked.body.data.id);
    expect(paid).toMatchObject({ status: 'confirmed', tx: expect.any(String), confirmed_at: expect.any(String) });
    expect(await usdcBalanceOf(stack.solana, wallet.address)).toBe(7_250_000n);
    expect(await balances(earner.apiKey)).toMatchObject({ payable: '11.75', paid_out: '7.25' });

    // The rest on EVM, amount left out: everything payable. The EVM treasury holds USDC from EVM payments.
    await mintUsdc(stack.evm, stack.evmPayTo, 50_000_000n);
    const evm = evmWallet();
    expect((await verifyWallet(stack.plane, earner.apiKey, evm)).status).toBe(201);
    const rest = await api('POST', '/api/v1/payouts', earner.apiKey, { network: stack.evm.caip2 });
    expect(rest.status, rest.text).toBe(201);
    expect(rest.body.data).toMatchObject({ amount: '11.75', to: evm.address });
    expect(await untilFinal(earner.apiKey, rest.body.data.id)).toMatchObject({ status: 'confirmed' });
    expect(await usdcBalance(stack.evm, evm.address)).toBe(11_750_000n);
    expect(await balances(earner.apiKey)).toMatchObject({ payable: '0', paid_out: '19' });
    expectApiError(
      asRaw(await api('POST', '/api/v1/payouts', earner.apiKey, { network: solana })),
      409,
      'NOTHING_TO_PAY_OUT',
    );

    // One journal per payout, each balanced, naming its transfer; the ledger and the list show both.
    const { rows } = await stack.plane.deps.pool.query(
      `SELECT j.kind, j.transfer_id, j.tx, sum(e.amount_atomic)::text AS total, count(*)::int AS entries
         FROM ledger_journals j JOIN ledger_entries e ON e.journal_id = j.id
        WHERE j.seller_id = $1 AND j.kind = 'payout' GROUP BY j.id ORDER BY j.id`,
      [earner.agentId],
    );
    expect(rows).toEqual([
      { kind: 'payout', transfer_id: asked.body.data.id, tx: paid.tx, total: '0', entries: 2 },
      { kind: 'payout', transfer_id: rest.body.data.id, tx: expect.any(String), total: '0', entries: 2 },
    ]);
    const ledger = await api('GET', '/api/v1/ledger?role=seller', earner.apiKey);
    expect(ledger.body.data.filter((e: any) => e.transfer_id === asked.body.data.id)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ entry_type: 'seller_payout', account: 'payable', amount: '-7.25' }),
        expect.objectContaining({ entry_type: 'payout_sent', account: 'paid_out', amount: '7.25' }),
      ]),
    );
    const list = await api('GET', '/api/v1/payouts', earner.apiKey);
    expect(list.body.data.map((p: any) => p.id)).toEqual([rest.body.data.id, asked.body.data.id]);
  });

  it('never pays more than is payable when twenty payouts are asked for at once', async () => {
    // 3 calls at 2 USDC: 5.7 payable — room for five payouts of 1.
    const earner = await sellerWithEarnings('2', 3);
    const wallet = solanaWallet();
    expect((await verifyWallet(stack.plane, earner.apiKey, wallet)).status).toBe(201);
    const answers = await Promise.all(
      Array.from({ length: 20 }, () =>
        api('POST', '/api/v1/payouts', earner.apiKey, { network: stack.solana.caip2, amount: '1' }),
      ),
    );
    const created = answers.filter((a) => a.status === 201);
    expect(created).toHaveLength(5);
    for (const refused of answers.filter((a) => a.status !== 201)) {
      expectApiError(asRaw(refused), 409, 'PAYOUT_EXCEEDS_PAYABLE');
    }
    for (const payout of created) {
      expect(await untilFinal(earner.apiKey, payout.body.data.id)).toMatchObject({ status: 'confirmed' });
    }
    expect(await usdcBalanceOf(stack.solana, wallet.address)).toBe(5_000_000n);
    expect(await balances(earner.apiKey)).toMatchObject({ payable: '0.7', paid_out: '5' });
  });

  it('pays out automatically once the payable balance reaches the threshold the seller set', async () => {
    const earner = await sellerWithEarnings('1', 1);
    const wallet = solanaWallet();
    expect((await verifyWallet(stack.plane, earner.apiKey, wallet)).status).toBe(201);
    const set = await api('PUT', '/api/v1/me/auto-payout', earner.apiKey, {
      network: stack.solana.caip2,
      threshold: '1.5',
    });
    expect(set.status, set.text).toBe(200);
    expect(set.body.data).toEqual({ network: stack.solana.caip2, threshold: '1.5', payable: '0.95' });
    // Below the threshold: nothing goes out.
    await stack.plane.transfers.runOnce();
    expect((await api('GET', '/api/v1/payouts', earner.apiKey)).body.data).toEqual([]);
    // One more call takes it to 1.9: all of it is paid out.
    const proof = await paySolana(stack, earner.listingId, buyerKey, 1_000_000n);
    expect((await gatewayCall(stack.proxies[0]!, earner.listingId, buyerKey, { headers: proof })).status).toBe(200);
    const payout = await eventually(async () => {
      const [first] = (await api('GET', '/api/v1/payouts', earner.apiKey)).body.data;
      expect(first).toMatchObject({ status: 'confirmed', requested_by: 'auto', amount: '1.9' });
      return first;
    }, 15_000);
    expect(await usdcBalanceOf(stack.solana, wallet.address)).toBe(1_900_000n);
    expect(payout.to).toBe(wallet.address);
    const off = await api('DELETE', '/api/v1/me/auto-payout', earner.apiKey);
    expect(off.body.data).toEqual({ network: null, threshold: null, payable: '0' });
  });
});

describe('refunds', () => {
  it('sends a refund_due call’s price back on chain to the wallet that paid, booked as a refund transfer', async () => {
    const agent = await stack.plane.register('failing-seller');
    const listingId = await createPaidListing(stack, agent.apiKey, `${seller.url}/svc/fail`, '0.5');
    const proof = await paySolana(stack, listingId, buyerKey, 500_000n);
    const res = await gatewayCall(stack.proxies[0]!, listingId, buyerKey, { headers: proof });
    expect(res.status, res.text).toBe(500); // the seller's own answer, passed on
    const id = String(res.headers['x-crochet-request-id']);
    const refund = await eventually(async () => {
      const list = await api('GET', '/api/v1/payouts?kind=refund', buyerKey);
      const found = list.body.data.find((t: any) => t.gateway_request_id === id);
      expect(found).toMatchObject({ kind: 'refund', status: 'confirmed', amount: '0.5', requested_by: 'refund' });
      return found;
    }, 15_000);
    const payer = (
      await stack.plane.deps.pool.query(`SELECT payment ->> 'payer' AS payer FROM gateway_requests WHERE id = $1`, [id])
    ).rows[0].payer;
    expect(refund.to).toBe(payer);
    // The paying wallet was funded with ten times the price and paid it once: the refund gives it back.
    expect(await usdcBalanceOf(stack.solana, payer)).toBe(5_000_000n);
    const journals = await stack.plane.deps.pool.query(
      'SELECT kind, transfer_id FROM ledger_journals WHERE gateway_request_id = $1 ORDER BY id',
      [id],
    );
    expect(journals.rows).toEqual([
      { kind: 'payment', transfer_id: null },
      { kind: 'refund', transfer_id: null },
      { kind: 'refund_transfer', transfer_id: refund.id },
    ]);
    const call = await api('GET', `/api/v1/gateway-requests/${id}`, buyerKey);
    expect(call.body.data.refund).toBe('refunded');
  });
});
