/**
 * Bundles the runtime image's entry points with esbuild: `node --import tsx scripts/bundle.ts <out>` (the Dockerfile
 * runs exactly this). One ESM file per entry plus shared chunks, so the image carries neither node_modules nor
 * TypeScript. The few files the code opens at run time are laid out where the bundle looks for them, and the build
 * fails when a path the bundle opens is missing from the output.
 */
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Where the bundles go, relative to the output (the image's working directory). */
export const BIN_DIR = 'dist/bin';

/** Each entry point of the image (relative to its working directory) and the source it is built from. */
export const BUNDLES: Readonly<Record<string, string>> = {
  [`${BIN_DIR}/control-plane.mjs`]: 'control-plane/src/main.ts',
  [`${BIN_DIR}/proxy.mjs`]: 'proxy/src/main.ts',
  [`${BIN_DIR}/reconcile.mjs`]: 'control-plane/src/reconcile-main.ts',
  [`${BIN_DIR}/demo-seller.mjs`]: 'scripts/demo-seller.ts',
};

/**
 * Files opened at run time, placed relative to the bundles as the sources expect them relative to themselves:
 * control-plane/src/db.ts reads `../migrations/`, control-plane/src/routes/dashboard.ts `../dashboard/` (the static
 * operator dashboard), control-plane/src/routes/site.ts `../site/` (the public pages' styles and scripts), control-plane/src/routes/docs.ts requires `../../package.json` (the version in the documents)
 * and resolves `@crochet/protocol/docs/errors.md`.
 */
const layout = (out: string): void => {
  const copies: [from: string, to: string, keep: (path: string) => boolean][] = [
    ['control-plane/migrations', 'dist/migrations', (path) => path.endsWith('.sql')],
    ['control-plane/src/dashboard', 'dist/dashboard', (path) => !path.endsWith('.ts')],
    ['control-plane/src/site', 'dist/site', (path) => !path.endsWith('.ts')],
  ];
  for (const [from, to, keep] of copies)
    if (existsSync(join(root, from)))
      cpSync(join(root, from), join(out, to), {
        recursive: true,
        filter: (path) => statSync(path).isDirectory() || keep(path),
      });
  const plane = JSON.parse(readFileSync(join(root, 'control-plane/package.json'), 'utf8')) as { version: string };
  writeFileSync(
    join(out, 'package.json'),
    `${JSON.stringify({ name: 'crochet', version: plane.version, private: true, type: 'module' }, null, 2)}\n`,
  );
  const protocol = join(out, 'node_modules/@crochet/protocol');
  mkdirSync(join(protocol, 'docs'), { recursive: true });
  const manifest = JSON.parse(readFileSync(join(root, 'protocol/package.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(
    join(protocol, 'package.json'),
    `${JSON.stringify({ name: manifest['name'], version: manifest['version'], type: 'module', exports: { './docs/errors.md': './docs/errors.md' } }, null, 2)}\n`,
  );
  cpSync(join(root, 'protocol/docs/errors.md'), join(protocol, 'docs/errors.md'));
};

/**
 * Every file path a bundle resolves at run time — `new URL('<relative>', import.meta.url)`, `require('<relative>')`
 * through a createRequire, `require.resolve('<package path>')` — that is not in the output.
 */
export const missingRuntimeFiles = (out: string): string[] => {
  const missing: string[] = [];
  const bin = join(out, BIN_DIR);
  for (const name of readdirSync(bin).filter((f) => f.endsWith('.mjs'))) {
    const file = join(bin, name);
    const code = readFileSync(file, 'utf8');
    const relatives = [
      ...[...code.matchAll(/new URL\("(\.{1,2}\/[^"]*)", import\.meta\.url\)/g)].map((m) => m[1]!),
      ...[...code.matchAll(/\brequire\d*\("(\.{1,2}\/[^"]+)"\)/g)].map((m) => m[1]!),
    ];
    for (const path of relatives) if (!existsSync(resolve(bin, path))) missing.push(`${name}: ${path}`);
    const require = createRequire(file);
    for (const [, spec] of code.matchAll(/\brequire\d*\.resolve\("([^".][^"]*)"\)/g)) {
      let found: string | undefined;
      try {
        found = require.resolve(spec!);
      } catch {}
      if (!found || relative(out, found).startsWith('..')) missing.push(`${name}: ${spec}`);
    }
  }
  return missing;
};

/** Builds everything into `out` (emptied first); returns the size of each output file in bytes. */
export const bundle = async (out: string): Promise<Record<string, number>> => {
  const { build } = await import('esbuild');
  rmSync(out, { recursive: true, force: true });
  const result = await build({
    absWorkingDir: root,
    entryPoints: Object.entries(BUNDLES).map(([target, source]) => ({
      in: source,
      out: target.slice(BIN_DIR.length + 1).replace(/\.mjs$/, ''),
    })),
    outdir: join(out, BIN_DIR),
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunk-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // CommonJS dependencies require Node's built-ins; an ES module has no `require` of its own.
    banner: {
      js: "import { createRequire as __crochetRequire } from 'node:module'; const require = __crochetRequire(import.meta.url);",
    },
    // Optional native add-ons of pg and ws, loaded inside try/catch: absent in the image, as in development.
    external: ['pg-native', 'bufferutil', 'utf-8-validate'],
    legalComments: 'eof',
    metafile: true,
    logLevel: 'warning',
  });
  layout(out);
  const missing = missingRuntimeFiles(out);
  if (missing.length) throw new Error(`the bundles open files missing from ${out}:\n  ${missing.join('\n  ')}`);
  return Object.fromEntries(
    Object.entries(result.metafile.outputs).map(([path, meta]) => [relative(out, resolve(root, path)), meta.bytes]),
  );
};

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = resolve(process.argv[2] ?? join(root, 'dist/image'));
  const sizes = await bundle(out);
  const total = Object.values(sizes).reduce((sum, bytes) => sum + bytes, 0);
  for (const [path, bytes] of Object.entries(sizes).filter(([path]) => !path.includes('chunk-')))
    process.stdout.write(`${path.padEnd(32)} ${(bytes / 1024).toFixed(0).padStart(6)} KiB\n`);
  process.stdout.write(`${out}: ${(total / 1024 / 1024).toFixed(1)} MiB of bundles\n`);
}
