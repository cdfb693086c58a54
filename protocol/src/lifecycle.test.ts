import { describe, expect, it } from 'vitest';
import { finalState, type GatewayExit, isFinalState, type PaymentExit, paymentAction } from './lifecycle.js';

describe('the gateway request lifecycle', () => {
  it.each<[GatewayExit, string]>([
    [{ kind: 'answered' }, 'completed'],
    [{ kind: 'seller_failed', code: 'UPSTREAM_TIMEOUT' }, 'upstream_error'],
    [{ kind: 'stream_aborted' }, 'upstream_error'],
    [{ kind: 'client_gone' }, 'client_aborted'],
    [{ kind: 'refused', code: 'RATE_LIMITED' }, 'refused'],
    [{ kind: 'refused', code: 'STATE_UNAVAILABLE' }, 'refused'],
    [{ kind: 'refused', code: 'PAYMENT_REQUIRED' }, 'payment_required'],
    [{ kind: 'refused', code: 'PAYMENT_PENDING' }, 'payment_pending'],
    [{ kind: 'refused', code: 'PAYMENT_UNCONFIRMED' }, 'payment_pending'],
    [{ kind: 'refused', code: 'PAYMENT_VERIFIER_UNAVAILABLE' }, 'payment_pending'],
  ])('ends %j as %s, a final state', (exit, state) => {
    expect(finalState(exit)).toBe(state);
    expect(isFinalState(finalState(exit))).toBe(true);
  });

  it('has one transient state', () => {
    expect(isFinalState('forwarded')).toBe(false);
  });
});

describe("a paid call's money at its exit", () => {
  const exit = (over: Partial<PaymentExit>): PaymentExit => ({
    forwarded: true,
    sellerStatus: 200,
    state: 'completed',
    moneyMoved: true,
    reusable: true,
    ...over,
  });

  it.each<[string, Partial<PaymentExit>, string]>([
    ['a direct transfer the seller served', {}, 'book'],
    ['x402 settled before forwarding, served', { reusable: false }, 'book'],
    ['x402 after_response, served', { moneyMoved: false, reusable: false }, 'settle'],
    ['served, the buyer left mid-stream', { state: 'client_aborted' }, 'book'],
    [
      'after_response, 2xx headers, the buyer left mid-stream',
      { state: 'client_aborted', moneyMoved: false },
      'settle',
    ],
    ['the seller answered 500', { sellerStatus: 500 }, 'refund'],
    ['the seller answered 500, after_response', { sellerStatus: 500, moneyMoved: false }, 'release'],
    ['the seller broke off mid-answer', { state: 'upstream_error' }, 'refund'],
    ['the seller timed out', { sellerStatus: null, state: 'upstream_error' }, 'refund'],
    ['the buyer left before the seller answered', { sellerStatus: null, state: 'client_aborted' }, 'refund'],
    [
      'the buyer left before forwarding, a direct transfer',
      { forwarded: false, sellerStatus: null, state: 'client_aborted' },
      'release',
    ],
    [
      'refused before forwarding, x402 not settled',
      { forwarded: false, sellerStatus: null, state: 'refused', moneyMoved: false, reusable: false },
      'release',
    ],
    [
      'refused before forwarding, x402 already settled',
      { forwarded: false, sellerStatus: null, state: 'refused', reusable: false },
      'refund',
    ],
  ])('%s: %s', (_name, over, action) => {
    expect(paymentAction(exit(over))).toBe(action);
  });
});
