import { DRAIN_MS, EXIT_UNSAFE_STATE, installProcessGuard } from '@crochet/plugins';
import { ConfigError } from '@crochet/protocol';
import { startProxy } from './app.js';
import { loadProxyConfig } from './config.js';

/** Entry point of a proxy process (containers, `npm run start -w proxy`). */
const main = async (): Promise<void> => {
  let config: ReturnType<typeof loadProxyConfig>;
  try {
    config = loadProxyConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`proxy: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
  const proxy = await startProxy(config);
  proxy.app.log.info({ url: proxy.url }, 'proxy listening');
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
  // Installed once started: a failure to start still ends the process, as it should.
  installProcessGuard({ log: proxy.app.log, shutdown: () => shutdown('uncaught exception', EXIT_UNSAFE_STATE) });
};

await main();
