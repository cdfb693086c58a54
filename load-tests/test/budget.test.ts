import { describe, expect, it } from 'vitest';
import { cpuBudget, formatCpuBudget } from '../src/budget.js';

// A bench run's rows (CPU µs per request by process group), as measured on the 2-core machine.
const rows = {
  bare: { upstream: 23, 'bare-proxy': 138, 'load generator': 34 },
  passthrough: { upstream: 22, passthrough: 80, 'load generator': 30, 'bare-proxy': 1 },
  free: { upstream: 26, 'control-plane': 22, proxy: 109, 'proxy B': 1, redis: 25, postgres: 22, 'load generator': 28 },
  paid: { upstream: 32, 'control-plane': 62, proxy: 154, 'proxy B': 3, redis: 53, postgres: 145, 'load generator': 55 },
};

describe('cpuBudget', () => {
  it('turns the ratio targets into what each part may cost', () => {
    const b = cpuBudget(rows);
    expect(b).toMatchObject({
      bare_call_us: 195,
      passthrough_call_us: 133,
      free_call_us: 233,
      paid_call_us: 504,
      predicted_free_to_bare: 0.837,
      predicted_paid_to_free: 0.462,
      bare_proxy_us: 138,
      passthrough_us: 80,
      free_proxy_us: 109,
      free_recording_us: 69,
      // 195 in all at 1.0×, less the free call's 124 outside its proxy.
      free_proxy_budget_us: 71,
      // 233 / 0.9 − 233.
      paid_added_budget_us: 26,
    });
    // Largest first; what both rows cost alike is left out.
    expect(Object.entries(b.paid_added_us)).toEqual([
      ['postgres', 123],
      ['proxy', 45],
      ['control-plane', 40],
      ['redis', 28],
      ['load generator', 27],
      ['upstream', 6],
      ['proxy B', 2],
    ]);
  });

  it('counts a group only one of the rows has, and other targets', () => {
    const b = cpuBudget(
      { bare: { p: 100 }, passthrough: {}, free: { proxy: 50, redis: 10 }, paid: { proxy: 50, relay: 5 } },
      { freeToBare: 0.5, paidToFree: 1 },
    );
    expect(b.paid_added_us).toEqual({ relay: 5, redis: -10 });
    expect(b.free_proxy_budget_us).toBe(190);
    expect(b.paid_added_budget_us).toBe(0);
    expect(b.passthrough_call_us).toBe(0);
  });

  it('prints every figure a reader needs', () => {
    const text = formatCpuBudget(cpuBudget(rows));
    expect(text).toContain('free call 233 (proxy 109, recording 69)');
    expect(text).toContain('the proxy may cost at most 71 µs');
    expect(text).toContain('a paid call may add at most 26 µs over a free one and adds 271: postgres +123');
    expect(text).toContain('redis +28, load generator +27');
  });
});
