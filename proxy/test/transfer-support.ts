import { execFile } from 'node:child_process';
import type { PaymentStack } from './payment-stack.js';
import { eventually } from './stack.js';

/**
 * Runs the transfers job in a process of its own (control-plane/test/transfer-worker.ts), which kills itself
 * (SIGKILL) at the failpoint `crashAt`; resolves with how it ended.
 */
export const runTransferWorker = (
  stack: PaymentStack,
  crashAt: string,
): Promise<{ code: number | null; signal: string | null; stderr: string }> =>
  new Promise((resolve) => {
    let output = '';
    let stderr = '';
    const child = execFile(
      process.execPath,
      ['--import', 'tsx', 'control-plane/test/transfer-worker.ts'],
      {
        env: {
          ...process.env,
          ...stack.proxyEnv,
          CROCHET_SOLANA_TREASURY_KEY: stack.plane.config.payments.solana!.treasuryKey!,
          CROCHET_EVM_TREASURY_KEY: stack.plane.config.payments.evm!.treasuryKey!,
          DATABASE_URL: stack.plane.config.databaseUrl,
          TRANSFER_CRASH_AT: crashAt,
        },
        timeout: 60_000,
      },
      (_error, stdout) => {
        output = stdout;
      },
    );
    child.stderr?.on('data', (chunk) => {
      stderr += chunk;
    });
    child.on('close', (code, signal) => resolve({ code, signal, stderr: `${stderr}${output}` }));
  });

/**
 * One run of the transfers job in the test's control plane that took the job's lock. A worker the test killed held
 * that lock (a session lock of its PostgreSQL connection), and the server lets it go only once it has noticed the
 * connection closed — under load, after the test's next steps. `runOnce` then answers null without looking at
 * anything; this tries again until a run took the lock (at most 15 s), and fails on a run that met an error.
 */
export const runTransfersOnce = async (stack: PaymentStack) => {
  const report = await eventually(async () => {
    const ran = await stack.plane.transfers.runOnce();
    if (!ran) throw new Error('no run of the transfers job took its lock within 15 s');
    return ran;
  }, 15_000);
  // A run that met an error left its transfer where it was: whatever the test asserts next would test nothing.
  if (report.errors > 0) throw new Error(`the transfers run met errors: ${JSON.stringify(report)}`);
  return report;
};

/** A transfer's row as the tests look at it. */
export const transferRow = async (stack: PaymentStack, id: string) =>
  (
    await stack.plane.deps.pool.query(
      'SELECT status, tx, signed_tx IS NOT NULL AS signed, journal_id FROM money_transfers WHERE id = $1',
      [id],
    )
  ).rows[0];
