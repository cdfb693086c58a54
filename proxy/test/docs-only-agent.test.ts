import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DocsOnlyAgentRun, runDocsOnlyAgent } from './docs-only-agent/agent.js';
import { type PaymentStack, startPaymentStack } from './payment-stack.js';

/**
 * Issue 14, how it is checked: a scripted agent that knows only the base URL and reads only what the server publishes
 * (docs-only-agent/agent.ts, no Crochet imports) registers, sells, and buys free and paid on the dev chains at the
 * DEFAULT proof-of-work difficulty, reaching the first paid answer in at most 25 HTTP calls to Crochet and the faucet.
 * The time it took is printed, not asserted.
 */

const MAX_CALLS_TO_FIRST_PAID_ANSWER = 25;
/** What the agent's files may import: node built-ins, these published packages, and each other. */
const ALLOWED_PACKAGES = ['@solana/kit', '@solana-program/token', '@x402/fetch', '@x402/svm/exact/client'];
const AGENT_FILES = ['agent.ts', 'seller.ts'];

let stack: PaymentStack;
let run: DocsOnlyAgentRun;

beforeAll(async () => {
  stack = await startPaymentStack({
    faucet: true,
    proxyIsBaseUrl: true,
    // The default difficulty (unset), not the tests' low one.
    planeEnv: { CROCHET_POW_DIFFICULTY: '' },
  });
  run = await runDocsOnlyAgent(stack.proxies[0]!.url);
  console.log(
    `[docs-only agent] first paid answer after ${run.callsToFirstPaidAnswer} calls to Crochet and the faucet in ` +
      `${run.secondsToFirstPaidAnswer.toFixed(1)} s at difficulty ${run.documentedDifficulty}; then x402 in ` +
      `${run.x402.calls} more calls\n` +
      run.calls.map((c, i) => `  ${i + 1}. ${c.to} ${c.method} ${new URL(c.url).pathname} → ${c.status}`).join('\n'),
  );
}, 180_000);
afterAll(async () => {
  await run?.seller.close();
  await stack?.stop();
});

describe('a docs-only agent', () => {
  it('imports nothing of Crochet: node built-ins, published packages and its own files only', () => {
    for (const file of AGENT_FILES) {
      const source = readFileSync(new URL(`./docs-only-agent/${file}`, import.meta.url), 'utf8');
      expect(source, file).not.toMatch(/\bimport\s*\(|\brequire\s*\(/);
      const specifiers = [
        ...source.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s+'([^']+)'|^\s*import\s+'([^']+)'/gms),
      ]
        .map((m) => m[1] ?? m[2]!)
        .filter(Boolean);
      expect(specifiers.length, file).toBeGreaterThan(0);
      for (const specifier of specifiers) {
        const ok =
          specifier.startsWith('node:') ||
          ALLOWED_PACKAGES.includes(specifier) ||
          AGENT_FILES.map((f) => `./${f.replace(/\.ts$/, '.js')}`).includes(specifier);
        expect(ok, `${file} imports ${specifier}`).toBe(true);
      }
    }
  });

  it('works at the default proof-of-work difficulty, the one the documents state', () => {
    expect(run.documentedDifficulty).toBe(stack.plane.config.powDifficulty);
    // Two registrations and two listings, each with a challenge at that difficulty.
    expect(run.challengeDifficulties).toEqual(Array(4).fill(run.documentedDifficulty));
    expect(run.documentedDifficulty).toBeGreaterThanOrEqual(20);
  });

  it(`reaches the first paid answer in at most ${MAX_CALLS_TO_FIRST_PAID_ANSWER} calls to Crochet and the faucet`, () => {
    expect(run.callsToFirstPaidAnswer).toBeLessThanOrEqual(MAX_CALLS_TO_FIRST_PAID_ANSWER);
    // Everything it needed was where the documents said: no call went anywhere else, none was refused on the way.
    expect(run.calls.filter((c) => c.to === 'other')).toEqual([]);
    expect(run.calls.filter((c) => c.to === 'faucet').map((c) => `${c.method} ${new URL(c.url).pathname}`)).toEqual([
      'GET /',
      'POST /solana',
    ]);
  });

  it('got the free answer and the paid answer from its own seller, every request signed as the spec says', () => {
    expect(run.free).toEqual({ status: 200, body: { echo: { question: 'echo me' }, paid: false } });
    expect(run.paid.status).toBe(200);
    expect(run.paid.body).toMatchObject({ answer: 'forty-two', paid: true });
    expect(run.x402.status).toBe(200);
    expect(run.x402.body).toMatchObject({ answer: 'forty-two', paid: true });
    expect(run.x402.paymentResponse).toEqual(expect.any(String));
    expect(run.seller.requests).toEqual([
      { path: '/free', listingId: run.listings.free.id, signature: 'valid' },
      { path: '/paid', listingId: run.listings.paid.id, signature: 'valid' },
      { path: '/paid', listingId: run.listings.paid.id, signature: 'valid' },
    ]);
  });

  it('paid with its direct transfer: the gateway request completed, paid on Solana by the agent’s wallet', async () => {
    // The history is written from the event stream, moments after the answer (batched): read it once it is.
    const read = () =>
      stack.plane.call('GET', `/api/v1/gateway-requests/${run.paid.requestId}`, { key: run.buyerApiKey });
    await expect.poll(async () => (await read()).body.data?.status, { timeout: 10_000 }).toBe('completed');
    const res = await read();
    expect(res.status, res.text).toBe(200);
    expect(res.body.data).toMatchObject({ listing_id: run.listings.paid.id, status: 'completed' });
    expect(JSON.stringify(res.body.data)).toContain(run.paid.proof.split(':').at(-1));
  });
});
