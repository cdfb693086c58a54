import { EnvReader } from '@crochet/protocol';

/** Everything a proxy reads from its environment, validated at start. */
export interface ProxyConfig {
  host: string;
  port: number;
  publicBaseUrl: string;
  controlPlaneUrl: string;
  redisUrl: string;
  logLevel: string;
  bodyLimitBytes: number;
}

export const loadProxyConfig = (env: NodeJS.ProcessEnv = process.env): ProxyConfig => {
  const r = new EnvReader(env);
  const config: ProxyConfig = {
    host: r.string('HOST', '0.0.0.0'),
    port: r.int('PORT', 8080, { min: 0, max: 65535 }),
    publicBaseUrl: r.url('PUBLIC_BASE_URL', 'http://localhost:8080', ['http:', 'https:']).replace(/\/+$/, ''),
    controlPlaneUrl: r.url('CONTROL_PLANE_URL', 'http://127.0.0.1:8081', ['http:', 'https:']).replace(/\/+$/, ''),
    redisUrl: r.url('REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:']),
    logLevel: r.string('LOG_LEVEL', 'info'),
    bodyLimitBytes: r.int('PROXY_BODY_LIMIT_BYTES', 1024 * 1024, { min: 1024, max: 64 * 1024 * 1024 }),
  };
  r.done();
  return config;
};
