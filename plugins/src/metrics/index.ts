import { ApiError } from '@crochet/protocol';
import Fastify from 'fastify';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { sendApiError } from '../http-common/reply.js';

export { Counter, Gauge, Histogram, Registry } from 'prom-client';
export { CounterSeries, HistogramSeries, HotCounter, HotHistogram } from './hot.js';

/**
 * A registry of its own (never prom-client's global one: tests run several proxies and control planes in one process)
 * with prom-client's default Node metrics — event-loop lag, heap, GC, handles, CPU — under `prefix`.
 */
export const createMetricsRegistry = (prefix = ''): Registry => {
  const register = new Registry();
  collectDefaultMetrics({ register, prefix });
  return register;
};

/** Latency buckets in seconds: sub-millisecond proxy steps up to slow upstreams. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** `2xx`, `4xx`, …: the status code's class, a bounded label. */
export const statusClass = (status: number): string => `${Math.floor(status / 100)}xx`;

export interface MetricsListener {
  /** Base URL of the listener; Prometheus scrapes `${url}/metrics`. */
  url: string;
  close(): Promise<void>;
}

/**
 * GET /metrics in the Prometheus text format on a listener of its own (DESIGN §4): never on a public or API port, so
 * metrics (listing ids, traffic) are reachable only where the operator binds this one. Anything else is a 404.
 */
export const startMetricsListener = async (
  register: Registry,
  options: { host: string; port: number },
): Promise<MetricsListener> => {
  const app = Fastify({ logger: false });
  app.get('/metrics', async (_request, reply) => {
    const body = await register.metrics();
    return reply.type(register.contentType).header('cache-control', 'no-store').send(body);
  });
  app.setNotFoundHandler((_request, reply) => sendApiError(reply, new ApiError('ROUTE_NOT_FOUND')));
  // Exclusive: in a cluster worker, each proxy process has its own metrics listener (not one port shared round-robin).
  const url = await app.listen({ host: options.host, port: options.port, exclusive: true });
  return { url, close: () => app.close() };
};
