import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const MODULE = fileURLToPath(new URL('./index.ts', import.meta.url));

/**
 * Runs `body` in a process of its own with the guard installed (a guard installed here would take over the test
 * runner's own handlers). Its log lines and a final `stats` line come back on stdout.
 */
const runGuarded = (body: string): Promise<{ code: number | null; lines: any[]; stderr: string }> => {
  const script = `
    import { installProcessGuard, processGuardStats } from ${JSON.stringify(MODULE)};
    const print = (level) => (details, message) =>
      console.log(JSON.stringify({ level, message, err: details.err?.message }));
    installProcessGuard({
      log: { error: print('error'), fatal: print('fatal') },
      survivable: (error) => error?.code === '57P01',
      shutdown: () => { console.log(JSON.stringify({ level: 'shutdown' })); setTimeout(() => process.exit(70), 50); },
    });
    const report = () => console.log(JSON.stringify({ level: 'stats', ...processGuardStats() }));
    ${body}
  `;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      { timeout: 20_000 },
      (error, stdout, stderr) => {
        const lines = stdout
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line));
        resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, lines, stderr });
      },
    );
  });
};

describe('the process guard', () => {
  it('survives an unhandled rejection and unheard connection errors, logging and counting each', async () => {
    const { code, lines } = await runGuarded(`
      import { createConnection } from 'node:net';
      import { EventEmitter } from 'node:events';
      Promise.reject(new Error('nobody listens'));
      // A real socket's 'error' with no listener: connection refused by a port nothing listens on.
      createConnection({ host: '127.0.0.1', port: 9 });
      // A driver's "session ended" error, which the caller declared survivable.
      setTimeout(() => new EventEmitter().emit('error', Object.assign(new Error('admin shutdown'), { code: '57P01' })), 100);
      setTimeout(report, 500);
    `);
    expect(code).toBe(0);
    expect(lines).toEqual([
      expect.objectContaining({ level: 'error', err: 'nobody listens' }),
      expect.objectContaining({ level: 'error', err: expect.stringContaining('ECONNREFUSED') }),
      expect.objectContaining({ level: 'error', err: 'admin shutdown' }),
      { level: 'stats', rejection: 1, exception: 2 },
    ]);
  });

  it('shuts down in order, exiting with 70, after an exception that may have left state half-updated', async () => {
    const { code, lines } = await runGuarded(`
      setTimeout(() => { throw new TypeError('a bug'); }, 10);
      setInterval(() => {}, 1000); // the server keeping the process alive
    `);
    expect(code).toBe(70);
    expect(lines).toEqual([expect.objectContaining({ level: 'fatal', err: 'a bug' }), { level: 'shutdown' }]);
  });
});
