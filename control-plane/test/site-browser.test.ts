import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { publish } from './events-support.js';
import { startTestControlPlane, TEST_REDIS_URL, type TestPlane } from './helpers.js';
import { callEvents } from './reviews-support.js';

/**
 * The public site (DESIGN §3.10) in a real browser (Debian's chromium) against a real control plane, PostgreSQL and
 * Redis: listings published through the API, paid calls recorded as the proxies record them (gateway events on the
 * Redis stream, read by the events consumer), reviews written through the API and scores computed by the score job.
 * Every page renders that data without console or CSP errors; search, filters, sort and paging work; docs links
 * resolve; reading works with JavaScript off; sign-up leads to the dashboard, whose tables hold at 390, 1280 and
 * 1920 px. Screenshots are written to docs/screenshots/ with CROCHET_UPDATE_SCREENSHOTS=1.
 */

vi.setConfig({ testTimeout: 90_000 });

const SHOTS = process.env['CROCHET_UPDATE_SCREENSHOTS'] ? new URL('../../docs/screenshots/', import.meta.url) : null;
const WIDTHS = [390, 1280, 1920] as const;
const HOSTILE_NAME = 'Summarize <img src=x id=injected>';
const HOSTILE_COMMENT = '<script id="evil">alert(1)</script> fast & exact';
const LISTINGS = [
  { name: 'Translate EN→DE', tags: ['translate', 'language'], description: 'Translates English text to German.' },
  { name: 'Translate EN→FR', tags: ['translate', 'language'], description: 'Translates English text to French.' },
  { name: HOSTILE_NAME, tags: ['text'], description: 'Summarizes a document in three sentences.' },
  { name: 'Weather now', tags: ['weather'], description: 'Current weather for a city.', free: true },
  ...Array.from({ length: 11 }, (_, i) => ({
    name: `Image caption ${i + 1}`,
    tags: ['vision'],
    description: `Captions an image (model ${i + 1}).`,
    free: i % 3 === 0,
  })),
];

let plane: TestPlane;
let redis: Redis;
let base: string;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let seller: { apiKey: string; agentId: string };
/** id of 'Translate EN→DE': 16 buyers, 80 paid calls, 16 reviews — verified. */
let topId: string;
const ids = new Map<string, string>();
const problems: string[] = [];

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
    // The dashboard's session probe answers 401 while signed out; the browser logs that load. Expected.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
      problems.push(`console ${p.url()}: ${message.text()}`);
    }
  });
};

const shot = async (name: string, target: Page = page, fullPage = true) => {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await target.screenshot({ path: fileURLToPath(new URL(`${name}.png`, SHOTS)), fullPage });
};

/** The page is no wider than the window: nothing sticks out sideways. */
const expectNoSidewaysScroll = async (p: Page) => {
  const [scroll, inner] = await p.evaluate(() => {
    const { document, innerWidth } = globalThis as any;
    return [document.documentElement.scrollWidth as number, innerWidth as number];
  });
  expect(scroll, `${p.url()} at ${inner}px`).toBeLessThanOrEqual(inner);
};

beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  plane = await startTestControlPlane({ CONTROL_PLANE_PORT: String(port), PUBLIC_BASE_URL: base });
  redis = new Redis(TEST_REDIS_URL);
  seller = await plane.register('listing-seller');
  for (const l of LISTINGS) {
    const { listing } = await plane.createListing(seller.apiKey, {
      name: l.name,
      description: l.description,
      tags: l.tags,
      ...(l.free ? {} : { pricing_model: 'per_call', price: { amount: '0.01' } }),
      input_schema: { type: 'object', properties: { text: { type: 'string' } } },
    });
    ids.set(l.name, listing.id);
  }
  topId = ids.get('Translate EN→DE')!;
  // Paid calls as the proxies record them: 16 buyers × 5 on the top listing, 2 buyers × 2 on the hostile one.
  const buyers = await Promise.all(Array.from({ length: 16 }, (_, i) => plane.register(`buyer-${i + 1}`)));
  const events = [];
  const reviewable: [typeof seller, string, string][] = [];
  for (const [i, buyer] of buyers.entries()) {
    for (let n = 0; n < 5; n++) {
      const call = callEvents({ listingId: topId, sellerId: seller.agentId, buyerId: buyer.agentId }, 'paid');
      events.push(...call.events);
      if (n === 0) reviewable.push([buyer, topId, call.id]);
    }
    if (i < 2) {
      const hostile = ids.get(HOSTILE_NAME)!;
      const call = callEvents({ listingId: hostile, sellerId: seller.agentId, buyerId: buyer.agentId }, 'paid');
      events.push(...call.events);
      reviewable.push([buyer, hostile, call.id]);
    }
  }
  await publish(redis, plane.config.redisPrefix, ...events);
  await plane.eventsConsumer.drain();
  for (const [i, [buyer, listingId, gatewayRequestId]] of reviewable.entries()) {
    const hostile = listingId !== topId;
    const res = await plane.call('POST', `/api/v1/listings/${listingId}/reviews`, {
      key: buyer.apiKey,
      body: {
        gateway_request_id: gatewayRequestId,
        rating: hostile ? 3 : 5,
        comment: hostile ? HOSTILE_COMMENT : `Review ${i + 1}: accurate and quick.`,
      },
    });
    expect(res.status, res.text).toBe(201);
  }
  await plane.scoreJob.runOnce();
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox'] });
  context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US', timezoneId: 'UTC' });
  page = await context.newPage();
  watch(page);
}, 180_000);

afterAll(async () => {
  await browser?.close();
  redis?.disconnect();
  await plane?.stop();
});

describe('the public site in a browser', () => {
  it('the overview shows what Crochet is and the top listing, verified', async () => {
    await page.goto(`${base}/`);
    await expect(page.locator('h1').textContent()).resolves.toContain('AI agents buy and sell');
    const top = page.locator('.listing-card').first();
    expect(await top.locator('h2').textContent()).toBe('Translate EN→DE');
    expect(await top.locator('.badge-verified').count()).toBe(1);
    await shot('home');
  });

  it('the marketplace lists listings with price, score, verified badge and review count, and pages through all', async () => {
    await page.goto(`${base}/marketplace`);
    const cards = page.locator('.listing-card');
    expect(await cards.count()).toBe(12);
    const first = cards.first();
    expect(await first.locator('h2').textContent()).toBe('Translate EN→DE');
    const facts = (await first.locator('.listing-facts').textContent()) ?? '';
    const api = (await plane.call('GET', `/api/v1/listings/${topId}`)).body.data;
    expect(api.verified).toBe(true);
    expect(facts).toContain('0.01 USDC per call');
    expect(facts).toContain(String(api.crochet_score));
    expect(facts).toContain('Verified');
    expect(facts).toContain('16 reviews');
    await shot('marketplace');

    const seen = new Set(await cards.locator('h2').allTextContents());
    await page.getByRole('link', { name: 'Next page' }).click();
    const second = await page.locator('.listing-card h2').allTextContents();
    expect(second.length).toBe(LISTINGS.length - 12);
    for (const name of second) expect(seen.has(name)).toBe(false);
    expect(await page.getByRole('link', { name: 'Next page' }).count()).toBe(0);
    await page.getByRole('link', { name: 'First page' }).click();
    expect(await page.locator('.listing-card').count()).toBe(12);
  });

  it('searches, filters by tag and pricing, and sorts, as the listings API does', async () => {
    await page.goto(`${base}/marketplace`);
    await page.getByLabel('Search').fill('translate');
    await page.getByRole('button', { name: 'Search' }).click();
    const names = () => page.locator('.listing-card h2').allTextContents();
    expect((await names()).sort()).toEqual(['Translate EN→DE', 'Translate EN→FR']);
    expect(page.url()).toContain('q=translate');

    await page.goto(`${base}/marketplace`);
    await page.getByLabel('Pricing').selectOption('free');
    await page.getByLabel('Sort by').selectOption('newest');
    await page.getByRole('button', { name: 'Search' }).click();
    const api = (await plane.call('GET', '/api/v1/listings?pricing_model=free&sort=newest&limit=12')).body.data;
    expect(await names()).toEqual(api.map((l: { name: string }) => l.name));
    for (const fact of await page.locator('.listing-facts .price').allTextContents()) expect(fact).toBe('Free');

    await page.goto(`${base}/marketplace/${ids.get('Weather now')}`);
    await page.locator('.tags a', { hasText: 'weather' }).click();
    expect(await names()).toEqual(['Weather now']);

    // A name that looks like markup is text: it never became an element.
    await page.goto(`${base}/marketplace?q=summarize`);
    expect(await page.locator('.listing-card h2').allTextContents()).toEqual([HOSTILE_NAME]);
    expect(await page.locator('#injected').count()).toBe(0);

    await page.goto(`${base}/marketplace?q=nothing-matches-this`);
    expect(await page.locator('.empty').textContent()).toContain('No listings');

    // A value the API refuses is the API's own message, not a crash.
    const bad = await fetch(`${base}/marketplace?sort=cheapest`);
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain('querystring');
  });

  it('a listing page shows description, price, gateway URL, score components, reviews and a copyable call', async () => {
    await page.goto(`${base}/marketplace/${topId}`);
    expect(await page.locator('h1').textContent()).toBe('Translate EN→DE');
    const facts = (await page.locator('.facts').textContent()) ?? '';
    expect(facts).toContain('0.01 USDC per call');
    expect(facts).toContain(`${base}/api/v1/gateway/${topId}`);
    const api = (await plane.call('GET', `/api/v1/listings/${topId}`)).body.data;
    expect(facts).toContain(`${api.crochet_score} / 1000`);
    const score = (await page.locator('section[aria-labelledby="score-title"]').textContent()) ?? '';
    expect(score).toContain(String(api.score.components.paid_calls));
    expect(score).toContain(String(api.score.components.quality));
    expect(await page.locator('.review').count()).toBe(10);
    const curl = (await page.locator('#example-curl').textContent()) ?? '';
    expect(curl).toContain(`curl -X POST '${base}/api/v1/gateway/${topId}'`);
    expect(curl).toContain(`-d '{"text":"…"}'`);
    await page.getByRole('button', { name: 'Copy' }).waitFor();
    await shot('listing');
    await page.getByRole('link', { name: 'Older reviews' }).click();
    expect(await page.locator('.review').count()).toBe(6);

    await page.goto(`${base}/marketplace/${ids.get(HOSTILE_NAME)}`);
    expect(await page.locator('h1').textContent()).toBe(HOSTILE_NAME);
    expect(await page.locator('.review p').first().textContent()).toBe(HOSTILE_COMMENT);
    expect(await page.locator('#injected, #evil').count()).toBe(0);

    const missing = await fetch(`${base}/marketplace/lst_doesnotexist`);
    expect(missing.status).toBe(404);
  });

  it('docs pages render, and every link on them resolves', async () => {
    await page.goto(`${base}/docs`);
    const pages = await page.locator('.docs-nav a').evaluateAll((as) => as.map((a) => (a as any).href));
    expect(pages.length).toBe(10);
    const links = new Set<string>();
    for (const url of pages.filter((u) => !u.endsWith('/docs/api'))) {
      const res = await page.goto(url);
      expect(res?.status(), url).toBe(200);
      expect(await page.locator('.docs-body h1').count()).toBe(1);
      for (const href of await page.locator('main a').evaluateAll((as) => as.map((a) => (a as any).href))) {
        if (href.startsWith(base)) links.add(href.split('#')[0]!);
      }
    }
    await page.goto(`${base}/docs/payments`);
    await shot('docs');
    for (const link of links) expect((await fetch(link)).status, link).toBe(200);
  });

  it('/docs/api is the interactive reference over /api/openapi.json, from this site only', async () => {
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(`${base}/docs/api`);
    await page.getByRole('heading', { name: 'Crochet API' }).first().waitFor();
    const reference = await page.locator('#reference').textContent();
    for (const tag of ['listings', 'trust', 'seller']) expect(reference?.toLowerCase()).toContain(tag);
    await shot('api-reference', page, false);
    page.removeAllListeners('request');
    expect(requests.filter((u) => !u.startsWith(base) && !u.startsWith('data:') && !u.startsWith('blob:'))).toEqual([]);
  });

  it('reads without JavaScript', async () => {
    const plain = await browser.newContext({ javaScriptEnabled: false });
    const p = await plain.newPage();
    await p.goto(`${base}/marketplace?q=translate`);
    expect(await p.locator('.listing-card').count()).toBe(2);
    await p.goto(`${base}/marketplace/${topId}`);
    expect(await p.locator('#example-curl').textContent()).toContain('curl');
    await p.goto(`${base}/docs/agent-skill`);
    expect(await p.locator('.docs-body').textContent()).toContain('Buy a capability');
    await p.goto(`${base}/docs/api`);
    expect(await p.getByRole('link', { name: 'plain-text API reference' }).count()).toBe(1);
    await plain.close();
  });

  it('site pages hold at 390, 1280 and 1920 px', async () => {
    for (const width of WIDTHS) {
      await page.setViewportSize({ width, height: 900 });
      for (const path of ['/', '/marketplace', `/marketplace/${topId}`, '/docs/trust', '/login']) {
        await page.goto(`${base}${path}`);
        await expectNoSidewaysScroll(page);
      }
      if (width === 390) {
        await page.goto(`${base}/marketplace`);
        await shot('marketplace-phone');
      }
    }
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it('sign up leads to the dashboard; a wrong password is refused on the page; log in works', async () => {
    await page.goto(`${base}/`);
    await page.getByRole('link', { name: 'Sign up', exact: true }).click();
    await page.getByLabel('Email').fill('grace@example.com');
    await page.getByLabel('Password').fill('correct horse battery');
    await shot('signup');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.waitForURL(`${base}/dashboard`);
    await page.locator('#dash-view').waitFor({ state: 'visible' });
    expect(await page.locator('#account-email').textContent()).toBe('grace@example.com');
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.locator('#auth-view').waitFor({ state: 'visible' });

    await page.goto(`${base}/login`);
    await page.getByLabel('Email').fill('grace@example.com');
    await page.getByLabel('Password').fill('wrong password');
    await page.getByRole('button', { name: 'Log in' }).click();
    expect(await page.locator('.alert').textContent()).toMatch(/\S/);
    expect(await page.getByLabel('Email').inputValue()).toBe('grace@example.com');
    await page.getByLabel('Password').fill('correct horse battery');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.waitForURL(`${base}/dashboard`);
    await page.locator('#dash-view').waitFor({ state: 'visible' });
  });

  it("the dashboard's keys and listings tables never overlap, at 390, 1280 and 1920 px", async () => {
    const claim = await plane.call('POST', '/api/v1/me/claim', { key: seller.apiKey });
    expect(claim.status).toBe(201);
    await page.getByLabel('Claim code').fill(claim.body.data.claim_code);
    await page.getByRole('button', { name: 'Claim agent' }).click();
    const card = page.locator(`article[data-agent-id="${seller.agentId}"]`);
    await card.waitFor();
    await card.locator('.agent-lists table').nth(1).waitFor();
    for (const width of WIDTHS) {
      await page.setViewportSize({ width, height: 900 });
      const boxes = await card.locator('.agent-lists table').evaluateAll((tables) =>
        tables.map((t) => {
          const r = t.getBoundingClientRect();
          const s = (t.closest('.subsection') as any).getBoundingClientRect();
          return { top: r.top, bottom: r.bottom, left: r.left, right: r.right, sectionRight: s.right };
        }),
      );
      expect(boxes.length).toBe(2);
      const [keys, listings] = boxes as [(typeof boxes)[0], (typeof boxes)[0]];
      const apart =
        keys.bottom <= listings.top ||
        listings.bottom <= keys.top ||
        keys.right <= listings.left ||
        listings.right <= keys.left;
      expect(apart, `tables overlap at ${width}px: ${JSON.stringify(boxes)}`).toBe(true);
      await expectNoSidewaysScroll(page);
      if (width !== 390) await shot(`dashboard-${width}`);
    }
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it('no page logged a console error or broke the CSP', () => {
    expect(problems).toEqual([]);
  });
});
