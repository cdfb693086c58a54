/**
 * The processes a benchmark measures, one role per process so that each has a core's worth of event loop like in
 * production: `upstream` (a seller answering a small JSON), `bare-proxy` (@fastify/http-proxy, no checks),
 * `control-plane` and `proxy` (Crochet). Each prints one JSON line `{"url": …}` when it listens.
 */
import cluster from 'node:cluster';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import httpProxy from '@fastify/http-proxy';
import Fastify from 'fastify';

const role = process.argv[2];
// Exit normally on SIGTERM so that a --cpu-prof profile is written (a proxy worker stops its own way).
if (!cluster.isWorker) process.on('SIGTERM', () => process.exit(0));
const ready = (url: string) => process.stdout.write(`${JSON.stringify({ url })}\n`);

const BODY = JSON.stringify({ ok: true, result: 'x'.repeat(200) });

if (role === 'upstream') {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BODY) });
      res.end(BODY);
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => ready(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
} else if (role === 'bare-proxy') {
  const app = Fastify({ logger: { level: 'warn' } });
  app.register(httpProxy, { upstream: process.env['UPSTREAM_URL']!, prefix: '/', undici: { connections: 256 } });
  ready(await app.listen({ host: '127.0.0.1', port: 0 }));
} else if (role === 'control-plane') {
  const { loadControlPlaneConfig, startControlPlane } = await import('@crochet/control-plane');
  const plane = await startControlPlane(loadControlPlaneConfig());
  ready(plane.url);
} else if (role === 'proxy-workers') {
  // CROCHET_PROXY_WORKERS proxy processes on one port; the workers run this file again (node:cluster).
  const { forkProxyWorkers, proxyWorkerCount, runProxyWorker } = await import('@crochet/proxy');
  if (cluster.isWorker) await runProxyWorker();
  else {
    const workers = await forkProxyWorkers(proxyWorkerCount(), process.env, (line) =>
      process.stderr.write(`${line}\n`),
    );
    process.removeAllListeners('SIGTERM');
    process.on('SIGTERM', () => void workers.close().then(() => process.exit(0)));
    ready(workers.listening[0]!.url);
  }
} else if (role === 'proxy') {
  const { loadProxyConfig, startProxy } = await import('@crochet/proxy');
  const proxy = await startProxy(loadProxyConfig());
  ready(proxy.url);
} else {
  process.stderr.write(`unknown role ${role}\n`);
  process.exit(2);
}
