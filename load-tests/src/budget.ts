/**
 * What the throughput targets ask of the machine. In `npm run bench` every process (seller, proxies, Redis,
 * PostgreSQL, control plane and the load generator itself) shares the machine's cores. A row that is to serve a rate
 * needs, at that rate, its calls' CPU (all processes, as measured per call) in cores; its proxy's share is printed
 * too (one process: its event loop plus V8's helper threads, about a core at most). Neither figure sets a row's rate
 * alone: a row also waits on the hops between processes, and no row here keeps every core busy (each prints the cores
 * it used). But calls that would need more cores than the machine has cannot be served at that rate on it.
 */

/** CPU µs per request by process group, as a bench row holds them. */
export type CpuByGroup = Readonly<Record<string, number>>;

export interface BudgetRow {
  requestsPerSecond: number;
  cpuMicrosPerRequest: CpuByGroup;
}

/** The proxy process of each row (the one that served it). */
const PROXY_OF = { bare: 'bare-proxy', passthrough: 'passthrough', free: 'proxy', paid: 'proxy' } as const;

/** The groups that serve a gateway call; the others only idle beside the free and paid rows (spare proxies). */
const SERVING = ['upstream', 'proxy', 'redis', 'postgres', 'control-plane', 'load generator'] as const;

export interface RowUse {
  /** CPU µs per call of every measured process, seller and load generator included. */
  call_us: number;
  /** Cores the row used as measured (call_us × requests/s). */
  cores: number;
  /** Cores its proxy process used. */
  proxy_cores: number;
}

export interface TargetNeed {
  /** target × the reference row's requests/s. */
  needed_rps: number;
  /** Cores the row's calls (as measured per call) would use at that rate. */
  cores: number;
  /** Cores its proxy process would use at that rate. */
  proxy_cores: number;
  /** The most a call could cost (µs, every process) for the rate to fit in the machine's cores at all. */
  call_us_at_most: number;
}

export interface CpuBudget {
  cores: number;
  rows: Record<keyof typeof PROXY_OF, RowUse>;
  free_to_bare: TargetNeed & { target: number };
  paid_to_free: TargetNeed & {
    target: number;
    /**
     * What a paid call costs over a free one, by group that serves a call (not the processes idling beside the rows),
     * largest first; groups that differ by nothing are left out.
     */
    added_us: Record<string, number>;
  };
}

const total = (cpu: CpuByGroup): number => Object.values(cpu).reduce((sum, micros) => sum + micros, 0);
const round2 = (x: number): number => Math.round(x * 100) / 100;

const use = (row: BudgetRow, proxy: string): RowUse => ({
  call_us: total(row.cpuMicrosPerRequest),
  cores: round2((total(row.cpuMicrosPerRequest) * row.requestsPerSecond) / 1e6),
  proxy_cores: round2(((row.cpuMicrosPerRequest[proxy] ?? 0) * row.requestsPerSecond) / 1e6),
});

const need = (row: BudgetRow, proxy: string, neededRps: number, cores: number): TargetNeed => ({
  needed_rps: Math.round(neededRps),
  cores: round2((total(row.cpuMicrosPerRequest) * neededRps) / 1e6),
  proxy_cores: round2(((row.cpuMicrosPerRequest[proxy] ?? 0) * neededRps) / 1e6),
  // An upper bound: floor, so that a call of this cost still fits.
  call_us_at_most: neededRps > 0 ? Math.floor((cores * 1e6) / neededRps) : 0,
});

export const cpuBudget = (
  rows: Record<keyof typeof PROXY_OF, BudgetRow>,
  cores: number,
  targets: { freeToBare: number; paidToFree: number } = { freeToBare: 1.0, paidToFree: 0.9 },
): CpuBudget => {
  const { bare, free, paid } = rows;
  const added = SERVING.map(
    (group) => [group, (paid.cpuMicrosPerRequest[group] ?? 0) - (free.cpuMicrosPerRequest[group] ?? 0)] as const,
  )
    .filter(([, micros]) => micros !== 0)
    .sort((a, b) => b[1] - a[1]);
  return {
    cores,
    rows: {
      bare: use(bare, PROXY_OF.bare),
      passthrough: use(rows.passthrough, PROXY_OF.passthrough),
      free: use(free, PROXY_OF.free),
      paid: use(paid, PROXY_OF.paid),
    },
    free_to_bare: Object.assign(need(free, 'proxy', targets.freeToBare * bare.requestsPerSecond, cores), {
      target: targets.freeToBare,
    }),
    paid_to_free: Object.assign(need(paid, 'proxy', targets.paidToFree * free.requestsPerSecond, cores), {
      target: targets.paidToFree,
      added_us: Object.fromEntries(added),
    }),
  };
};

/** A ratio as the targets are written (1.0, 0.9). */
const ratioText = (x: number): string => (Number.isInteger(x) ? x.toFixed(1) : String(x));

/** The budget as the bench prints it. */
export const formatCpuBudget = (b: CpuBudget): string => {
  const { bare, passthrough, free, paid } = b.rows;
  const row = (name: string, r: RowUse, proxy: string) =>
    `${name} ${r.call_us} µs/call, ${r.cores} cores (${proxy} ${r.proxy_cores})`;
  const f = b.free_to_bare;
  const p = b.paid_to_free;
  const added = Object.entries(p.added_us)
    .map(([group, micros]) => `${group} ${micros > 0 ? '+' : ''}${micros}`)
    .join(', ');
  return (
    `what the throughput targets ask of these ${b.cores} cores (CPU per call of every process, seller and load generator included)\n` +
    `  used: ${row('bare', bare, 'bare proxy')}; ${row('passthrough', passthrough, 'passthrough')}; ` +
    `${row('free', free, 'proxy')}; ${row('paid', paid, 'proxy')}\n` +
    `  free ≥ ${ratioText(f.target)}× bare = ${f.needed_rps} req/s: its calls as measured would use ${f.cores} of ${b.cores} cores ` +
    `(its proxy ${f.proxy_cores}); a call may cost at most ${f.call_us_at_most} µs to fit at all\n` +
    `  paid ≥ ${ratioText(p.target)}× free = ${p.needed_rps} req/s: its calls as measured would use ${p.cores} of ${b.cores} cores ` +
    `(its proxy ${p.proxy_cores}); a call may cost at most ${p.call_us_at_most} µs to fit at all, and costs ${paid.call_us}: ` +
    `${total(p.added_us)} more than a free one in the processes ` +
    `that serve it (${added})\n`
  );
};
