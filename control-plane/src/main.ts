import { DRAIN_MS, EXIT_UNSAFE_STATE, installProcessGuard } from '@crochet/plugins';
import { ConfigError } from '@crochet/protocol';
import { loadControlPlaneConfig } from './config.js';
import { isDatabaseUnavailable } from './db.js';
import { startControlPlane } from './server.js';

/** Entry point of a control-plane process (containers, `npm run start -w control-plane`). */
const main = async (): Promise<void> => {
  let config: ReturnType<typeof loadControlPlaneConfig>;
  try {
    config = loadControlPlaneConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`control plane: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
  const plane = await startControlPlane(config);
  plane.app.log.info({ url: plane.url }, 'control plane listening');
  let closing = false;
  const shutdown = (reason: string, code = 0) => {
    if (closing) return;
    closing = true;
    // Whatever hangs in the drain (a store that does not answer), the process ends: a supervisor restarts it.
    setTimeout(() => process.exit(code || 1), DRAIN_MS + 15_000).unref();
    plane.app.log.info({ reason }, 'shutting down');
    plane.close().then(
      () => process.exit(code),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  // Installed once started: a failure to start still ends the process, as it should.
  installProcessGuard({
    log: plane.app.log,
    survivable: isDatabaseUnavailable,
    shutdown: () => shutdown('uncaught exception', EXIT_UNSAFE_STATE),
  });
};

await main();
