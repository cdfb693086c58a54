/**
 * The processes a benchmark measures, one role per process so that each has a core's worth of event loop like in
 * production: `upstream` (a seller answering a small JSON), `bare-proxy` (@fastify/http-proxy, no checks),
 * `passthrough` (the least a Node proxy hop can do, for reference), `control-plane` and `proxy` (Crochet). Each
 * prints one JSON line `{"url": …}` when it listens.
 */
import cluster from 'node:cluster';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream';
import httpProxy from '@fastify/http-proxy';
import Fastify from 'fastify';
import { type Dispatcher, Pool } from 'undici';

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
} else if (role === 'passthrough') {
  // The floor of a Node proxy hop: node:http in, one keep-alive undici.Pool out, both bodies streamed, hop-by-hop
  // headers dropped (and `expect`: node:http answers a 100-continue itself); no routing, no checks, no logging, no
  // hooks. What any proxy written in Node pays per request.
  const pool = new Pool(process.env['UPSTREAM_URL']!, { connections: 256 });
  const HOP = new Set([
    'connection',
    'keep-alive',
    'proxy-connection',
    'transfer-encoding',
    'te',
    'trailer',
    'upgrade',
    'expect',
    'host',
  ]);
  const endToEnd = (headers: Record<string, string | string[] | undefined>) => {
    const kept: Record<string, string | string[]> = {};
    for (const name in headers) {
      const value = headers[name];
      if (value !== undefined && !HOP.has(name)) kept[name] = value;
    }
    return kept;
  };
  const server = createServer((req, res) => {
    const method = req.method as Dispatcher.HttpMethod;
    pool
      .request({
        path: req.url!,
        method,
        headers: endToEnd(req.headers),
        body: method === 'GET' || method === 'HEAD' ? null : req,
      })
      .then(({ statusCode, headers, body }) => {
        try {
          res.writeHead(statusCode, endToEnd(headers));
        } catch (error) {
          body.destroy();
          throw error;
        }
        // A seller that breaks off mid-body cuts the buyer's answer, never the process.
        pipeline(body, res, () => {});
      })
      .catch(() => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => ready(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
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
