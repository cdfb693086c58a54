/**
 * The throughput targets as CPU budgets. In `npm run bench` every process (seller, proxies, Redis, PostgreSQL,
 * control plane and the load generator itself) shares the machine's cores, so when a row saturates them its
 * requests/s follows what one request costs all of them together. A ratio target between two rows is then a bound
 * on that total: this says what the bound leaves to each part, beside what each part costs.
 */

/** CPU µs per request by process group, as a bench row holds them. */
export type CpuByGroup = Readonly<Record<string, number>>;

/** The free row's groups that record a call (the start record, the end event, the history row). */
export const RECORDING_GROUPS = ['redis', 'postgres', 'control-plane'] as const;

export interface CpuBudget {
  /** µs per request of every measured process (seller and load generator included), by row. */
  bare_call_us: number;
  passthrough_call_us: number;
  free_call_us: number;
  paid_call_us: number;
  /** The requests/s ratios the totals alone predict (the inverse ratio of the totals). */
  predicted_free_to_bare: number;
  predicted_paid_to_free: number;
  /** The proxy process of each row. */
  bare_proxy_us: number;
  passthrough_us: number;
  free_proxy_us: number;
  /** Redis + PostgreSQL + control plane per free call. */
  free_recording_us: number;
  /** The most the free row's proxy could cost for free ≥ 1.0× bare, everything else as measured. */
  free_proxy_budget_us: number;
  /** The most a paid call could cost over a free one for paid ≥ 0.9× free. */
  paid_added_budget_us: number;
  /** What a paid call costs over a free one, by group, largest first (groups that differ by nothing left out). */
  paid_added_us: Record<string, number>;
}

const total = (cpu: CpuByGroup): number => Object.values(cpu).reduce((sum, micros) => sum + micros, 0);
const of = (cpu: CpuByGroup, group: string): number => cpu[group] ?? 0;
const ratio = (a: number, b: number): number => (b > 0 ? Number((a / b).toFixed(3)) : 0);

export const cpuBudget = (
  rows: { bare: CpuByGroup; passthrough: CpuByGroup; free: CpuByGroup; paid: CpuByGroup },
  targets: { freeToBare: number; paidToFree: number } = { freeToBare: 1.0, paidToFree: 0.9 },
): CpuBudget => {
  const { bare, passthrough, free, paid } = rows;
  const [bareCall, freeCall, paidCall] = [total(bare), total(free), total(paid)];
  const added = [...new Set([...Object.keys(free), ...Object.keys(paid)])]
    .map((group) => [group, of(paid, group) - of(free, group)] as const)
    .filter(([, micros]) => micros !== 0)
    .sort((a, b) => b[1] - a[1]);
  return {
    bare_call_us: bareCall,
    passthrough_call_us: total(passthrough),
    free_call_us: freeCall,
    paid_call_us: paidCall,
    predicted_free_to_bare: ratio(bareCall, freeCall),
    predicted_paid_to_free: ratio(freeCall, paidCall),
    bare_proxy_us: of(bare, 'bare-proxy'),
    passthrough_us: of(passthrough, 'passthrough'),
    free_proxy_us: of(free, 'proxy'),
    free_recording_us: RECORDING_GROUPS.reduce((sum, group) => sum + of(free, group), 0),
    // Free at the target ratio may cost bareCall / target in all; what the proxy may take is that less the rest.
    free_proxy_budget_us: Math.round(bareCall / targets.freeToBare - (freeCall - of(free, 'proxy'))),
    paid_added_budget_us: Math.round(freeCall / targets.paidToFree - freeCall),
    paid_added_us: Object.fromEntries(added),
  };
};

/** The budget as the bench prints it. */
export const formatCpuBudget = (b: CpuBudget): string => {
  const added = Object.entries(b.paid_added_us)
    .map(([group, micros]) => `${group} ${micros > 0 ? '+' : ''}${micros}`)
    .join(', ');
  const addedTotal = b.paid_call_us - b.free_call_us;
  return (
    'CPU budget of the throughput targets (µs per request, every process on these cores; requests/s follows the totals)\n' +
    `  bare call ${b.bare_call_us} (bare proxy ${b.bare_proxy_us}); passthrough call ${b.passthrough_call_us} (passthrough ${b.passthrough_us}); ` +
    `free call ${b.free_call_us} (proxy ${b.free_proxy_us}, recording ${b.free_recording_us}); paid call ${b.paid_call_us}\n` +
    `  free ≥ 1.0× bare: the totals predict ${b.predicted_free_to_bare}; the proxy may cost at most ${b.free_proxy_budget_us} µs ` +
    `with all else as measured (it costs ${b.free_proxy_us}; the passthrough, which checks nothing, ${b.passthrough_us})\n` +
    `  paid ≥ 0.9× free: the totals predict ${b.predicted_paid_to_free}; a paid call may add at most ${b.paid_added_budget_us} µs ` +
    `over a free one and adds ${addedTotal}: ${added}\n`
  );
};
