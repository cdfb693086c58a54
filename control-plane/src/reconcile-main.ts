import { redisKeys } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { loadCommandConfig } from './config.js';
import { createPool, migrate } from './db.js';
import { type ReconcileLog, reconcile } from './ledger/reconcile.js';

/**
 * `npm run reconcile`: one reconciliation pass (§3.5, src/ledger/reconcile.ts) with the control plane's configuration
 * from the environment. Prints the report as JSON lines on stdout — one per mismatch (`"type":"mismatch"`), one per
 * incomplete request (`"type":"incomplete"`), then a summary (`"type":"summary"`) — and logs on stderr. Exit code 0:
 * no mismatch; 1: mismatches found; 2: bad configuration; 3: the run failed.
 */
const main = async (): Promise<number> => {
  const config = loadCommandConfig('reconcile');
  if (!config) return 2;
  const quiet = config.logLevel === 'silent';
  const line = (level: string, obj: object, msg: string): void => {
    if (!quiet) process.stderr.write(`${JSON.stringify({ level, time: Date.now(), msg, ...obj })}\n`);
  };
  const log: ReconcileLog = {
    info: (obj, msg) => line('info', obj, msg),
    warn: (obj, msg) => line('warn', obj, msg),
    error: (obj, msg) => line('error', obj, msg),
  };
  const pool = createPool(config.databaseUrl, 4);
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 2, lazyConnect: true });
  redis.on('error', () => {});
  try {
    await migrate(pool); // the check records live in migration 007
    await redis.connect();
    const report = await reconcile({
      pool,
      redis,
      keys: redisKeys(config.redisPrefix),
      payments: config.payments,
      staleSeconds: config.reconcileStaleSeconds,
      feeBps: config.feeBps,
      log,
      maxScanCalls: 100_000,
    });
    const out = (obj: object): boolean => process.stdout.write(`${JSON.stringify(obj)}\n`);
    for (const m of report.mismatches) out({ type: 'mismatch', ...m });
    for (const i of report.incomplete) out({ type: 'incomplete', ...i });
    const { mismatches, incomplete, ...counts } = report;
    out({ type: 'summary', ...counts, mismatches: mismatches.length, incomplete: incomplete.length });
    return mismatches.length > 0 ? 1 : 0;
  } catch (error) {
    log.error({ err: (error as Error).message }, 'reconciliation failed');
    return 3;
  } finally {
    await pool.end().catch(() => {});
    redis.disconnect();
  }
};

process.exitCode = await main();
