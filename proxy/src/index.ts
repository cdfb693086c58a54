export { buildProxy, type ProxyServer, startProxy } from './app.js';
export { loadProxyConfig, type ProxyConfig } from './config.js';
export { forkProxyWorkers, type ProxyWorkers, proxyWorkerCount, runProxyWorker } from './workers.js';
