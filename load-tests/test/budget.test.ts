import { describe, expect, it } from 'vitest';
import { cpuBudget, formatCpuBudget } from '../src/budget.js';

// The throughput rows of a bench run on the 2-core machine (23:05, 2026-12-04), every group as it printed them; the
// passthrough row is made up (that run had none).
const rows = {
  bare: {
    requestsPerSecond: 7914,
    cpuMicrosPerRequest: {
      upstream: 23,
      'bare-proxy': 138,
      proxy: 1,
      'proxy B': 1,
      'proxy-workers': 1,
      'load generator': 34,
    },
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
      'proxy-workers': 1,
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
      'proxy-workers': 4,
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
      // 198 µs × 7914/s = 1.567 cores; the bare proxy's 138 µs × 7914/s = 1.092.
      bare: { call_us: 198, cores: 1.57, proxy_cores: 1.09 },
      passthrough: { call_us: 109, cores: 1.64, proxy_cores: 0.95 },
      free: { call_us: 234, cores: 1.62, proxy_cores: 0.76 },
      paid: { call_us: 508, cores: 1.86, proxy_cores: 0.56 },
    });
    // Free at bare's 7914/s: 234 µs × 7914 = 1.852 cores, its proxy 109 µs × 7914 = 0.863; 2 cores / 7914 = 252.7 µs.
    expect(b.free_to_bare).toEqual({
      target: 1,
      needed_rps: 7914,
      cores: 1.85,
      proxy_cores: 0.86,
      call_us_at_most: 252,
    });
    // Paid at 0.9 × 6929 = 6236.1/s: 508 µs → 3.168 cores, its proxy 154 µs → 0.960; 2 cores / 6236.1 = 320.7 µs.
    expect(b.paid_to_free).toMatchObject({
      target: 0.9,
      needed_rps: 6236,
      cores: 3.17,
      proxy_cores: 0.96,
      call_us_at_most: 320,
    });
    // Largest first, the processes that serve a call only (not proxy B and the workers idling beside the rows).
    expect(Object.entries(b.paid_to_free.added_us)).toEqual([
      ['postgres', 123],
      ['proxy', 45],
      ['control-plane', 40],
      ['redis', 28],
      ['load generator', 27],
      ['upstream', 6],
    ]);
  });

  it('takes other targets, a group only one row has, idle processes, and a row that served nothing', () => {
    const b = cpuBudget(
      {
        bare: { requestsPerSecond: 1000, cpuMicrosPerRequest: { 'bare-proxy': 100 } },
        passthrough: { requestsPerSecond: 0, cpuMicrosPerRequest: {} },
        free: { requestsPerSecond: 800, cpuMicrosPerRequest: { proxy: 50, redis: 10 } },
        paid: { requestsPerSecond: 400, cpuMicrosPerRequest: { proxy: 50, upstream: 5, 'proxy B': 9 } },
      },
      4,
      { freeToBare: 0.5, paidToFree: 1 },
    );
    expect(Object.entries(b.paid_to_free.added_us)).toEqual([
      ['upstream', 5],
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
    // A reference row that served nothing asks for no rate, and bounds no call.
    const none = cpuBudget(
      {
        bare: { requestsPerSecond: 0, cpuMicrosPerRequest: {} },
        passthrough: { requestsPerSecond: 0, cpuMicrosPerRequest: {} },
        free: { requestsPerSecond: 0, cpuMicrosPerRequest: { proxy: 50 } },
        paid: { requestsPerSecond: 0, cpuMicrosPerRequest: { proxy: 60 } },
      },
      2,
    );
    expect(none.free_to_bare).toEqual({ target: 1, needed_rps: 0, cores: 0, proxy_cores: 0, call_us_at_most: 0 });
    expect(none.paid_to_free).toMatchObject({ needed_rps: 0, call_us_at_most: 0, added_us: { proxy: 10 } });
  });

  it('prints every figure a reader needs', () => {
    const text = formatCpuBudget(cpuBudget(rows, 2));
    expect(text).toContain('of these 2 cores');
    expect(text).toContain('free 234 µs/call, 1.62 cores (proxy 0.76)');
    expect(text).toContain(
      'free ≥ 1.0× bare = 7914 req/s: its calls as measured would use 1.85 of 2 cores (its proxy 0.86)',
    );
    expect(text).toContain(
      'a call may cost at most 320 µs to fit at all, and costs 508: 269 more than a free one in the processes that serve it (postgres +123',
    );
    expect(text).toContain('redis +28, load generator +27');
  });
});
