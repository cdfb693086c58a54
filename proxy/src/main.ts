import cluster from 'node:cluster';
import { ConfigError } from '@crochet/protocol';
import { forkProxyWorkers, proxyWorkerCount, runProxyWorker } from './workers.js';

/**
 * Entry point of a proxy host (containers, `npm run start -w proxy`): one proxy in this process, or with
 * `CROCHET_PROXY_WORKERS` > 1 that many worker processes on the one port (workers.ts).
 */
const main = async (): Promise<void> => {
  if (cluster.isWorker) return runProxyWorker();
  let count: number;
  try {
    count = proxyWorkerCount();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`proxy: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
  if (count === 1) return runProxyWorker();
  const say = (line: string) => process.stdout.write(`${JSON.stringify({ level: 30, msg: line })}\n`);
  const workers = await forkProxyWorkers(count, process.env, say).catch((error: Error) => {
    console.error(`proxy: ${error.message}`);
    process.exit(1);
  });
  say(`${count} proxy workers listening at ${workers.listening[0]?.url}`);
  const stop = () => void workers.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
};

await main();
