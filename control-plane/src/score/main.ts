import { loadCommandConfig } from '../config.js';
import { createPool, migrate } from '../db.js';
import { computeScores } from './job.js';

/**
 * `npm run score`: computes every Crochet Score once, now, with the control plane's
 * configuration from the environment (what the periodic job does; job.ts). Prints the report as one JSON line.
 * Exit code 0: done; 1: another control plane was computing (nothing written); 2: bad configuration; 3: it failed.
 */
const main = async (): Promise<number> => {
  const config = loadCommandConfig('score');
  if (!config) return 2;
  const pool = createPool(config.databaseUrl, 2);
  try {
    await migrate(pool); // the score tables live in migration 009
    const report = await computeScores(pool);
    process.stdout.write(`${JSON.stringify(report ?? { skipped: 'another control plane is computing scores' })}\n`);
    return report ? 0 : 1;
  } catch (error) {
    console.error(`score: ${(error as Error).message}`);
    return 3;
  } finally {
    await pool.end().catch(() => {});
  }
};

process.exitCode = await main();
