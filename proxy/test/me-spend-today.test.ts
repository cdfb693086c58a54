import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPaidListing, type PaymentStack, paySolana, startPaymentStack } from './payment-stack.js';
import { eventually, gatewayCall, startSeller, type TestSeller } from './stack.js';

/**
 * GET /api/v1/me tells an agent what the gateway enforces on it (issue 14): USDC spent today as the operator's daily
 * cap counts it, the cap and what is left of it, and the marketplace fee.
 */

let stack: PaymentStack;
let seller: TestSeller;
let listing: string;
let buyer: { apiKey: string; agentId: string };

beforeAll(async () => {
  stack = await startPaymentStack({ planeEnv: { CROCHET_FEE_BPS: '250' } });
  seller = await startSeller();
  const sellerAgent = await stack.plane.register('seller');
  buyer = await stack.plane.register('buyer');
  listing = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/paid`, '0.01');
}, 60_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

const me = async () => {
  const res = await stack.plane.call('GET', '/api/v1/me', { key: buyer.apiKey });
  expect(res.status).toBe(200);
  return res.body.data;
};

describe("GET /api/v1/me: today's spend, the operator's cap and the fee", () => {
  it('starts at nothing spent, no cap, and the configured fee', async () => {
    const data = await me();
    expect(data.spend).toEqual({
      currency: 'USDC',
      spent_today: '0',
      daily_spend_cap: null,
      remaining_today: null,
      resets_at: expect.stringMatching(/T00:00:00\.000Z$/),
    });
    expect(Date.parse(data.spend.resets_at) - Date.now()).toBeLessThanOrEqual(86_400_000);
    expect(data.fee_bps).toBe(250);
  });

  it('counts a paid call and shows the cap the operator set with what is left of it', async () => {
    const proof = await paySolana(stack, listing, buyer.apiKey, 10_000n);
    const paid = await gatewayCall(stack.proxies[0]!, listing, buyer.apiKey, { headers: proof });
    expect(paid.status, paid.text).toBe(200);
    await stack.plane.deps.pool.query('UPDATE agents SET daily_spend_cap_atomic = 50000 WHERE id = $1', [
      buyer.agentId,
    ]);
    await eventually(async () =>
      expect((await me()).spend).toMatchObject({
        spent_today: '0.01',
        daily_spend_cap: '0.05',
        remaining_today: '0.04',
      }),
    );
  });
});
