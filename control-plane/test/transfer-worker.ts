/**
 * A process that runs the transfers job once and kills itself (SIGKILL: no cleanup, as a crash) at the failpoint
 * named by TRANSFER_CRASH_AT — for the crash tests of money out (proxy/test/payouts-crash.test.ts). Reads
 * DATABASE_URL and the payment variables (networks and treasury keys) from its environment.
 */
import { loadPaymentsConfig } from '@crochet/plugins';
import { EnvReader } from '@crochet/protocol';
import { createPool } from '../src/db.js';
import { Transfers } from '../src/payouts/transfers.js';
import { treasuriesFrom } from '../src/payouts/treasury.js';

const reader = new EnvReader(process.env);
const payments = loadPaymentsConfig(reader);
const pool = createPool(process.env['DATABASE_URL']!);
const crashAt = process.env['TRANSFER_CRASH_AT'];
const transfers = new Transfers({
  pool,
  treasuries: await treasuriesFrom(payments),
  intervalMs: 0,
  log: { info: () => {}, warn: (o, m) => console.error(m, o), error: (o, m) => console.error(m, o) },
  failpoint: (point) => {
    if (point === crashAt) process.kill(process.pid, 'SIGKILL');
  },
});
const report = await transfers.runOnce();
console.log(JSON.stringify(report));
await pool.end();
