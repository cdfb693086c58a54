import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';
import { expectError, listingBody } from './listing-support.js';

/** §3.2: a price is a plain decimal string > 0 with at most 6 decimals for per_call, and nothing (or 0) for free. */
describe('POST /api/v1/listings refuses invalid prices', () => {
  let plane: TestPlane;
  let seller: { apiKey: string; agentId: string };

  beforeAll(async () => {
    plane = await startTestControlPlane();
    seller = await plane.register('seller');
  });
  afterAll(async () => {
    await plane?.stop();
  });

  const create = async (fields: Record<string, unknown>) =>
    plane.call('POST', '/api/v1/listings', {
      key: seller.apiKey,
      body: await listingBody(plane, seller.apiKey, fields),
    });

  const listingCount = async (): Promise<number> => {
    const { rows } = await plane.deps.pool.query('SELECT count(*)::int AS n FROM listings');
    return rows[0].n;
  };

  it('refuses a per_call listing without a price', async () => {
    expectError(await create({ pricing_model: 'per_call' }), 400, 'PRICE_INVALID');
  });

  it.each([
    ['0', 'zero'],
    ['0.000000', 'zero with decimals'],
    ['-1', 'negative'],
    ['0.0000001', 'more decimals than USDC has'],
    ['1e3', 'exponent notation'],
    [' 1', 'leading space'],
    ['1.', 'trailing dot'],
    ['.5', 'no leading digit'],
    ['01', 'leading zero'],
    ['+1', 'explicit sign'],
    ['0x10', 'hexadecimal'],
    ['1,5', 'comma decimal separator'],
    ['', 'empty'],
    ['abc', 'not a number'],
    ['1000000.000001', 'above the maximum'],
  ])('refuses per_call amount %j (%s) with PRICE_INVALID', async (amount) => {
    const res = await create({ pricing_model: 'per_call', price: { amount, currency: 'USDC' } });
    expectError(res, 400, 'PRICE_INVALID');
  });

  it('accepts the maximum price', async () => {
    const res = await create({ pricing_model: 'per_call', price: { amount: '1000000' } });
    expect(res.status, res.text).toBe(201);
    expect(res.body.data.listing.price.amount_atomic).toBe('1000000000000');
  });

  it('refuses a non-zero price on a free listing', async () => {
    expectError(await create({ pricing_model: 'free', price: { amount: '1' } }), 400, 'PRICE_INVALID');
    expectError(await create({ pricing_model: 'free', price: { amount: 'nonsense' } }), 400, 'PRICE_INVALID');
  });

  it('refuses a currency other than USDC with CURRENCY_UNSUPPORTED', async () => {
    expectError(
      await create({ pricing_model: 'per_call', price: { amount: '0.01', currency: 'EUR' } }),
      400,
      'CURRENCY_UNSUPPORTED',
    );
    expectError(
      await create({ pricing_model: 'per_call', price: { amount: '0.01', currency: 'usdc' } }),
      400,
      'CURRENCY_UNSUPPORTED',
    );
    expectError(
      await create({ pricing_model: 'free', price: { amount: '0', currency: 'EUR' } }),
      400,
      'CURRENCY_UNSUPPORTED',
    );
  });

  it('refuses a number where a decimal string is expected', async () => {
    expectError(await create({ pricing_model: 'per_call', price: { amount: 0.01 } }), 400, 'VALIDATION_FAILED');
    expectError(await create({ pricing_model: 'per_call', price: '0.01' }), 400, 'VALIDATION_FAILED');
    expectError(await create({ pricing_model: 'subscription' }), 400, 'VALIDATION_FAILED');
  });

  it('stores nothing for a refused listing, and the challenge stays usable', async () => {
    const before = await listingCount();
    const body = await listingBody(plane, seller.apiKey, { pricing_model: 'per_call', price: { amount: '-1' } });
    expectError(await plane.call('POST', '/api/v1/listings', { key: seller.apiKey, body }), 400, 'PRICE_INVALID');
    expect(await listingCount()).toBe(before);
    const retry = await plane.call('POST', '/api/v1/listings', {
      key: seller.apiKey,
      body: { ...body, price: { amount: '1' } },
    });
    expect(retry.status, retry.text).toBe(201);
    expect(await listingCount()).toBe(before + 1);
  });
});
