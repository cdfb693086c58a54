/**
 * Compiles the dev-chain contracts (TestUSDC.sol, Multicall3.sol) with solc-js. Each result is kept in memory and on
 * disk at `<repo>/.crochet/cache/<Name>-<sha256>.json`, the hash covering the source, the compiler version and the
 * settings, so only the first run after a change pays for loading and running the compiler (a few seconds).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, parse } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Abi, Hex } from 'viem';

export type DevContractName = 'TestUSDC' | 'Multicall3';

export interface CompiledContract {
  readonly contractName: string;
  readonly abi: Abi;
  /** Creation bytecode. */
  readonly bytecode: Hex;
  readonly compilerVersion: string;
}

const here = dirname(fileURLToPath(import.meta.url));
/** Part of the cache key: change it and the cache is rebuilt. */
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'cancun',
  outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } },
} as const;

const require = createRequire(import.meta.url);

const solcVersion = (): string =>
  (JSON.parse(readFileSync(require.resolve('solc/package.json'), 'utf8')) as { version: string }).version;

/** The workspace root (the nearest package.json declaring workspaces); the cache lives in its `.crochet/`. */
export const repoRoot = (): string => {
  let dir = here;
  const { root } = parse(dir);
  while (dir !== root) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { workspaces?: unknown }).workspaces) return dir;
      } catch {
        // not JSON we can read: keep walking up
      }
    }
    dir = dirname(dir);
  }
  return process.cwd();
};

const sourceFile = (name: DevContractName) => join(here, `${name}.sol`);

const cacheKey = (source: string): string =>
  createHash('sha256')
    .update(source)
    .update('\0')
    .update(solcVersion())
    .update('\0')
    .update(JSON.stringify(SETTINGS))
    .digest('hex');

/** The cache file for a contract's current source and compiler settings. */
export const contractCacheFile = (name: DevContractName): string =>
  join(repoRoot(), '.crochet', 'cache', `${name}-${cacheKey(readFileSync(sourceFile(name), 'utf8'))}.json`);

const isCompiled = (value: unknown, name: string): value is CompiledContract => {
  const c = value as Partial<CompiledContract> | null;
  return (
    !!c &&
    c.contractName === name &&
    Array.isArray(c.abi) &&
    typeof c.bytecode === 'string' &&
    /^0x(?:[0-9a-f]{2})+$/i.test(c.bytecode) &&
    typeof c.compilerVersion === 'string'
  );
};

interface SolcOutput {
  errors?: { severity: 'error' | 'warning' | 'info'; formattedMessage: string }[];
  contracts?: Record<string, Record<string, { abi: Abi; evm: { bytecode: { object: string } } }>>;
}

const runSolc = async (name: DevContractName, source: string): Promise<CompiledContract> => {
  const { default: solc } = await import('solc');
  const file = `${name}.sol`;
  const input = { language: 'Solidity', sources: { [file]: { content: source } }, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input))) as SolcOutput;
  const errors = (output.errors ?? []).filter((e) => e.severity === 'error');
  if (errors.length > 0) {
    throw new Error(`solc failed to compile ${file}:\n${errors.map((e) => e.formattedMessage).join('\n')}`);
  }
  const contract = output.contracts?.[file]?.[name];
  if (!contract?.evm.bytecode.object) throw new Error(`solc produced no bytecode for ${name}`);
  return {
    contractName: name,
    abi: contract.abi,
    bytecode: `0x${contract.evm.bytecode.object}`,
    compilerVersion: solc.version() as string,
  };
};

const memo = new Map<DevContractName, { key: string; promise: Promise<CompiledContract> }>();

/** ABI and creation bytecode of a dev-chain contract (memory cache, then disk cache, then solc). */
export const compileContract = (name: DevContractName): Promise<CompiledContract> => {
  const source = readFileSync(sourceFile(name), 'utf8');
  const key = cacheKey(source);
  const hit = memo.get(name);
  if (hit?.key === key) return hit.promise;
  const promise = (async () => {
    const file = join(repoRoot(), '.crochet', 'cache', `${name}-${key}.json`);
    if (existsSync(file)) {
      try {
        const cached: unknown = JSON.parse(readFileSync(file, 'utf8'));
        if (isCompiled(cached, name)) return cached;
      } catch {
        // unreadable: compile again
      }
    }
    const compiled = await runSolc(name, source);
    try {
      mkdirSync(dirname(file), { recursive: true });
      // Write then rename, so a concurrent reader (another test worker) never sees half a file.
      const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
      writeFileSync(tmp, JSON.stringify(compiled));
      renameSync(tmp, file);
    } catch {
      // a read-only checkout still works, it just compiles every run
    }
    return compiled;
  })();
  memo.set(name, { key, promise });
  promise.catch(() => {
    if (memo.get(name)?.promise === promise) memo.delete(name);
  });
  return promise;
};

/** TestUSDC's ABI and creation bytecode. */
export const compileTestUsdc = (): Promise<CompiledContract> => compileContract('TestUSDC');

/** `<repo>/.crochet/cache/TestUSDC-<sha256>.json` for the current source. */
export const testUsdcCacheFile = (): string => contractCacheFile('TestUSDC');
