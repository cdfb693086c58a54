import { describe, expect, it } from 'vitest';
import { cpuBudget, formatCpuBudget } from '../src/budget.js';

// The throughput rows of a bench run on the 2-core machine (23:05, 2026-12-04), passthrough made up.
const rows = {
  bare: {
    requestsPerSecond: 7914,
    cpuMicrosPerRequest: { upstream: 23, 'bare-proxy': 138, proxy: 1, 'load generator': 34 },
  },
  passthrough: {
    requestsPerSecond: 15000,
    cpuMicrosPerRequest: { upstream: 22, passthrough: 63, 'load generator': 24 },
  },
  free: {
    requestsPerSecond: 6929,
    cpuMicrosPerRequest: {
      upstream: 26,
      'control-plane': 22,
      proxy: 109,
      'proxy B': 1,
      redis: 25,
      postgres: 22,
      'load generator': 28,
    },
  },
  paid: {
    requestsPerSecond: 3661,
    cpuMicrosPerRequest: {
      upstream: 32,
      'control-plane': 62,
      proxy: 154,
      'proxy B': 3,
      redis: 53,
      postgres: 145,
      'load generator': 55,
    },
  },
};

describe('cpuBudget', () => {
  it('says what each row used and what each target would need of the machine', () => {
    const b = cpuBudget(rows, 2);
    expect(b.rows).toEqual({
      // 196 µs × 7914/s; the bare proxy's 138 µs × 7914/s.
      bare: { call_us: 196, cores: 1.55, proxy_cores: 1.09 },
      passthrough: { call_us: 109, cores: 1.64, proxy_cores: 0.95 },
      free: { call_us: 233, cores: 1.61, proxy_cores: 0.76 },
      paid: { call_us: 504, cores: 1.85, proxy_cores: 0.56 },
    });
    // Free at bare's 7914/s: 233 µs × 7914 = 1.84 cores, its proxy 109 µs × 7914 = 0.86; 2 cores / 7914 = 252.7 µs.
    expect(b.free_to_bare).toEqual({
      target: 1,
      needed_rps: 7914,
      cores: 1.84,
      proxy_cores: 0.86,
      call_us_at_most: 252,
    });
    // Paid at 0.9 × 6929 = 6236.1/s: 504 µs → 3.14 cores; 2 cores / 6236.1 = 320.7 µs.
    expect(b.paid_to_free).toMatchObject({
      target: 0.9,
      needed_rps: 6236,
      cores: 3.14,
      proxy_cores: 0.96,
      call_us_at_most: 320,
    });
    // Largest first; what both rows cost alike is left out.
    expect(Object.entries(b.paid_to_free.added_us)).toEqual([
      ['postgres', 123],
      ['proxy', 45],
      ['control-plane', 40],
      ['redis', 28],
      ['load generator', 27],
      ['upstream', 6],
      ['proxy B', 2],
    ]);
  });

  it('takes other targets, a group only one row has, and a row that served nothing', () => {
    const b = cpuBudget(
      {
        bare: { requestsPerSecond: 1000, cpuMicrosPerRequest: { 'bare-proxy': 100 } },
        passthrough: { requestsPerSecond: 0, cpuMicrosPerRequest: {} },
        free: { requestsPerSecond: 800, cpuMicrosPerRequest: { proxy: 50, redis: 10 } },
        paid: { requestsPerSecond: 400, cpuMicrosPerRequest: { proxy: 50, relay: 5 } },
      },
      4,
      { freeToBare: 0.5, paidToFree: 1 },
    );
    expect(Object.entries(b.paid_to_free.added_us)).toEqual([
      ['relay', 5],
      ['redis', -10],
    ]);
    expect(b.free_to_bare).toEqual({
      target: 0.5,
      needed_rps: 500,
      cores: 0.03,
      proxy_cores: 0.03,
      call_us_at_most: 8000,
    });
    expect(b.paid_to_free).toMatchObject({ target: 1, needed_rps: 800, call_us_at_most: 5000 });
    expect(b.rows.passthrough).toEqual({ call_us: 0, cores: 0, proxy_cores: 0 });
  });

  it('prints every figure a reader needs', () => {
    const text = formatCpuBudget(cpuBudget(rows, 2));
    expect(text).toContain('of these 2 cores');
    expect(text).toContain('free 233 µs/call, 1.61 cores (proxy 0.76)');
    expect(text).toContain(
      'free ≥ 1.0× bare = 7914 req/s: its calls as measured would use 1.84 of 2 cores (its proxy 0.86)',
    );
    expect(text).toContain(
      'a call may cost at most 320 µs to fit at all, and costs 504: 271 over a free one (postgres +123',
    );
    expect(text).toContain('redis +28, load generator +27');
  });
});
