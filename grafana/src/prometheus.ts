import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A real Prometheus (the Debian binary) for the dashboards test and the screenshots: a config of its own scraping
 * the given planes, the repository's alert rules, a throw-away TSDB, loopback only.
 */

export const ALERTS_FILE = fileURLToPath(new URL('../prometheus/alerts.yml', import.meta.url));
export const PROMETHEUS_DIR = fileURLToPath(new URL('../prometheus/', import.meta.url));

export interface PromtoolResult {
  code: number;
  output: string;
}

/** Runs `promtool` with `args`; resolves with its exit code and output (never rejects on a non-zero exit). */
export const promtool = (args: string[], cwd?: string): Promise<PromtoolResult> =>
  new Promise((resolve, reject) => {
    execFile('promtool', args, { cwd, timeout: 30_000 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') return reject(error);
      resolve({ code: error ? Number(error.code) : 0, output: `${stdout}${stderr}` });
    });
  });

/** A TCP port free right now on loopback. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

/** `host:port` of a base URL, as a scrape target. */
export const target = (url: string): string => new URL(url).host;

export interface ScrapeTargets {
  proxies: string[];
  controlPlanes: string[];
}

/** The scrape config: the compose file's jobs (grafana/prometheus/prometheus.yml), on other addresses. */
export const prometheusConfig = (targets: ScrapeTargets, scrapeIntervalSeconds: number, ruleFiles: string[]) => ({
  global: { scrape_interval: `${scrapeIntervalSeconds}s`, evaluation_interval: `${scrapeIntervalSeconds}s` },
  rule_files: ruleFiles,
  scrape_configs: [
    {
      job_name: 'crochet-control-plane',
      metrics_path: '/metrics',
      static_configs: [{ targets: targets.controlPlanes.map(target) }],
    },
    { job_name: 'crochet-proxy', metrics_path: '/metrics', static_configs: [{ targets: targets.proxies.map(target) }] },
  ],
});

/** A sample of an instant vector or a series of a matrix, as the HTTP API returns them. */
export interface PromSeries {
  metric: Record<string, string>;
  value?: [number, string];
  values?: [number, string][];
}

export interface PromResult {
  status: 'success' | 'error';
  error?: string;
  errorType?: string;
  data?: { resultType: string; result: PromSeries[] | [number, string] };
}

export interface Prometheus {
  url: string;
  configFile: string;
  /** When Prometheus started scraping (unix seconds). */
  startedAt: number;
  query(expr: string, time?: number): Promise<PromResult>;
  queryRange(expr: string, start: number, end: number, stepSeconds: number): Promise<PromResult>;
  /** `label_values(match, label)`: the values `label` takes on the series `match` selects. */
  labelValues(label: string, match: string): Promise<string[]>;
  /** GET an API path, e.g. /api/v1/rules: its JSON envelope. */
  api<T = unknown>(path: string): Promise<{ status: string; error?: string; data: T }>;
  /** Resolves once every target has been scraped successfully `scrapes` times. */
  waitForScrapes(scrapes?: number): Promise<void>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export const startPrometheus = async (
  targets: ScrapeTargets,
  options: { scrapeIntervalSeconds?: number; ruleFiles?: string[] } = {},
): Promise<Prometheus> => {
  const interval = options.scrapeIntervalSeconds ?? 1;
  const dir = await mkdtemp(join(tmpdir(), 'crochet-prometheus-'));
  const configFile = join(dir, 'prometheus.yml');
  // JSON is YAML: Prometheus reads it as is.
  await writeFile(configFile, JSON.stringify(prometheusConfig(targets, interval, options.ruleFiles ?? [ALERTS_FILE])));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(
    'prometheus',
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    log = (log + chunk.toString('utf8')).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const api = async <T>(path: string) => {
    const res = await fetch(`${url}${path}`);
    return (await res.json()) as { status: string; error?: string; data: T };
  };
  const form = async (path: string, params: Record<string, string>): Promise<PromResult> => {
    const res = await fetch(`${url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(params),
    });
    return (await res.json()) as PromResult;
  };
  const stop = async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      const killed = await Promise.race([exited.then(() => true), sleep(5_000).then(() => false)]);
      if (!killed) child.kill('SIGKILL');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`prometheus exited (${child.exitCode}): ${log}`);
    const ready = await fetch(`${url}/-/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus not ready after 15 s: ${log}`);
    }
    await sleep(100);
  }
  const startedAt = Date.now() / 1000;
  const expected = targets.proxies.length + targets.controlPlanes.length;

  return {
    url,
    configFile,
    startedAt,
    query: (expr, time) =>
      form('/api/v1/query', { query: expr, ...(time === undefined ? {} : { time: String(time) }) }),
    queryRange: (expr, start, end, stepSeconds) =>
      form('/api/v1/query_range', { query: expr, start: String(start), end: String(end), step: String(stepSeconds) }),
    labelValues: async (label, match) => {
      const body = await api<string[]>(`/api/v1/label/${label}/values?${new URLSearchParams({ 'match[]': match })}`);
      if (body.status !== 'success') throw new Error(`label values ${label} of ${match}: ${body.error}`);
      return body.data;
    },
    api,
    waitForScrapes: async (scrapes = 2) => {
      const until = Date.now() + 30_000;
      for (;;) {
        // Each target's own samples: `up` == 1 at `scrapes` distinct timestamps.
        const res = await form('/api/v1/query', { query: `count_over_time(up[5m]) >= ${scrapes} and up == 1` });
        const ok = res.status === 'success' ? (res.data!.result as PromSeries[]).length : 0;
        if (ok >= expected) return;
        if (Date.now() > until) throw new Error(`only ${ok} of ${expected} targets scraped ${scrapes} times: ${log}`);
        await sleep(200);
      }
    },
    stop,
  };
};
