import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { HotCounter, HotHistogram, LATENCY_BUCKETS } from '../src/index.js';

/** The exposition of `name` in a registry's text, with the metric's name replaced (to compare two metrics' lines). */
const linesOf = async (register: Registry, name: string): Promise<string[]> =>
  (await register.metrics())
    .split('\n')
    .filter((line) => line.startsWith(name) || line.includes(` ${name} `))
    .map((line) => line.replaceAll(name, 'm'));

describe('hot metrics', () => {
  it('expose exactly what prom-client exposes for the same observations', async () => {
    const register = new Registry();
    const registers = [register];
    const both = { help: 'h', labelNames: ['step', 'kind'], buckets: LATENCY_BUCKETS, registers } as const;
    const reference = new Histogram({ name: 'ref_seconds', ...both, labelNames: [...both.labelNames] });
    const hot = new HotHistogram({ name: 'hot_seconds', ...both });
    const refCount = new Counter({ name: 'ref_total', help: 'h', labelNames: ['direction'], registers });
    const hotCount = new HotCounter({ name: 'hot_total', help: 'h', labelNames: ['direction'], registers });
    const refPlain = new Histogram({ name: 'refplain_seconds', help: 'h', buckets: [0.1, 1], registers });
    const hotPlain = new HotHistogram({ name: 'hotplain_seconds', help: 'h', buckets: [1, 0.1], registers });
    // An empty histogram without labels shows its zero series, as prom-client's does.
    expect(await linesOf(register, 'hotplain_seconds')).toEqual(await linesOf(register, 'refplain_seconds'));

    const values = [0, 0.0005, 0.0004, 0.001, 0.0011, 0.3, 7, 30, 31, 1e9];
    for (const [i, value] of values.entries()) {
      const labels = { step: i % 2 ? 'admit' : 'sign', kind: i % 3 ? 'a' : 'b' };
      reference.observe(labels, value);
      hot.series(labels).observe(value);
      refPlain.observe(value);
      hotPlain.observe({}, value);
      refCount.inc({ direction: labels.step }, i);
      hotCount.inc({ direction: labels.step }, i);
    }
    expect(await linesOf(register, 'hot_seconds')).toEqual(await linesOf(register, 'ref_seconds'));
    expect(await linesOf(register, 'hot_seconds')).toContain('m_bucket{le="+Inf",step="sign",kind="b"} 2');
    expect(await linesOf(register, 'hotplain_seconds')).toEqual(await linesOf(register, 'refplain_seconds'));
    expect(await linesOf(register, 'hot_total')).toEqual(await linesOf(register, 'ref_total'));
  });

  it('refuse what prom-client refuses: unknown or missing labels, non-finite values, a counter going down', () => {
    const registers = [new Registry()];
    const hot = new HotHistogram({ name: 'h_seconds', help: 'h', labelNames: ['step'], buckets: [1], registers });
    const count = new HotCounter({ name: 'c_total', help: 'h', labelNames: ['direction'], registers });
    expect(() => hot.observe({ step: 'a', other: 'b' } as never, 1)).toThrow(/unknown label other/);
    expect(() => hot.observe({} as never, 1)).toThrow(/label step must be a string/);
    expect(() => hot.observe({ step: 'a' }, Number.NaN)).toThrow(/finite/);
    expect(() => count.inc({ direction: 'in' }, -1)).toThrow(/only goes up/);
    // A refused value changed nothing.
    expect(hot.series({ step: 'a' }).count).toBe(0);
  });

  it('start again from nothing on reset, and cannot share a name in one registry', async () => {
    const register = new Registry();
    const hot = new HotHistogram({ name: 'r_seconds', help: 'h', buckets: [1], registers: [register] });
    hot.observe({}, 0.5);
    hot.reset();
    expect(await register.metrics()).toContain('r_seconds_count 0');
    expect(() => new HotCounter({ name: 'r_seconds', help: 'h', registers: [register] })).toThrow();
  });
});
