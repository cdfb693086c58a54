import type { MetricValueWithName, Registry } from 'prom-client';

/** What a prom-client Registry reads of a metric at scrape time. */
export interface ExposedMetric<L extends string> {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  aggregator: 'sum';
  values: MetricValueWithName<L>[];
}

/**
 * Counters and histograms for the gateway's per-call metrics: the same exposition as prom-client's (they register in
 * a prom-client Registry and are scraped with everything else), but a call records into a series it looked up once.
 * prom-client validates and hashes the labels on every observe — a dozen times per gateway call — where a hot series
 * is a bucket search and three additions. A series is made on first use of its label values and kept (labels are
 * bounded: see each metric's label names).
 */

type LabelValues<L extends string> = Readonly<Record<L, string>>;

interface HotOptions<L extends string> {
  name: string;
  help: string;
  labelNames?: readonly L[];
  registers: readonly Registry[];
}

abstract class HotMetric<L extends string, S> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  /** Every series with its labels, in the order made (for exposition; found through `#byValues`). */
  protected readonly series$: { labels: LabelValues<L>; series: S }[] = [];

  constructor(o: HotOptions<L>) {
    this.name = o.name;
    this.help = o.help;
    this.labelNames = o.labelNames ?? [];
    for (const register of o.registers) register.registerMetric(this as never);
  }

  protected abstract make(): S;

  /**
   * The series by label values, one level per label (the last level holds the series): found with a lookup per
   * label on the values as given, no key string made and hashed per observation.
   */
  #byValues = new Map<string, unknown>();

  /** The series of these label values (made on first use); record into it as often as needed. */
  series(labels: LabelValues<L>): S {
    const names = this.labelNames;
    let level = this.#byValues;
    const last = names.length - 1;
    for (let i = 0; i < last; i++) {
      const next = level.get(labels[names[i]!]) as Map<string, unknown> | undefined;
      if (next === undefined) return this.#add(labels);
      level = next;
    }
    const found = level.get(last < 0 ? '' : labels[names[last]!]) as S | undefined;
    return found ?? this.#add(labels);
  }

  /** A new series: its labels checked, kept for exposition and in the lookup. */
  #add(labels: LabelValues<L>): S {
    const names = this.labelNames;
    for (const name of names) {
      if (typeof labels[name] !== 'string') throw new TypeError(`${this.name}: label ${name} must be a string`);
    }
    const extra = Object.keys(labels).find((name) => !names.includes(name as L));
    if (extra !== undefined) throw new TypeError(`${this.name}: unknown label ${extra}`);
    const own = {} as Record<L, string>;
    for (const name of names) own[name] = labels[name];
    const series = this.make();
    this.series$.push({ labels: own, series });
    let level = this.#byValues;
    for (let i = 0; i < names.length - 1; i++) {
      const value = labels[names[i]!];
      let next = level.get(value) as Map<string, unknown> | undefined;
      if (next === undefined) {
        next = new Map();
        level.set(value, next);
      }
      level = next;
    }
    level.set(names.length === 0 ? '' : labels[names[names.length - 1]!], series);
    return series;
  }

  reset(): void {
    this.series$.length = 0;
    this.#byValues.clear();
  }
}

const assertFinite = (name: string, value: number): void => {
  if (!Number.isFinite(value)) throw new TypeError(`${name}: value is not a finite number: ${value}`);
};

export class CounterSeries {
  value = 0;
  constructor(private readonly name: string) {}
  inc(amount = 1): void {
    if (!(amount >= 0) || !Number.isFinite(amount)) throw new TypeError(`${this.name}: a counter only goes up`);
    this.value += amount;
  }
}

/** A counter (exposed as prom-client's is). */
export class HotCounter<L extends string = never> extends HotMetric<L, CounterSeries> {
  readonly type = 'counter';

  protected make(): CounterSeries {
    return new CounterSeries(this.name);
  }

  inc(labels: LabelValues<L>, amount = 1): void {
    this.series(labels).inc(amount);
  }

  async get(): Promise<ExposedMetric<L>> {
    return {
      name: this.name,
      help: this.help,
      type: 'counter',
      aggregator: 'sum',
      values: this.series$.map(({ labels, series }) => ({ labels, value: series.value })),
    };
  }
}

export class HistogramSeries {
  /** Observations per bucket (not cumulative); the last is above every bound (+Inf). */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    private readonly name: string,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(value: number): void {
    assertFinite(this.name, value);
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

/** A histogram (exposed as prom-client's is: cumulative `_bucket{le}`, `_sum`, `_count`). */
export class HotHistogram<L extends string = never> extends HotMetric<L, HistogramSeries> {
  readonly type = 'histogram';
  private readonly bounds: readonly number[];

  constructor(o: HotOptions<L> & { buckets: readonly number[] }) {
    super(o);
    this.bounds = [...o.buckets].sort((a, b) => a - b);
    // A histogram without labels shows its empty series from the start, as prom-client's does.
    if (this.labelNames.length === 0) this.series({} as LabelValues<L>);
  }

  protected make(): HistogramSeries {
    return new HistogramSeries(this.name, this.bounds);
  }

  observe(labels: LabelValues<L>, value: number): void {
    this.series(labels).observe(value);
  }

  override reset(): void {
    super.reset();
    if (this.labelNames.length === 0) this.series({} as LabelValues<L>);
  }

  async get(): Promise<ExposedMetric<L | 'le'>> {
    const values: MetricValueWithName<L | 'le'>[] = [];
    for (const { labels, series } of this.series$) {
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += series.counts[i]!;
        values.push({ labels: { le, ...labels } as never, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({
        labels: { le: '+Inf', ...labels } as never,
        value: series.count,
        metricName: `${this.name}_bucket`,
      });
      values.push({ labels: { ...labels } as never, value: series.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...labels } as never, value: series.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: 'histogram', aggregator: 'sum', values };
  }
}
