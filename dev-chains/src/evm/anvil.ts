/**
 * A local EVM chain: the `anvil` binary from npm `@foundry-rs/anvil`, run as a child process.
 *
 * anvil runs under a tiny Node watchdog whose stdin is a pipe from this process: when this process goes away for any
 * reason (stop(), normal exit, a signal, SIGKILL, a crash) the pipe closes and the watchdog stops anvil. It is never
 * left running.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import type { Address, Hex } from 'viem';
import { compileContract } from './compile.js';

export interface StartAnvilOptions {
  /** TCP port on 127.0.0.1; 0 (default) lets the OS pick a free one. */
  port?: number;
  /** Default 31337. */
  chainId?: number;
  /** Mine a block every N seconds; default: mine each transaction as it arrives (automine). */
  blockTimeSeconds?: number;
  /** How long to wait for the node to answer JSON-RPC. Default 20 s. */
  startTimeoutMs?: number;
  /**
   * Install Multicall3 at its canonical address, as on every public chain (x402's facilitator uses it to diagnose
   * failed verifications). Default true.
   */
  multicall3?: boolean;
}

export interface DevAccount {
  readonly address: Address;
  readonly privateKey: Hex;
}

export interface AnvilInstance {
  readonly rpcUrl: string;
  readonly chainId: number;
  readonly port: number;
  /** anvil's 10 default dev accounts (the "test test … junk" mnemonic), each funded with 10 000 ETH. */
  readonly accounts: readonly DevAccount[];
  /** Stops anvil and waits for it to exit. Safe to call more than once. */
  stop(): Promise<void>;
}

/** anvil's default accounts: m/44'/60'/0'/0/i of "test test test test test test test test test test test junk". */
export const ANVIL_DEV_ACCOUNTS: readonly DevAccount[] = Object.freeze([
  {
    address: '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266',
    privateKey: '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80',
  },
  {
    address: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8',
    privateKey: '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d',
  },
  {
    address: '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC',
    privateKey: '0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a',
  },
  {
    address: '0x90F79bf6EB2c4f870365E785982E1f101E93b906',
    privateKey: '0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6',
  },
  {
    address: '0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65',
    privateKey: '0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a',
  },
  {
    address: '0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc',
    privateKey: '0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba',
  },
  {
    address: '0x976EA74026E726554dB657fA54763abd0C3a0aa9',
    privateKey: '0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e',
  },
  {
    address: '0x14dC79964da2C08b23698B3D3cc7Ca32193d9955',
    privateKey: '0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356',
  },
  {
    address: '0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f',
    privateKey: '0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97',
  },
  {
    address: '0xa0Ee7A142d267C1f36714E4a8F75612F20a79720',
    privateKey: '0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6',
  },
]);

const HOST = '127.0.0.1';
const require = createRequire(import.meta.url);

/**
 * The native anvil binary shipped in `@foundry-rs/anvil-<os>-<arch>` (an optional dependency of `@foundry-rs/anvil`).
 * `CROCHET_ANVIL_BIN` overrides it (e.g. a Foundry install on a platform npm has no binary for).
 */
export const anvilBinaryPath = (): string => {
  const override = process.env['CROCHET_ANVIL_BIN'];
  if (override) return override;
  const arch = ({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[process.arch];
  if (!arch) throw new Error(`anvil: no npm binary for ${process.platform}/${process.arch}; set CROCHET_ANVIL_BIN`);
  const pkg = `@foundry-rs/anvil-${process.platform}-${arch}`;
  let pkgJson: string;
  try {
    // Resolve from @foundry-rs/anvil itself: the platform package is its optional dependency.
    pkgJson = createRequire(require.resolve('@foundry-rs/anvil/package.json')).resolve(`${pkg}/package.json`);
  } catch {
    throw new Error(`anvil: ${pkg} is not installed (npm skipped the optional dependency?); set CROCHET_ANVIL_BIN`);
  }
  const bin = join(dirname(pkgJson), 'bin', process.platform === 'win32' ? 'anvil.exe' : 'anvil');
  if (!existsSync(bin)) throw new Error(`anvil: ${bin} is missing`);
  return bin;
};

/**
 * Runs `argv[1]` with the rest as arguments and stops it when stdin closes (the parent is gone) or on a signal;
 * exits with the child's status.
 */
const WATCHDOG = `
const { spawn } = require('node:child_process');
const [bin, ...args] = process.argv.slice(1);
const child = spawn(bin, args, { stdio: ['ignore', 'inherit', 'inherit'] });
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  child.kill('SIGTERM');
  setTimeout(() => child.kill('SIGKILL'), 2000).unref();
};
child.on('error', (e) => { process.stderr.write('anvil: ' + e.message + '\\n'); process.exit(127); });
child.on('exit', (code, signal) => process.exit(code ?? (stopping ? 0 : 1)));
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.on('error', stop);
process.stdin.resume();
for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(s, stop);
`;

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
const installExitHook = () => {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Belt and braces: the closing stdin pipe already tells each watchdog to stop.
  process.on('exit', () => {
    for (const child of live) child.kill('SIGTERM');
  });
};

const ensurePortFree = (port: number): Promise<void> =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'EADDRINUSE' ? new Error(`anvil: port ${HOST}:${port} is already in use`) : (error as Error),
      ),
    );
    server.listen(port, HOST, () => server.close(() => resolve()));
  });

const rpcChainId = async (rpcUrl: string, signal: AbortSignal): Promise<number | undefined> => {
  try {
    const response = await fetch(rpcUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
      signal,
    });
    if (!response.ok) return undefined;
    const body = (await response.json()) as { result?: string };
    return typeof body.result === 'string' ? Number.parseInt(body.result, 16) : undefined;
  } catch {
    return undefined;
  }
};

/** Multicall3's address on every public EVM chain (and on dev chains from `startAnvil`). */
export const MULTICALL3_ADDRESS: Address = '0xcA11bde05977b3631167028862bE2a173976CA11';

const rpc = async (rpcUrl: string, method: string, params: unknown[]): Promise<unknown> => {
  const response = await fetch(rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  const body = (await response.json()) as { result?: unknown; error?: { message?: string } };
  if (body.error) throw new Error(`${method}: ${body.error.message ?? JSON.stringify(body.error)}`);
  return body.result;
};

/**
 * Puts Multicall3 (Multicall3.sol: the public interface, our implementation) at its canonical address on an anvil
 * node: runs the creation code in an eth_call to get the runtime code, then `anvil_setCode`.
 */
export const installMulticall3 = async (rpcUrl: string): Promise<void> => {
  const { bytecode } = await compileContract('Multicall3');
  const runtime = (await rpc(rpcUrl, 'eth_call', [{ data: bytecode }, 'latest'])) as Hex;
  if (!/^0x(?:[0-9a-f]{2})+$/i.test(runtime)) throw new Error('Multicall3: creation code returned no runtime code');
  await rpc(rpcUrl, 'anvil_setCode', [MULTICALL3_ADDRESS, runtime]);
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts anvil and resolves once it answers `eth_chainId` with the requested chain id. */
export const startAnvil = async (options: StartAnvilOptions = {}): Promise<AnvilInstance> => {
  const chainId = options.chainId ?? 31337;
  const requestedPort = options.port ?? 0;
  const timeoutMs = options.startTimeoutMs ?? 20_000;
  if (!Number.isSafeInteger(chainId) || chainId <= 0) throw new Error(`anvil: invalid chainId ${chainId}`);
  if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65_535) {
    throw new Error(`anvil: invalid port ${requestedPort}`);
  }
  if (requestedPort !== 0) await ensurePortFree(requestedPort);

  const args = ['--host', HOST, '--port', String(requestedPort), '--chain-id', String(chainId)];
  // With a fixed port anvil runs --silent. With port 0 only anvil knows the port it bound, and it says so on stdout
  // ("Listening on …") unless silenced; picking a free port here and passing it on instead would race with other
  // processes (parallel test workers) between our probe and anvil's bind.
  if (requestedPort !== 0) args.push('--silent');
  if (options.blockTimeSeconds !== undefined) {
    if (!(options.blockTimeSeconds > 0)) throw new Error(`anvil: invalid blockTimeSeconds ${options.blockTimeSeconds}`);
    args.push('--block-time', String(options.blockTimeSeconds));
  }

  const bin = anvilBinaryPath();
  const child = spawn(process.execPath, ['-e', WATCHDOG, '--', bin, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    // Own process group: a terminal's Ctrl-C reaches only our process, which decides when the chain stops.
    detached: process.platform !== 'win32',
    env: { ...process.env, NODE_OPTIONS: '' },
    windowsHide: true,
  });
  live.add(child);
  installExitHook();

  let stderr = '';
  let stdout = '';
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      live.delete(child);
      resolve();
    });
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  let listeningPort: number | undefined = requestedPort || undefined;
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    if (listeningPort !== undefined) return; // keep draining, so anvil never blocks on a full pipe
    stdout = (stdout + chunk).slice(-8000);
    const match = /Listening on [^\s:]+:(\d+)/.exec(stdout);
    if (match) listeningPort = Number(match[1]);
  });
  child.stdin?.on('error', () => {}); // EPIPE once the watchdog is gone

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (!stopped) {
      stopped = true;
      if (!exited) {
        child.stdin?.end();
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exitPromise;
        clearTimeout(timer);
      }
    }
    await exitPromise;
  };

  const failure = (why: string) => {
    const detail = stderr.trim() || stdout.trim().split('\n').slice(-5).join('\n');
    return new Error(`anvil (${bin} ${args.join(' ')}) ${why}${detail ? `:\n${detail}` : ''}`);
  };

  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      if (exited) throw failure(`exited during start (code ${exited.code}, signal ${exited.signal})`);
      if (Date.now() > deadline) throw failure(`did not answer eth_chainId within ${timeoutMs} ms`);
      if (listeningPort !== undefined) {
        const got = await rpcChainId(`http://${HOST}:${listeningPort}`, AbortSignal.timeout(1000));
        if (got === chainId && !exited) break;
        if (got !== undefined && got !== chainId) throw failure(`answered chain id ${got}, expected ${chainId}`);
      }
      await sleep(25);
    }
  } catch (error) {
    await stop();
    throw error;
  }

  // Running and reachable: let a forgotten stop() not hold the event loop open (the exit hook and the pipe still
  // take anvil down with us).
  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) {
    (stream as unknown as { unref?: () => void } | null)?.unref?.();
  }

  const port = listeningPort as number;
  const rpcUrl = `http://${HOST}:${port}`;
  if (options.multicall3 !== false) {
    try {
      await installMulticall3(rpcUrl);
    } catch (error) {
      await stop();
      throw error;
    }
  }
  return {
    rpcUrl,
    chainId,
    port,
    accounts: ANVIL_DEV_ACCOUNTS,
    stop,
  };
};
