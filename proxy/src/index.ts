export { buildProxy, type Proxy, startProxy } from './app.js';
export { loadProxyConfig, type ProxyConfig } from './config.js';
