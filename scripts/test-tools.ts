/**
 * The programs the test suite runs besides Node and the npm packages, in one place. A missing one is installed from
 * Debian's packages when this runs as root with apt-get; otherwise the run stops and says what to install. A missing
 * tool is never a skipped test.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { findOnPath } from './local-services.js';

type Log = (line: string) => void;

export interface TestTool {
  /** the program, looked up on PATH */
  command: string;
  /** the Debian package that brings it */
  apt: string;
  /** which tests need it */
  usedBy: string;
}

export const TEST_TOOLS: readonly TestTool[] = [
  {
    command: 'redis-server',
    apt: 'redis-server',
    usedBy: 'the shared Redis when none answers, and the fault tests that start, pause and kill their own',
  },
  { command: 'prometheus', apt: 'prometheus', usedBy: 'grafana/ (dashboards and alerts against a real Prometheus)' },
  { command: 'promtool', apt: 'prometheus', usedBy: 'grafana/ (alert rule unit tests)' },
  { command: 'chromium', apt: 'chromium', usedBy: 'the browser tests (proxy/test/*-browser.test.ts)' },
];

/**
 * Makes every tool of TEST_TOOLS available (and, as root, the `postgres` system user that PostgreSQL runs as, since
 * it refuses to run as root). Throws, naming what is missing and how to get it, when it cannot.
 */
export function ensureTestTools(log: Log): void {
  const missing = TEST_TOOLS.filter((tool) => !findOnPath(tool.command));
  const asRoot = process.getuid?.() === 0;
  const needsUser = asRoot && !userExists('postgres');
  if (missing.length === 0 && !needsUser) return;

  const packages = [...new Set(missing.map((tool) => tool.apt))];
  const list = missing.map((tool) => `  ${tool.command} (Debian package ${tool.apt}): ${tool.usedBy}`).join('\n');
  if (missing.length > 0) {
    const aptGet = findOnPath('apt-get');
    if (!asRoot || !aptGet) {
      throw new Error(
        `The tests need programs that are not on PATH:\n${list}\n` +
          `Install them (Debian/Ubuntu: \`sudo apt-get install ${packages.join(' ')}\`), or run the tests as root on ` +
          'a machine with apt-get, where they are installed by themselves.',
      );
    }
    log(`[test tools] installing ${packages.join(' ')} with apt-get:\n${list}`);
    for (const args of [
      ['update', '-qq'],
      ['install', '-y', '-qq', ...packages],
    ]) {
      const run = spawnSync(aptGet, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        encoding: 'utf8',
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
        maxBuffer: 64 * 1024 * 1024,
      });
      if (run.status !== 0) {
        throw new Error(
          `apt-get ${args.join(' ')} failed (${run.error?.message ?? `exit ${run.status}`}):\n` +
            `${(run.stderr || run.stdout || '').split('\n').slice(-20).join('\n')}`,
        );
      }
    }
    const still = missing.filter((tool) => !findOnPath(tool.command));
    if (still.length > 0) {
      throw new Error(`Installed ${packages.join(' ')}, but still not on PATH: ${still.map((t) => t.command)}`);
    }
  }
  if (needsUser) {
    log('[test tools] creating the system user `postgres` (PostgreSQL refuses to run as root)');
    execFileSync('useradd', [
      '--system',
      '--user-group',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      'postgres',
    ]);
  }
}

function userExists(name: string): boolean {
  try {
    execFileSync('id', ['-u', name], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
