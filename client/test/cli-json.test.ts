import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createFundedWallet, usdcBalanceOf } from '@crochet/dev-chains';
import { getBase58Decoder } from '@solana/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPaidListing, type PaymentStack } from '../../proxy/test/payment-stack.js';
import { eventually, startSeller, type TestSeller } from '../../proxy/test/stack.js';
import { startSdkStack } from './sdk-stack.js';

/**
 * The `crochet` CLI as a child process against the real stack: register (key file written, mode 0600), search, a
 * free and a paid call with --json (progress on stderr), history, ledger and receipts verify — and errors as the
 * registry envelope on stderr with a non-zero exit.
 */

const BIN = fileURLToPath(new URL('../bin/crochet.js', import.meta.url));

let stack: PaymentStack;
let seller: TestSeller;
let dir: string;
let free: string;
let paid: string;

beforeAll(async () => {
  stack = await startSdkStack();
  seller = await startSeller();
  const sellerKey = (await stack.plane.register('seller')).apiKey;
  free = (
    await stack.plane.createListing(sellerKey, {
      name: 'Weather now',
      description: 'Free weather',
      private_endpoint_url: seller.url,
    })
  ).listing.id;
  paid = await createPaidListing(stack, sellerKey, `${seller.url}/paid`, '0.02', { name: 'Weather forecast' });
  dir = await mkdtemp(join(tmpdir(), 'crochet-cli-'));
}, 60_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await seller?.close();
  await stack?.stop();
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  json: any;
}

const crochet = (args: string[], env: Record<string, string> = {}): Promise<Run> =>
  new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      {
        env: { PATH: process.env['PATH']!, HOME: dir, CROCHET_URL: stack.proxies[0]!.url, ...env },
        timeout: 60_000,
      },
      (error, stdout, stderr) => {
        let json: any = null;
        try {
          json = JSON.parse(stdout);
        } catch {}
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr, json });
      },
    );
  });

/** The error document: the last line of stderr (progress lines come before it). */
const lastLine = (stderr: string) => JSON.parse(stderr.trim().split('\n').at(-1)!);

describe('the crochet CLI with --json', () => {
  it('registers, searches, calls free and paid, and shows history, ledger and a verified receipt', async () => {
    const registered = await crochet(['--json', 'register', '--name', 'cli buyer']);
    expect(registered.code, registered.stderr).toBe(0);
    expect(registered.json.api_key).toMatch(/^am_k_/);
    const keyFile = join(dir, '.config', 'crochet', 'key.json');
    expect(registered.json.key_file).toBe(keyFile);
    expect(JSON.parse(await readFile(keyFile, 'utf8'))).toMatchObject({ api_key: registered.json.api_key });
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);

    const search = await crochet(['--json', 'listings', 'search', 'Weather']);
    expect(search.code, search.stderr).toBe(0);
    expect(search.json.data.map((l: { id: string }) => l.id).sort()).toEqual([free, paid].sort());

    const freeCall = await crochet(['--json', 'call', free, '--body', '{"city":"Lyon"}']);
    expect(freeCall.code, freeCall.stderr).toBe(0);
    expect(freeCall.json).toMatchObject({ status: 200, payment: null, body: { echo: '{"city":"Lyon"}' } });

    const wallet = await createFundedWallet(stack.solana, { sol: 1, usdcAtomic: 1_000_000n });
    const walletEnv = {
      CROCHET_SOLANA_KEY: getBase58Decoder().decode(wallet.secretKey),
      CROCHET_SOLANA_RPC_URL: stack.solana.rpcUrl,
    };
    const paidCall = await crochet(['--json', 'call', paid, '--body', '{"days":3}', '--max-price', '0.05'], walletEnv);
    expect(paidCall.code, paidCall.stderr).toBe(0);
    expect(paidCall.json).toMatchObject({
      status: 200,
      price: '0.02',
      payment: { rail: 'solana-transfer', network: stack.solana.caip2 },
      receipt: { valid: true },
      body: { echo: '{"days":3}' },
    });
    // The progress line went to stderr while paying.
    expect(paidCall.stderr).toMatch(/Paying 0\.02 USDC with solana-transfer/);
    expect(await usdcBalanceOf(stack.solana, wallet.address)).toBe(980_000n);

    const history = await crochet(['--json', 'history']);
    expect(history.code, history.stderr).toBe(0);
    expect(history.json.data.map((r: { id: string }) => r.id)).toContain(paidCall.json.request_id);

    // Completions reach the ledger batched.
    await eventually(async () => {
      await stack.plane.eventsConsumer.drain();
      const { rows } = await stack.plane.deps.pool.query(
        'SELECT 1 FROM ledger_journals WHERE gateway_request_id = $1',
        [paidCall.json.request_id],
      );
      expect(rows).toHaveLength(1);
    }, 10_000);
    const ledger = await crochet(['--json', 'ledger']);
    expect(ledger.code, ledger.stderr).toBe(0);
    expect(ledger.json.data).toEqual([
      expect.objectContaining({
        role: 'buyer',
        amount: '-0.02',
        gateway_request_id: paidCall.json.request_id,
      }),
    ]);

    const verified = await crochet(['--json', 'receipts', 'verify', paidCall.json.request_id]);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.json).toMatchObject({ valid: true, claims: { sub: paidCall.json.request_id, amount: '20000' } });
    const forged = await crochet(['--json', 'receipts', 'verify', `${paidCall.json.receipt.jws}x`]);
    expect(forged.code).toBe(1);
    expect(forged.json.valid).toBe(false);
  }, 180_000);

  it('is documented in /llms.txt, as the server publishes it', async () => {
    const llms = await (await fetch(`${stack.proxies[0]!.url}/llms.txt`)).text();
    expect(llms).toContain('## Buyer SDK and CLI');
    expect(llms).toMatch(/crochet register --name N \| listings search/);
  });

  it('reports refusals as JSON on stderr with a non-zero exit, paying nothing', async () => {
    const tooDear = await crochet(['--json', 'call', paid, '--max-price', '0.01']);
    expect(tooDear.code).toBe(1);
    expect(lastLine(tooDear.stderr).error).toMatchObject({ code: 'MAX_PRICE_EXCEEDED' });

    const unknown = await crochet(['--json', 'call', 'lst_01M8H4C1P9JHV629DV3713W3NR']);
    expect(unknown.code).toBe(1);
    expect(lastLine(unknown.stderr).error).toMatchObject({ code: 'LISTING_NOT_FOUND', status: 404 });

    const noKey = await crochet(['--json', 'history'], { CROCHET_KEY_FILE: join(dir, 'missing.json') });
    expect(noKey.code).toBe(1);
    expect(lastLine(noKey.stderr).error.code).toEqual(expect.any(String));
  }, 120_000);
});
