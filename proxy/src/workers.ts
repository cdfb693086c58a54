import cluster, { type Worker } from 'node:cluster';
import { DRAIN_MS, EXIT_UNSAFE_STATE, installProcessGuard } from '@crochet/plugins';
import { ConfigError } from '@crochet/protocol';
import { startProxy } from './app.js';
import { loadProxyConfig } from './config.js';

/**
 * Proxy processes on one host (`CROCHET_PROXY_WORKERS`): the gateway is one event loop per process, so a host with
 * several cores runs several, sharing one public port (node:cluster hands each new connection to a worker in turn).
 * Each worker is a whole proxy — its own Redis connections, config copy and metrics listener — exactly as two proxy
 * containers would be; nothing is shared between them but Redis. The process that forks them does nothing on the
 * request path: under `npm start` it is the control plane's process, so control-plane work never shares a proxy's
 * event loop.
 */

const READY = 'crochet:proxy-ready';
const MAX_WORKERS = 64;

/** `CROCHET_PROXY_WORKERS` (1 to 64, default 1). */
export const proxyWorkerCount = (env: NodeJS.ProcessEnv = process.env): number => {
  const raw = env['CROCHET_PROXY_WORKERS'];
  if (raw === undefined || raw === '') return 1;
  const count = Number(raw);
  if (!Number.isInteger(count) || count < 1 || count > MAX_WORKERS) {
    throw new ConfigError([`CROCHET_PROXY_WORKERS: must be an integer from 1 to ${MAX_WORKERS} (got "${raw}")`]);
  }
  return count;
};

export interface ProxyWorkers {
  /** Each worker's public URL and metrics URL, in worker order. */
  readonly listening: readonly { url: string; metricsUrl: string }[];
  /** Stops every worker (each drains its calls in flight) and stops replacing them. */
  close(): Promise<void>;
}

/**
 * Forks `count` proxy workers running this same entry point (which must call `runProxyWorker()` when
 * `cluster.isWorker`), each with `env`. A worker's metrics listener gets its own port: `CROCHET_METRICS_PORT` + its
 * index (0 stays "any free port"). Resolves once every worker listens; rejects if one exits before it does (a bad
 * setting). A worker that dies later is replaced, a second later.
 */
export const forkProxyWorkers = async (
  count: number,
  env: NodeJS.ProcessEnv,
  say: (line: string) => void,
): Promise<ProxyWorkers> => {
  const baseMetricsPort = loadProxyConfig(env).metricsPort;
  const workers = new Map<number, Worker>();
  const listening: { url: string; metricsUrl: string }[] = [];
  let stopping = false;

  const fork = (index: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const worker = cluster.fork({
        ...env,
        CROCHET_PROXY_WORKER_INDEX: String(index),
        CROCHET_METRICS_PORT: String(baseMetricsPort === 0 ? 0 : baseMetricsPort + index),
      });
      workers.set(index, worker);
      let ready = false;
      worker.on('message', (message: { type?: string; url?: string; metricsUrl?: string }) => {
        if (message?.type !== READY) return;
        ready = true;
        listening[index] = { url: message.url ?? '', metricsUrl: message.metricsUrl ?? '' };
        say(`proxy worker ${index} listening (pid ${worker.process.pid})`);
        resolve();
      });
      worker.on('exit', (code, signal) => {
        if (workers.get(index) === worker) workers.delete(index);
        if (!ready) return reject(new Error(`proxy worker ${index} exited before listening (${signal ?? code})`));
        if (stopping) return;
        say(`proxy worker ${index} exited (${signal ?? code}); starting a new one`);
        setTimeout(() => {
          if (!stopping) fork(index).catch((error: Error) => say(error.message));
        }, 1000).unref();
      });
    });

  const close = async (): Promise<void> => {
    stopping = true;
    await Promise.all(
      [...workers.values()].map(
        (worker) =>
          new Promise<void>((resolve) => {
            if (worker.isDead()) return resolve();
            const kill = setTimeout(() => worker.process.kill('SIGKILL'), DRAIN_MS + 20_000);
            worker.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            worker.process.kill('SIGTERM');
          }),
      ),
    );
  };

  try {
    await Promise.all(Array.from({ length: count }, (_, index) => fork(index)));
  } catch (error) {
    await close();
    throw error;
  }
  return { listening, close };
};

/**
 * A proxy process's life: starts the proxy from the environment, stops it on SIGINT/SIGTERM (calls in flight drain,
 * their records are written out), and ends the process on an uncaught exception. In a cluster worker it tells the
 * primary once it listens.
 */
export const runProxyWorker = async (env: NodeJS.ProcessEnv = process.env): Promise<void> => {
  let config: ReturnType<typeof loadProxyConfig>;
  try {
    config = loadProxyConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`proxy: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
  const proxy = await startProxy(config);
  proxy.app.log.info({ url: proxy.url, worker: env['CROCHET_PROXY_WORKER_INDEX'] }, 'proxy listening');
  let closing = false;
  const shutdown = (reason: string, code = 0) => {
    if (closing) return;
    closing = true;
    // Whatever hangs in the drain (a store that does not answer), the process ends: a supervisor restarts it.
    setTimeout(() => process.exit(code || 1), DRAIN_MS + 15_000).unref();
    proxy.app.log.info({ reason }, 'shutting down');
    proxy.close().then(
      () => process.exit(code),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  // A worker whose primary is gone has no one to stop it: it stops itself.
  if (cluster.isWorker) process.on('disconnect', () => shutdown('primary gone'));
  // Installed once started: a failure to start still ends the process, as it should.
  installProcessGuard({ log: proxy.app.log, shutdown: () => shutdown('uncaught exception', EXIT_UNSAFE_STATE) });
  process.send?.({ type: READY, url: proxy.url, metricsUrl: proxy.metricsUrl });
};
