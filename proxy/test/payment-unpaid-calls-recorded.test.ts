import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startSeller, startTestStack, type TestSeller, type TestStack } from './stack.js';

/** An unpaid call to a paid listing is an ordinary call: limited, recorded (payment_required), never forwarded. */
let stack: TestStack;
let seller: TestSeller;

beforeAll(async () => {
  stack = await startTestStack({
    // A Solana rail is configured; answering 402 never touches its RPC.
    proxyEnv: {
      CROCHET_SOLANA_RPC_URL: 'http://127.0.0.1:9',
      CROCHET_SOLANA_NETWORK: 'solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1',
      CROCHET_SOLANA_USDC_MINT: '4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU',
      CROCHET_SOLANA_PAY_TO: 'H8bXHiAKX6UK5NZ2CST1C3qGhXdmCFokuQdyqdA3CoYL',
    },
  });
  seller = await startSeller();
});
afterAll(async () => {
  await seller.close();
  await stack.stop();
});

describe('unpaid calls to a paid listing', () => {
  it('count against the limits and show in history as payment_required', async () => {
    const sellerAgent = await stack.plane.register('seller');
    const buyer = await stack.plane.register('buyer');
    const { listing } = await stack.plane.createListing(sellerAgent.apiKey, {
      pricing_model: 'per_call',
      price: { amount: '0.01' },
      private_endpoint_url: `${seller.url}/paid`,
      rate_limit_per_minute: 3,
    });
    const proxy = stack.proxies[0]!;
    await eventually(() => expect(proxy.store.listing(listing.id)?.rateLimitPerMinute).toBe(3));
    const call = () =>
      fetch(`${proxy.url}/api/v1/gateway/${listing.id}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${buyer.apiKey}`, 'content-type': 'application/json' },
        body: '{}',
      });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await call();
      expect(res.status).toBe(402);
      ids.push(res.headers.get('x-crochet-request-id')!);
      expect(((await res.json()) as any).error.request_id).toBe(ids[i]);
    }
    const limited = await call();
    expect(limited.status).toBe(429);
    expect(((await limited.json()) as any).error.code).toBe('RATE_LIMITED');
    expect(limited.headers.get('retry-after')).toBeTruthy();
    expect(seller.requests).toHaveLength(0);

    await eventually(async () => {
      const history = await stack.plane.call('GET', '/api/v1/gateway-requests?status=payment_required', {
        key: buyer.apiKey,
      });
      expect(history.body.data.map((r: any) => r.id).sort()).toEqual([...ids].sort());
      for (const row of history.body.data)
        expect(row).toMatchObject({ http_status: 402, error_code: 'PAYMENT_REQUIRED' });
    });
  });
});
