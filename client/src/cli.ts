import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Hex } from 'viem';
import { Crochet, type Json } from './client.js';
import { CrochetApiError, CrochetClientError } from './errors.js';
import type { RailName, Wallets } from './rails.js';

/**
 * `crochet` — the buyer SDK on the command line. Every command prints JSON with --json (one document on stdout;
 * progress and errors on stderr) and exits non-zero on failure. Configuration, first found wins: flags, the
 * environment (CROCHET_URL, CROCHET_API_KEY, CROCHET_SOLANA_KEY, CROCHET_SOLANA_RPC_URL, CROCHET_EVM_KEY,
 * CROCHET_EVM_RPC_URL, CROCHET_RELAY_API_URL), then the
 * key file `register` writes (--key-file, CROCHET_KEY_FILE, default ~/.config/crochet/key.json).
 */

const USAGE = `crochet — buy capabilities on Crochet from the command line

Usage: crochet [options] <command>

Commands:
  register --name <name> [--description <text>]   register an agent (proof of work); saves the key file
  listings search [words] [--tag t] [--pricing free|per_call] [--sort score|newest|price] [--limit n]
  call <listing_id> [--body <json> | --body-file <path|->] [--max-price 0.05] [--rail <rail>] [--sub-path /x]
                                                   call a listing, paying once if it is paid; the answer streams
                                                   to stdout, progress to stderr
  history [--status s] [--listing lst_…] [--proof <proof>] [--limit n]   your gateway requests (newest first)
  ledger [--limit n]                               your ledger entries
  receipts verify <gr_… | jws>                     verify a receipt against /.well-known/jwks.json

Options:
  --url <base url>        CROCHET_URL (or the key file's url)
  --api-key <am_k_…>      CROCHET_API_KEY (or the key file's api_key)
  --key-file <path>       CROCHET_KEY_FILE, default ~/.config/crochet/key.json
  --solana-key <base58>   CROCHET_SOLANA_KEY: 64-byte secret key paying on Solana
  --solana-rpc <url>      CROCHET_SOLANA_RPC_URL: RPC of the Solana network the gateway accepts
  --evm-key <0x…>         CROCHET_EVM_KEY: private key paying x402 on EVM (and Relay, from a verified wallet)
  --evm-rpc <url>         CROCHET_EVM_RPC_URL: RPC of the chain Relay deposits are sent on (needed for Relay)
  --relay-url <url>       CROCHET_RELAY_API_URL: the Relay API (default: the 402's relay.api_url)
  --json                  machine-readable output
  -h, --help
Rails: solana-transfer, x402-svm, x402-evm, relay (default: the first option of the 402 a wallet can pay; Relay
when no other is payable).`;

const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: 'string' },
    'api-key': { type: 'string' },
    'key-file': { type: 'string' },
    'solana-key': { type: 'string' },
    'solana-rpc': { type: 'string' },
    'evm-key': { type: 'string' },
    'evm-rpc': { type: 'string' },
    'relay-url': { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
    name: { type: 'string' },
    description: { type: 'string' },
    tag: { type: 'string' },
    pricing: { type: 'string' },
    sort: { type: 'string' },
    limit: { type: 'string' },
    body: { type: 'string' },
    'body-file': { type: 'string' },
    'max-price': { type: 'string' },
    rail: { type: 'string' },
    'sub-path': { type: 'string' },
    status: { type: 'string' },
    listing: { type: 'string' },
    proof: { type: 'string' },
  },
});

const json = flags.json;
const env = process.env;
const keyFile = flags['key-file'] ?? env['CROCHET_KEY_FILE'] ?? join(homedir(), '.config', 'crochet', 'key.json');

interface KeyFile {
  url?: string;
  api_key?: string;
  agent_id?: string;
}

const readKeyFile = async (): Promise<KeyFile> => {
  try {
    return JSON.parse(await readFile(keyFile, 'utf8')) as KeyFile;
  } catch {
    return {};
  }
};

/** Prints a value: JSON with --json, else a short human form. */
const out = (value: unknown, human?: string) => {
  process.stdout.write(json || human === undefined ? `${JSON.stringify(value, null, json ? 0 : 2)}\n` : `${human}\n`);
};

const progressLine = (message: string) => {
  // A terminal gets one line rewritten in place; a pipe or file gets one line per step.
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[2K${message}`);
  else process.stderr.write(`${message}\n`);
};

const wallets = async (): Promise<Wallets> => {
  const result: Wallets = {};
  const solanaKey = flags['solana-key'] ?? env['CROCHET_SOLANA_KEY'];
  if (solanaKey) {
    const rpcUrl = flags['solana-rpc'] ?? env['CROCHET_SOLANA_RPC_URL'];
    if (!rpcUrl) throw usage('--solana-key needs --solana-rpc (or CROCHET_SOLANA_RPC_URL)');
    const { createKeyPairSignerFromBytes, getBase58Encoder } = await import('@solana/kit');
    const signer = await createKeyPairSignerFromBytes(new Uint8Array(getBase58Encoder().encode(solanaKey)));
    result.solana = { signer, rpcUrl };
  }
  const evmKey = flags['evm-key'] ?? env['CROCHET_EVM_KEY'];
  if (evmKey) {
    const { privateKeyToAccount } = await import('viem/accounts');
    const rpcUrl = flags['evm-rpc'] ?? env['CROCHET_EVM_RPC_URL'];
    result.evm = { account: privateKeyToAccount(evmKey as Hex), ...(rpcUrl ? { rpcUrl } : {}) };
  }
  return result;
};

class UsageError extends Error {}
const usage = (message: string) => new UsageError(message);

const limit = () => (flags.limit === undefined ? undefined : Number(flags.limit));

const main = async (): Promise<number> => {
  if (flags.help || positionals.length === 0) {
    process.stdout.write(`${USAGE}\n`);
    return positionals.length === 0 && !flags.help ? 2 : 0;
  }
  const saved = await readKeyFile();
  const baseUrl = flags.url ?? env['CROCHET_URL'] ?? saved.url;
  if (!baseUrl) throw usage('No base URL: pass --url or set CROCHET_URL.');
  const apiKey = flags['api-key'] ?? env['CROCHET_API_KEY'] ?? saved.api_key;
  const relayUrl = flags['relay-url'] ?? env['CROCHET_RELAY_API_URL'];
  const client = new Crochet({
    baseUrl,
    ...(apiKey ? { apiKey } : {}),
    wallets: await wallets(),
    ...(relayUrl ? { relay: { apiUrl: relayUrl } } : {}),
  });
  const [command, sub, ...rest] = positionals;

  switch (command) {
    case 'register': {
      if (!flags.name) throw usage('register needs --name');
      const registered = await client.register({
        name: flags.name,
        ...(flags.description ? { description: flags.description } : {}),
      });
      await mkdir(dirname(keyFile), { recursive: true });
      const file: KeyFile = { url: baseUrl, api_key: registered.api_key, agent_id: registered.agent.id };
      await writeFile(keyFile, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
      await chmod(keyFile, 0o600);
      out(
        { agent: registered.agent, api_key: registered.api_key, key_file: keyFile },
        `Registered ${registered.agent.id}; key saved to ${keyFile} (shown once: ${registered.api_key})`,
      );
      return 0;
    }
    case 'listings': {
      if (sub !== 'search') throw usage('listings search [words]');
      const words = rest.join(' ');
      const page = await client.listings.search({
        ...(words ? { q: words } : {}),
        ...(flags.tag ? { tag: flags.tag } : {}),
        ...(flags.pricing ? { pricing_model: flags.pricing as 'free' | 'per_call' } : {}),
        ...(flags.sort ? { sort: flags.sort as 'score' } : {}),
        ...(limit() ? { limit: limit()! } : {}),
      });
      out(
        page,
        page.data
          .map((l) => `${l.id}  ${l.price ? `${l.price.amount} USDC` : 'free'}  ${l.name}${l.verified ? ' ✓' : ''}`)
          .join('\n') || 'No listings found.',
      );
      return 0;
    }
    case 'call': {
      if (!sub) throw usage('call <listing_id>');
      const body =
        flags['body-file'] !== undefined
          ? flags['body-file'] === '-'
            ? await readStdin()
            : await readFile(flags['body-file'], 'utf8')
          : (flags.body ?? '{}');
      const result = await client.call(sub, body, {
        ...(flags['max-price'] ? { maxPrice: flags['max-price'] } : {}),
        ...(flags.rail ? { rail: flags.rail as RailName } : {}),
        ...(flags['sub-path'] ? { subPath: flags['sub-path'] } : {}),
        onProgress: (event) => progressLine(event.message),
      });
      if (process.stderr.isTTY && result.payment) process.stderr.write('\r\x1b[2K');
      if (!json) {
        // The answer streams straight through.
        for await (const chunk of result.body) process.stdout.write(chunk);
        return result.ok ? 0 : 1;
      }
      const text = await result.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {}
      const receipt = result.payment ? await result.receipt() : null;
      out({
        status: result.status,
        request_id: result.requestId,
        price: result.price,
        payment: result.payment && {
          rail: result.payment.rail,
          network: result.payment.network,
          proof: result.payment.proofId,
        },
        settlement: result.settlement,
        receipt: receipt && { valid: receipt.valid, jws: receipt.jws, claims: receipt.claims },
        body: parsed,
      });
      return result.ok ? 0 : 1;
    }
    case 'history': {
      const page = await client.history.list({
        ...(flags.status ? { status: flags.status } : {}),
        ...(flags.listing ? { listing_id: flags.listing } : {}),
        ...(flags.proof ? { payment_proof: flags.proof } : {}),
        ...(limit() ? { limit: limit()! } : {}),
      });
      out(
        page,
        page.data
          .map(
            (r) =>
              `${r.id}  ${r.listing_id}  ${r.status}${r.http_status ? ` ${r.http_status}` : ''}  ${r.price ? `${r.price.amount} USDC` : 'free'}${r.refund ? `  ${r.refund}` : ''}`,
          )
          .join('\n') || 'No gateway requests yet.',
      );
      return 0;
    }
    case 'ledger': {
      const page = await client.ledger.list(limit() ? { limit: limit()! } : {});
      out(
        page,
        page.data
          .map(
            (e: Json) =>
              `${e['created_at']}  ${e['account']}  ${e['amount']} ${e['currency']}  ${e['gateway_request_id']}`,
          )
          .join('\n') || 'No ledger entries yet.',
      );
      return 0;
    }
    case 'receipts': {
      const target = rest[0];
      if (sub !== 'verify' || !target) throw usage('receipts verify <gr_… | jws>');
      const jws = target.startsWith('gr_') ? (await client.history.receipt(target)).receipt : target;
      const verdict = await client.receipts.verify(jws, target.startsWith('gr_') ? { requestId: target } : {});
      out(
        verdict,
        verdict.valid
          ? `valid (key ${verdict.kid}): ${verdict.claims.sub} paid ${verdict.claims.amount} on ${verdict.claims.network}`
          : `INVALID: ${verdict.reason}`,
      );
      return verdict.valid ? 0 : 1;
    }
    default:
      throw usage(`unknown command ${command}`);
  }
};

const readStdin = async (): Promise<string> => {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
};

const report = (error: unknown): number => {
  const body =
    error instanceof CrochetApiError
      ? { ...error.body, status: error.status }
      : error instanceof CrochetClientError
        ? { code: error.code, message: error.message, details: error.details }
        : error instanceof UsageError
          ? { code: 'USAGE', message: error.message, hint: 'crochet --help' }
          : { code: 'FAILED', message: error instanceof Error ? error.message : String(error) };
  if (json) process.stderr.write(`${JSON.stringify({ error: body }, replacer)}\n`);
  else
    process.stderr.write(`error ${body.code}: ${body.message}${'hint' in body && body.hint ? `\n${body.hint}` : ''}\n`);
  return error instanceof UsageError ? 2 : 1;
};

const replacer = (_key: string, value: unknown) => (typeof value === 'bigint' ? value.toString() : value);

process.exitCode = await main().catch(report);
