import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createFundedWallet, type FundedWallet, transferUsdcWithMemo } from '@crochet/dev-chains';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyWallet } from '../../control-plane/test/helpers.js';
import { solanaWallet } from '../../control-plane/test/wallets-support.js';
import { createPaidListing, type PaymentStack, paymentTx, startPaymentStack } from './payment-stack.js';
import { eventually, expectApiError, gatewayCall, startSeller, type TestSeller } from './stack.js';

/**
 * The operator dashboard in a real browser (Debian's chromium), through the proxy's public port, against a real
 * stack: an operator signs up, claims a buyer agent with the code the agent asked for, caps its daily spend at the
 * price of one call, watches the paid call arrive without reloading, and the next call is refused by the proxies.
 * Names that look like HTML must render as text. Screenshots for the README come from this run.
 */

/**
 * The screenshots are always taken; they replace the README's only with CROCHET_UPDATE_SCREENSHOTS=1, so that a
 * test run does not leave changed images (new ids and times) in the working tree.
 */
const IMAGES = process.env['CROCHET_UPDATE_SCREENSHOTS']
  ? new URL('../../docs/images/', import.meta.url)
  : pathToFileURL(`${mkdtempSync(join(tmpdir(), 'crochet-dashboard-'))}/`);
const BUYER_NAME = 'research-agent';
const SELLER_NAME = 'translator';
const LISTING_NAME = 'Translate EN→DE';
/** Names that look like markup, given after the screenshots: they must show as the literal text they are. */
const HOSTILE_AGENT_NAME = '<img src=x id=injected> helper';
const HOSTILE_LISTING_NAME = 'Translate <b id=bold>EN→DE</b>';
const EMAIL = 'ada@example.com';
const PASSWORD = 'correct horse battery';

let stack: PaymentStack;
let seller: TestSeller;
let base: string;
let listingId: string;
let buyer: { apiKey: string; agentId: string };
let sellerAgent: { apiKey: string; agentId: string };
let wallet: FundedWallet;
let browser: Browser;
let context: BrowserContext;
let page: Page;
/** What the browser reported: console errors (CSP and Trusted Types violations land here) and uncaught errors. */
const problems: string[] = [];

/** A port nothing listens on, so the stack's public base URL (and the browser's Origin) is known before it starts. */
const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

const watch = (p: Page) => {
  p.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
  p.on('console', (message) => {
    // The session probe answers 401 while signed out: the browser logs that resource load; it is expected.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
      problems.push(`console: ${message.text()}`);
    }
  });
};

const buyerCall = (headers: Record<string, string> = {}, apiKey = buyer.apiKey) =>
  gatewayCall(stack.proxies[0]!, listingId, apiKey, { headers, body: { q: 1 } });

/** Pays the listing's price on the Solana dev chain, as the buyer agent would, and makes the paid call. */
const paidCall = async () => {
  const unpaid = await buyerCall();
  expectApiError(unpaid, 402, 'PAYMENT_REQUIRED');
  const signature = await transferUsdcWithMemo(
    stack.solana,
    wallet.signer,
    stack.solanaPayTo,
    10_000n,
    unpaid.json.payment.payment_request_id,
  );
  const paid = await buyerCall(paymentTx(stack.solana.caip2, signature));
  expect(paid.status, paid.text).toBe(200);
  return paid.headers['x-crochet-request-id'] as string;
};

const agentCard = (agentId = buyer.agentId) => page.locator(`article[data-agent-id="${agentId}"]`);

/** The agent asks for a claim code through the API; its human pastes it into the page. */
const claimInPage = async (apiKey: string, agentId: string) => {
  const claim = await fetch(`${base}/api/v1/me/claim`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}` },
  });
  expect(claim.status).toBe(201);
  const { claim_code: code } = ((await claim.json()) as any).data;
  await page.getByLabel('Claim code').fill(code);
  await page.getByRole('button', { name: 'Claim agent' }).click();
  await agentCard(agentId).waitFor();
};

beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  // The operator API accepts state changes only from its own origin: the page's origin must be PUBLIC_BASE_URL.
  stack = await startPaymentStack({
    proxyEnv: { PORT: String(port), PUBLIC_BASE_URL: base },
    // Its seller earns cents: any payout is allowed here.
    planeEnv: { PUBLIC_BASE_URL: base, CROCHET_PAYOUT_MINIMUM: '0.000001' },
  });
  seller = await startSeller();
  sellerAgent = await stack.plane.register(SELLER_NAME);
  buyer = await stack.plane.register(BUYER_NAME);
  listingId = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/paid`, '0.01', { name: LISTING_NAME });
  wallet = await createFundedWallet(stack.solana, { sol: 1, usdcAtomic: 1_000_000n });
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox'] });
  context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US', timezoneId: 'UTC' });
  page = await context.newPage();
  watch(page);
}, 90_000);

afterAll(async () => {
  if (!process.env['CROCHET_UPDATE_SCREENSHOTS']) rmSync(IMAGES, { recursive: true, force: true });
  await browser?.close();
  await seller?.close();
  await stack?.stop();
});

describe('the operator dashboard in a browser', () => {
  it('is served through the public port with its security headers', async () => {
    const res = await fetch(`${base}/dashboard`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  });

  it('signs up, claims an agent, caps it, shows its paid call live, and the proxies enforce the cap', async () => {
    await page.goto(`${base}/dashboard`);
    await page.getByRole('tab', { name: 'Sign up' }).click();
    const signup = page.locator('#signup-form');
    await signup.getByLabel('Email').fill(EMAIL);
    await signup.getByLabel('Password').fill(PASSWORD);
    await signup.getByRole('button', { name: 'Create account' }).click();
    await page.locator('#dash-view').waitFor({ state: 'visible' });
    expect(await page.locator('#account-email').textContent()).toBe(EMAIL);
    await page.getByText('No agents yet').waitFor();

    await claimInPage(buyer.apiKey, buyer.agentId);
    expect(await agentCard().locator('h3').textContent()).toBe(BUYER_NAME);
    const me = await fetch(`${base}/api/v1/me`, { headers: { authorization: `Bearer ${buyer.apiKey}` } });
    expect(((await me.json()) as any).data.operator_claim).not.toBeNull();
    // The seller too: its listing, and what it earns, show on its card.
    await claimInPage(sellerAgent.apiKey, sellerAgent.agentId);
    await agentCard(sellerAgent.agentId).getByText(LISTING_NAME).waitFor();

    // A daily cap of exactly one call's price, pushed to the proxies.
    await agentCard().getByLabel('Daily spend cap (USDC)').fill('0.01');
    await agentCard().getByRole('button', { name: 'Save cap' }).click();
    await agentCard().getByText('Cap set to 0.01 USDC a day.').waitFor();
    await eventually(() => expect(stack.proxies[0]!.store.agent(buyer.agentId)?.daily_spend_cap_atomic).toBe('10000'));

    // One paid call: it appears in the open page (no reload) and today's spend follows.
    const requestId = await paidCall();
    const row = page.locator(`#requests tr[data-request-id="${requestId}"]`);
    await row.waitFor({ timeout: 20_000 });
    expect(await row.textContent()).toContain(LISTING_NAME);
    expect(await row.textContent()).toContain('200');
    await eventually(async () => {
      const figures = await agentCard().locator('.figure').first().textContent();
      expect(figures).toContain('0.01 USDC');
      expect(figures).toContain('of 0.01 USDC cap');
    }, 20_000);
    await page.locator('#ledger tr', { hasText: 'Buyer debit' }).first().waitFor({ timeout: 20_000 });

    // The next call would pass the cap: refused before any payment is asked for.
    const refused = await buyerCall();
    expectApiError(refused, 402, 'SPEND_CAP_EXCEEDED');
    expect(refused.headers['payment-required']).toBeUndefined();
  }, 120_000);

  it("shows the seller's payout: its status, amount, network and transaction, and its ledger entries", async () => {
    // The seller earned 0.0095 USDC from the paid call (5 % fee); it verifies a wallet and asks to be paid.
    const sellerWallet = solanaWallet();
    expect((await verifyWallet(stack.plane, sellerAgent.apiKey, sellerWallet)).status).toBe(201);
    const asked = await stack.plane.call('POST', '/api/v1/payouts', {
      key: sellerAgent.apiKey,
      body: { network: stack.solana.caip2 },
    });
    expect(asked.status, asked.text).toBe(201);
    const payout = await eventually(async () => {
      await stack.plane.transfers.runOnce();
      const res = await stack.plane.call('GET', `/api/v1/payouts/${asked.body.data.id}`, { key: sellerAgent.apiKey });
      expect(res.body.data.status).toBe('confirmed');
      return res.body.data;
    }, 20_000);
    const row = page.locator(`#transfers tr[data-transfer-id="${payout.id}"]`);
    await row.waitFor({ timeout: 20_000 });
    await eventually(async () => expect(await row.textContent()).toContain('Confirmed'), 20_000);
    const text = (await row.textContent()) ?? '';
    expect(text).toContain(SELLER_NAME);
    expect(text).toContain('Payout');
    expect(text).toContain('0.0095 USDC');
    expect(text).toContain(stack.solana.caip2);
    expect(await row.locator(`code[title="${payout.tx}"]`).count()).toBe(1);
    expect(await row.locator(`code[title="${sellerWallet.address}"]`).count()).toBe(1);
    await page.locator('#ledger tr', { hasText: 'Payout sent' }).first().waitFor({ timeout: 20_000 });
    expect(problems).toEqual([]);
  }, 60_000);

  it('looks right on a desktop and on a phone (screenshots for the README)', async () => {
    mkdirSync(IMAGES, { recursive: true });
    await page.locator('#live-text', { hasText: 'updated' }).waitFor();
    await agentCard(sellerAgent.agentId).getByText('Earned in total').waitFor();
    await page.mouse.move(0, 0); // no hover state in the picture
    await page
      .locator('.notice:not(:empty)')
      .first()
      .waitFor({ state: 'detached', timeout: 10_000 })
      .catch(() => {});
    await page.screenshot({ path: fileURLToPath(new URL('dashboard.png', IMAGES)), fullPage: true });

    const phone = await browser.newContext({
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
      locale: 'en-US',
      timezoneId: 'UTC',
      storageState: await context.storageState(),
    });
    try {
      const small = await phone.newPage();
      watch(small);
      await small.goto(`${base}/dashboard`);
      await small.locator(`article[data-agent-id="${buyer.agentId}"]`).waitFor();
      await small.locator('#requests tr').nth(1).waitFor();
      // Nothing scrolls sideways, and every control is at least 44 px tall.
      const scrollWidth = await small.evaluate(() => (globalThis as any).document.documentElement.scrollWidth);
      expect(scrollWidth).toBeLessThanOrEqual(390);
      const tooSmall: string[] = [];
      for (const control of await small.locator('button:visible, input:visible').all()) {
        const box = await control.boundingBox();
        if (box && box.height < 44)
          tooSmall.push(
            `${(await control.getAttribute('aria-label')) ?? (await control.textContent())}: ${box.height}px`,
          );
      }
      expect(tooSmall).toEqual([]);
      await small.screenshot({ path: fileURLToPath(new URL('dashboard-phone.png', IMAGES)) });
    } finally {
      await phone.close();
    }
  }, 60_000);

  it('shows names that look like markup as text', async () => {
    const hostile = await stack.plane.register(HOSTILE_AGENT_NAME);
    await claimInPage(hostile.apiKey, hostile.agentId);
    expect(await agentCard(hostile.agentId).locator('h3').textContent()).toBe(HOSTILE_AGENT_NAME);
    const renamed = await stack.plane.call('PATCH', `/api/v1/listings/${listingId}`, {
      key: sellerAgent.apiKey,
      body: { name: HOSTILE_LISTING_NAME },
    });
    expect(renamed.status, renamed.text).toBe(200);
    await agentCard(sellerAgent.agentId).getByText(HOSTILE_LISTING_NAME).waitFor({ timeout: 10_000 });
    await page.locator('#requests').getByText(HOSTILE_LISTING_NAME).first().waitFor({ timeout: 10_000 });
    expect(await page.locator('#injected, #bold').count()).toBe(0);
  }, 60_000);

  it('pauses and resumes an agent and a listing, and revokes a key after confirming', async () => {
    await agentCard()
      .getByRole('button', { name: /^Pause agent/ })
      .click();
    await agentCard()
      .getByRole('button', { name: /^Resume agent/ })
      .waitFor();
    await eventually(async () => expectApiError(await buyerCall(), 403, 'AGENT_PAUSED'));
    await agentCard()
      .getByRole('button', { name: /^Resume agent/ })
      .click();
    await agentCard()
      .getByRole('button', { name: /^Pause agent/ })
      .waitFor();
    await eventually(async () => expectApiError(await buyerCall(), 402, 'SPEND_CAP_EXCEEDED'));

    const listing = agentCard(sellerAgent.agentId);
    await listing.getByRole('button', { name: /^Pause listing/ }).click();
    await listing.getByRole('button', { name: /^Resume listing/ }).waitFor();
    await eventually(async () => expectApiError(await buyerCall(), 409, 'LISTING_PAUSED'));
    await listing.getByRole('button', { name: /^Resume listing/ }).click();
    await listing.getByRole('button', { name: /^Pause listing/ }).waitFor();
    await eventually(async () => expectApiError(await buyerCall(), 402, 'SPEND_CAP_EXCEEDED'));

    const created = await fetch(`${base}/api/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${buyer.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'spare' }),
    });
    expect(created.status).toBe(201);
    const spare = ((await created.json()) as any).data;
    const revoke = agentCard().getByRole('button', { name: `Revoke key ${spare.key.prefix} of ${BUYER_NAME}` });
    await revoke.waitFor({ timeout: 10_000 });

    // Cancelling the confirmation changes nothing; confirming revokes the key on every proxy.
    await revoke.click();
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
    expect(await page.getByRole('dialog').isVisible()).toBe(false);
    await revoke.click();
    await page.getByRole('dialog').getByRole('button', { name: 'Revoke key' }).click();
    await revoke.waitFor({ state: 'detached' });
    await eventually(async () => expectApiError(await buyerCall({}, spare.api_key), 401, 'API_KEY_REVOKED'));
  }, 60_000);

  it('shows API errors inline and keeps the session across a reload', async () => {
    await page.reload();
    await agentCard().waitFor();
    await page.getByRole('button', { name: 'Log out' }).click();
    const login = page.locator('#login-form');
    await login.waitFor();
    await login.getByLabel('Email').fill(EMAIL);
    await login.getByLabel('Password').fill('not the password');
    await login.getByRole('button', { name: 'Log in' }).click();
    const alert = login.getByRole('alert');
    await alert.locator('.alert-message').waitFor();
    expect((await alert.textContent())?.length).toBeGreaterThan(10);
    await login.getByLabel('Password').fill(PASSWORD);
    await login.getByRole('button', { name: 'Log in' }).click();
    await agentCard().waitFor();
    expect(problems).toEqual([]);
  }, 60_000);
});
