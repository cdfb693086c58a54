import { usdcBalanceOf } from '@crochet/dev-chains';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyWallet } from '../../control-plane/test/helpers.js';
import { claimAgent, type OperatorClient, signUpOperator } from '../../control-plane/test/operator-support.js';
import { solanaWallet } from '../../control-plane/test/wallets-support.js';
import { createPaidListing, type PaymentStack, paySolana, startPaymentStack } from './payment-stack.js';
import { eventually, gatewayCall, startSeller, type TestSeller } from './stack.js';

/**
 * DESIGN §3.7 + §3.9 on the local chains: an operator sees the money that went out to its agents — a seller's payout
 * made with POST /api/v1/payouts and a buyer's on-chain refund of a call the seller failed — with status, decimal
 * amount, network and transaction, and the ledger entries that book them; another operator's agents' transfers stay
 * out of sight.
 */

let stack: PaymentStack;
let seller: TestSeller;
let operator: OperatorClient;

beforeAll(async () => {
  stack = await startPaymentStack({ planeEnv: { CROCHET_TRANSFERS_INTERVAL_MS: '100' } });
  seller = await startSeller((req, res) => {
    res.writeHead(req.url!.startsWith('/svc/fail') ? 500 : 200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  operator = await signUpOperator(stack.plane.url);
}, 60_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

const api = (method: string, path: string, key: string, body?: unknown, headers?: Record<string, string>) =>
  stack.plane.call(method, path, { key, ...(body === undefined ? {} : { body }), ...(headers ? { headers } : {}) });

describe('the published documents', () => {
  it('name the networks this control plane pays out on: those it holds a treasury key for', async () => {
    const networks = [stack.solana.caip2, stack.evm.caip2];
    const protocol = (await stack.plane.call('GET', '/.well-known/agent-protocol.json')).body;
    expect([...protocol.payouts.networks].sort()).toEqual([...networks].sort());
    for (const path of ['/llms.txt', '/agent-skill', '/seller-onboarding']) {
      const text = (await stack.plane.call('GET', path)).text.replace(/\s+/g, ' ');
      expect(text).toMatch(/Networks paid out on here: [^.]+\./);
      for (const network of networks) expect(text).toContain(network);
    }
  });
});

describe('operator dashboard: money out', () => {
  it('shows the payouts and refunds of its agents with status, amount, network and transaction, and their ledger entries', async () => {
    const earner = await stack.plane.register('earner');
    const buyer = await stack.plane.register('buyer');
    const outsider = await stack.plane.register('outsider');
    await claimAgent(stack.plane.url, operator, earner.apiKey);
    await claimAgent(stack.plane.url, operator, buyer.apiKey);

    // Two paid calls at 2 USDC (5 % fee: 3.8 payable), and one to a listing whose seller fails: refunded on chain.
    const listingId = await createPaidListing(stack, earner.apiKey, `${seller.url}/svc`, '2');
    for (let i = 0; i < 2; i++) {
      const proof = await paySolana(stack, listingId, buyer.apiKey, 2_000_000n);
      const paid = await gatewayCall(stack.proxies[0]!, listingId, buyer.apiKey, { headers: proof });
      expect(paid.status, paid.text).toBe(200);
    }
    const failing = await createPaidListing(stack, outsider.apiKey, `${seller.url}/svc/fail`, '0.3');
    const failed = await gatewayCall(stack.proxies[0]!, failing, buyer.apiKey, {
      headers: await paySolana(stack, failing, buyer.apiKey, 300_000n),
    });
    expect(failed.status, failed.text).toBe(500);
    const failedId = String(failed.headers['x-crochet-request-id']);

    // The seller verifies a Solana wallet and asks for its payout.
    const wallet = solanaWallet();
    expect((await verifyWallet(stack.plane, earner.apiKey, wallet)).status).toBe(201);
    await eventually(async () => {
      const balances = (await api('GET', '/api/v1/ledger/balances', earner.apiKey)).body.data;
      expect(balances).toContainEqual(expect.objectContaining({ account: 'payable', amount: '3.8' }));
    }, 10_000);
    const asked = await api(
      'POST',
      '/api/v1/payouts',
      earner.apiKey,
      { network: stack.solana.caip2 },
      {
        'idempotency-key': `operator-view-${earner.agentId}`,
      },
    );
    expect(asked.status, asked.text).toBe(201);
    const payout = await eventually(async () => {
      const res = await api('GET', `/api/v1/payouts/${asked.body.data.id}`, earner.apiKey);
      expect(res.body.data.status).toBe('confirmed');
      return res.body.data;
    }, 15_000);
    expect(await usdcBalanceOf(stack.solana, wallet.address)).toBe(3_800_000n);
    const refund = await eventually(async () => {
      const [found] = (await api('GET', '/api/v1/payouts?kind=refund', buyer.apiKey)).body.data;
      expect(found).toMatchObject({ gateway_request_id: failedId, status: 'confirmed' });
      return found;
    }, 15_000);

    // The operator's view: both transfers, newest first, as the agents see them.
    const transfers = await operator.call('GET', '/api/v1/operator/transfers?limit=10');
    expect(transfers.status, transfers.text).toBe(200);
    expect(transfers.headers.get('cache-control')).toBe('no-store');
    expect(transfers.body.data).toEqual(
      [
        {
          id: payout.id,
          kind: 'payout',
          agent_id: earner.agentId,
          status: 'confirmed',
          amount: '3.8',
          currency: 'USDC',
          network: stack.solana.caip2,
          to: wallet.address,
          tx: payout.tx,
          gateway_request_id: null,
          requested_by: 'api',
          error: null,
          created_at: payout.created_at,
          confirmed_at: payout.confirmed_at,
        },
        {
          id: refund.id,
          kind: 'refund',
          agent_id: buyer.agentId,
          status: 'confirmed',
          amount: '0.3',
          currency: 'USDC',
          network: stack.solana.caip2,
          to: refund.to,
          tx: refund.tx,
          gateway_request_id: failedId,
          requested_by: 'refund',
          error: null,
          created_at: refund.created_at,
          confirmed_at: refund.confirmed_at,
        },
      ].sort((a, b) => (a.id.slice(3) < b.id.slice(3) ? 1 : -1)),
    );
    expect(payout.tx).toEqual(expect.any(String));

    // Pages follow the same order.
    const first = await operator.call('GET', '/api/v1/operator/transfers?limit=1');
    const second = await operator.call(
      'GET',
      `/api/v1/operator/transfers?limit=1&cursor=${encodeURIComponent(first.body.next_cursor)}`,
    );
    expect([...first.body.data, ...second.body.data].map((t: any) => t.id)).toEqual(
      transfers.body.data.map((t: any) => t.id),
    );
    expect(second.body.next_cursor).toBeNull();

    // The ledger the dashboard shows books them, each entry naming its transfer.
    const ledger = (await operator.call('GET', '/api/v1/operator/ledger?limit=50')).body.data;
    const booked = (transferId: string) =>
      ledger
        .filter((e: any) => e.transfer_id === transferId)
        .map((e: any) => [e.agent_id, e.kind, e.amount, e.gateway_request_id])
        .sort();
    expect(booked(payout.id)).toEqual([
      [earner.agentId, 'payout_sent', '3.8', null],
      [earner.agentId, 'seller_payout', '-3.8', null],
    ]);
    expect(booked(refund.id)).toEqual([
      [buyer.agentId, 'buyer_debit_reversal', '0.3', failedId],
      [buyer.agentId, 'refund_sent', '-0.3', failedId],
    ]);

    // Another operator sees none of it.
    const other = await signUpOperator(stack.plane.url);
    await claimAgent(stack.plane.url, other, outsider.apiKey);
    expect((await other.call('GET', '/api/v1/operator/transfers')).body.data).toEqual([]);
  });
});
