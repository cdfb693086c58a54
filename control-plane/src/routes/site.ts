import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import scalarApiReference from '@scalar/fastify-api-reference';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { App, RouteDoc } from '../app.js';
import type { SiteInfo } from '../docs/render.js';
import { type DocsPage, docsPages } from '../site/docs-pages.js';
import { type Html, html, queryString, trusted } from '../site/html.js';
import { type Assets, layout, type Section } from '../site/layout.js';
import { linesToHtml } from '../site/markup.js';
import { DASHBOARD_CSP } from './dashboard.js';

/**
 * DESIGN §3.10: the public site for people — overview, marketplace, docs, the interactive API reference, and sign-in
 * for operators. Pages are rendered on the server and read without JavaScript; every API string is inserted as text
 * (site/html.ts). The pages ask the API itself for their data (`app.inject`), so the marketplace searches, filters,
 * sorts and pages exactly as GET /api/v1/listings does, and sign-in is the operator API's own.
 */

/** The public pages' policy: the dashboard's (nothing inline, nothing from elsewhere, Trusted Types). */
export const SITE_CSP = DASHBOARD_CSP;

/**
 * /docs/api only: Scalar renders with Vue, injects its styles and writes HTML, so this one page allows inline styles
 * and drops Trusted Types; scripts still come only from this site (its bundle and our initializer, no inline script),
 * and it connects only to this site (the OpenAPI document; "try it" requests go to the API, same origin).
 */
export const API_REFERENCE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "worker-src 'self' blob:",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const HARDENING = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'strict-origin-when-cross-origin',
  'cross-origin-opener-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=()',
};

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
  url: string;
}

const SITE_DIR = new URL('../site/', import.meta.url);
const asset = (name: string, path: URL, type: string): Asset => {
  const body = readFileSync(path);
  const hash = createHash('sha256').update(body).digest('base64url').slice(0, 22);
  return { body, type, etag: `"${hash}"`, url: `/site/${name}?v=${hash.slice(0, 12)}` };
};

const MARKETPLACE_PAGE_SIZE = 12;
const REVIEWS_PAGE_SIZE = 10;

/** The listing fields the pages show (GET /api/v1/listings and /:id). */
interface Listing {
  id: string;
  name: string;
  description: string;
  pricing_model: 'free' | 'per_call';
  price: { amount: string; currency: string };
  gateway_url: string;
  tags: string[];
  input_schema: { properties?: Record<string, { type?: string }> } | null;
  crochet_score: number | null;
  verified: boolean;
  review_count: number;
  score: {
    value: number | null;
    seller_score: number | null;
    components: Record<string, number | null> | null;
    computed_at: string | null;
  };
  gateway: { rate_limit_per_minute: number | null; timeout_ms: number };
  created_at: string;
}
interface Review {
  id: string;
  rating: number;
  comment: string | null;
  reviewer_id: string;
  created_at: string;
}
interface ApiAnswer<T> {
  status: number;
  data?: T;
  next_cursor?: string | null;
  error?: { code: string; message: string; hint?: string };
}

const priceText = (l: Listing): string =>
  l.pricing_model === 'free' ? 'Free' : `${l.price.amount} ${l.price.currency} per call`;
const scoreText = (l: Listing): string => (l.crochet_score === null ? 'not scored yet' : `${l.crochet_score} / 1000`);
const stars = (rating: number): string => '★'.repeat(rating) + '☆'.repeat(5 - rating);
const dateText = (iso: string): string => iso.slice(0, 10);

/** A JSON body example from a listing's input_schema: each property with a placeholder of its type. */
const exampleBody = (l: Listing): string => {
  const properties = l.input_schema?.properties ?? {};
  const placeholder: Record<string, unknown> = { string: '…', number: 0, integer: 0, boolean: false, array: [] };
  const body = Object.fromEntries(
    Object.entries(properties).map(([k, p]) => [k, placeholder[String(p?.type)] ?? null]),
  );
  return JSON.stringify(body);
};
const shellQuote = (text: string): string => `'${text.replaceAll("'", `'\\''`)}'`;
export const exampleCurl = (l: Listing): string =>
  [
    `curl -X POST ${shellQuote(l.gateway_url)} \\`,
    `  -H 'Authorization: Bearer am_k_…' \\`,
    `  -H 'Content-Type: application/json' \\`,
    `  -d ${shellQuote(exampleBody(l))}`,
  ].join('\n');

const SORTS = [
  ['score', 'Crochet Score'],
  ['newest', 'Newest'],
  ['price', 'Price'],
] as const;
const PRICING = [
  ['', 'Any pricing'],
  ['per_call', 'Per call'],
  ['free', 'Free'],
] as const;

const option = (value: string, label: string, selected: string | undefined) =>
  html`<option value="${value}"${value === (selected ?? '') ? html` selected` : ''}>${label}</option>`;

const listingCard = (l: Listing, base: Record<string, string | undefined>): Html => html`<li class="card listing-card">
  <h2><a href="/marketplace/${encodeURIComponent(l.id)}">${l.name}</a></h2>
  <p>${l.description.length > 180 ? `${l.description.slice(0, 180)}…` : l.description}</p>
  ${
    l.tags.length
      ? html`<ul class="tags" aria-label="Tags">${l.tags.map(
          (t) => html`<li><a href="/marketplace${queryString({ ...base, tag: t, cursor: undefined })}">${t}</a></li>`,
        )}</ul>`
      : ''
  }
  <div class="listing-facts">
    <span class="price">${priceText(l)}</span>
    <span>Score <span class="score">${l.crochet_score ?? '—'}</span></span>
    ${l.verified ? html`<span class="badge badge-verified">✓ Verified</span>` : ''}
    <span>${l.review_count} ${l.review_count === 1 ? 'review' : 'reviews'}</span>
  </div>
</li>`;

const docsNav = (pages: DocsPage[], current: string): Html => html`<nav class="docs-nav" aria-label="Docs">
  <ul>
    ${pages.map(
      (p) =>
        html`<li><a href="${p.slug ? `/docs/${p.slug}` : '/docs'}"${p.slug === current ? html` aria-current="page"` : ''}>${p.title}</a></li>`,
    )}
    <li><a href="/docs/api">API Reference</a></li>
  </ul>
</nav>`;

/**
 * The registered site routes; `catalog` is the API's own, for the documents the docs pages render, and `site` this
 * server's settings as the documents state them (measured on first use, so the pages render on first use too).
 */
export const siteRoutes = (app: App, catalog: readonly RouteDoc[], site: () => SiteInfo): void => {
  const css = asset('site.css', new URL('site.css', SITE_DIR), 'text/css; charset=utf-8');
  const js = asset('site.js', new URL('site.js', SITE_DIR), 'text/javascript; charset=utf-8');
  const apiJs = asset('api-reference.js', new URL('api-reference.js', SITE_DIR), 'text/javascript; charset=utf-8');
  const icon = asset('icon.svg', new URL('../dashboard/icon.svg', import.meta.url), 'image/svg+xml');
  const assets: Assets = { css: css.url, js: js.url, icon: icon.url };
  const options = { config: { documented: false } } as const;

  const sendAsset = (request: FastifyRequest, reply: FastifyReply, file: Asset) => {
    reply
      .headers(HARDENING)
      .header('cache-control', 'public, max-age=31536000, immutable')
      .header('etag', file.etag)
      .type(file.type);
    if (request.headers['if-none-match'] === file.etag) return reply.code(304).send();
    return reply.send(file.body);
  };
  for (const file of [css, js, apiJs, icon]) {
    app.get(file.url.split('?')[0]!, options, (request, reply) => sendAsset(request, reply, file));
  }

  const page = (
    reply: FastifyReply,
    meta: { title: string; section: Section; description?: string },
    main: Html,
    status = 200,
  ) =>
    reply
      .code(status)
      .headers(HARDENING)
      .header('content-security-policy', SITE_CSP)
      .header('cache-control', 'no-cache')
      .type('text/html; charset=utf-8')
      .send(layout(assets, meta, main).value);

  const notFound = (reply: FastifyReply, what: string) =>
    page(
      reply,
      { title: 'Not found', section: 'home' },
      html`<h1>Not found</h1><p class="lead">${what}</p><p><a href="/marketplace">Browse the marketplace</a> or read the <a href="/docs">docs</a>.</p>`,
      404,
    );

  /** Asks the public API, as an anonymous caller, exactly what a client would. */
  const api = async <T>(url: string): Promise<ApiAnswer<T>> => {
    const res = await app.inject({ method: 'GET', url, headers: { accept: 'application/json' } });
    return { status: res.statusCode, ...(res.json() as object) };
  };

  // ---- / ------------------------------------------------------------------------------------------------------------
  app.get('/', options, async (_request, reply) => {
    const top = await api<Listing[]>(`/api/v1/listings?sort=score&limit=3`);
    const pages = docsPages(catalog, site());
    return page(
      reply,
      {
        title: 'Crochet',
        section: 'home',
        description: 'A marketplace and gateway where AI agents buy and sell capabilities per call.',
      },
      html`<section class="hero">
  <h1>A marketplace where AI agents buy and sell capabilities per call</h1>
  <p class="lead">${pages[0]!.parts[0]!.lines.join(' ')}</p>
  <div class="hero-actions">
    <a class="btn btn-primary" href="/marketplace">Browse the marketplace</a>
    <a class="btn" href="/docs/quick-start">Quick Start</a>
    <a class="btn" href="/signup">Sign up as an operator</a>
  </div>
</section>
<div class="cards">
  <section class="card"><h2>For agents</h2><p>Register with a proof of work, call any listing’s gateway URL, pay per call in USDC. Agents read <a href="/llms.txt">llms.txt</a> and the <a href="/agent-skill">agent skill</a>.</p><p><a href="/docs/for-agents">Buying step by step</a></p></section>
  <section class="card"><h2>For sellers</h2><p>Publish a private endpoint as a listing; Crochet takes payment, signs each request and streams it to you.</p><p><a href="/docs/seller-integration">Seller integration</a></p></section>
  <section class="card"><h2>For humans</h2><p>Claim the agents you run, see what they spend and earn, cap their spending, pause them.</p><p><a href="/docs/for-humans">Operators</a> · <a href="/login">Log in</a></p></section>
</div>
${
  top.data?.length
    ? html`<h2>Top listings</h2><ul class="listings">${top.data.map((l) => listingCard(l, {}))}</ul>`
    : ''
}`,
    );
  });

  // ---- /marketplace ---------------------------------------------------------------------------------------------------
  app.get('/marketplace', options, async (request, reply) => {
    const raw = request.query as Record<string, unknown>;
    const param = (k: string): string | undefined =>
      typeof raw[k] === 'string' && (raw[k] as string).trim() !== '' ? (raw[k] as string).trim() : undefined;
    const filters = { q: param('q'), tag: param('tag'), pricing_model: param('pricing_model'), sort: param('sort') };
    const cursor = param('cursor');
    const answer = await api<Listing[]>(
      `/api/v1/listings${queryString({ ...filters, cursor, limit: MARKETPLACE_PAGE_SIZE })}`,
    );
    const listings = answer.data ?? [];
    const described = [
      filters.q && `matching “${filters.q}”`,
      filters.tag && `tagged ${filters.tag}`,
      filters.pricing_model && (filters.pricing_model === 'free' ? 'free' : 'priced per call'),
    ].filter(Boolean);
    return page(
      reply,
      { title: 'Marketplace', section: 'marketplace' },
      html`<h1>Marketplace</h1>
<p class="lead">Capabilities agents sell per call, ranked by the <a href="/docs/trust">Crochet Score</a>.</p>
<form class="search" method="get" action="/marketplace" role="search">
  <div class="field field-q"><label for="q">Search</label><input id="q" name="q" type="search" maxlength="200" value="${filters.q ?? ''}" placeholder="translate, summarize, weather…"></div>
  <div class="field"><label for="tag">Tag</label><input id="tag" name="tag" maxlength="32" value="${filters.tag ?? ''}"></div>
  <div class="field"><label for="pricing_model">Pricing</label><select id="pricing_model" name="pricing_model">${PRICING.map(([v, l]) => option(v, l, filters.pricing_model))}</select></div>
  <div class="field"><label for="sort">Sort by</label><select id="sort" name="sort">${SORTS.map(([v, l]) => option(v, l, filters.sort ?? 'score'))}</select></div>
  <button class="btn btn-primary" type="submit">Search</button>
</form>
${
  answer.error
    ? html`<p class="alert" role="alert">${answer.error.message}${answer.error.hint ? ` — ${answer.error.hint}` : ''}</p>`
    : listings.length === 0
      ? html`<p class="card empty">No listings ${described.length ? described.join(', ') : 'yet'}.</p>`
      : html`<p class="results-meta" role="status">${cursor ? 'More listings' : 'Listings'}${described.length ? ` ${described.join(', ')}` : ''}, by ${
          SORTS.find(([v]) => v === (filters.sort ?? 'score'))?.[1] ?? 'score'
        }</p>
<ul class="listings">${listings.map((l) => listingCard(l, filters))}</ul>`
}
<nav class="pager" aria-label="Pages">
  ${cursor ? html`<a class="btn" href="/marketplace${queryString(filters)}">First page</a>` : ''}
  ${answer.next_cursor ? html`<a class="btn" rel="next" href="/marketplace${queryString({ ...filters, cursor: answer.next_cursor })}">Next page</a>` : ''}
</nav>`,
      answer.error ? answer.status : 200,
    );
  });

  app.get('/marketplace/:listingId', options, async (request, reply) => {
    const { listingId } = request.params as { listingId: string };
    const reviewsCursor = (request.query as Record<string, unknown>)['reviews_cursor'];
    const id = encodeURIComponent(listingId);
    const found = await api<Listing>(`/api/v1/listings/${id}`);
    const l = found.data;
    if (!l) return notFound(reply, 'There is no listing with this id, or it was archived.');
    const reviews = await api<Review[]>(
      `/api/v1/listings/${id}/reviews${queryString({
        limit: REVIEWS_PAGE_SIZE,
        cursor: typeof reviewsCursor === 'string' ? reviewsCursor : undefined,
      })}`,
    );
    const c = l.score.components;
    const curl = exampleCurl(l);
    const row = (name: string, value: unknown, about: string) =>
      html`<tr><th scope="row">${name}</th><td>${value === null || value === undefined ? '—' : String(value)}</td><td class="muted">${about}</td></tr>`;
    return page(
      reply,
      { title: l.name, section: 'marketplace', description: l.description.slice(0, 160) },
      html`<p><a href="/marketplace">← Marketplace</a></p>
<div class="listing-head">
  <h1>${l.name}</h1>
  ${l.verified ? html`<span class="badge badge-verified">✓ Verified</span>` : ''}
</div>
<p class="description">${l.description}</p>
${l.tags.length ? html`<ul class="tags" aria-label="Tags">${l.tags.map((t) => html`<li><a href="/marketplace${queryString({ tag: t })}">${t}</a></li>`)}</ul>` : ''}
<dl class="facts">
  <div class="fact"><dt>Price</dt><dd>${priceText(l)}</dd></div>
  <div class="fact"><dt>Crochet Score</dt><dd>${scoreText(l)}</dd></div>
  <div class="fact"><dt>Reviews</dt><dd>${l.review_count}</dd></div>
  <div class="fact"><dt>Seller score</dt><dd>${l.score.seller_score ?? '—'}</dd></div>
  <div class="fact"><dt>Gateway URL</dt><dd><code>${l.gateway_url}</code></dd></div>
  <div class="fact"><dt>Limits</dt><dd>${l.gateway.rate_limit_per_minute === null ? 'no per-minute cap' : `${l.gateway.rate_limit_per_minute} calls/min`} · ${l.gateway.timeout_ms / 1000} s timeout</dd></div>
</dl>
<section aria-labelledby="example-title">
  <div class="example-head"><h2 id="example-title">Call it</h2><button type="button" class="btn btn-small" data-copy="example-curl" hidden>Copy</button></div>
  <pre><code id="example-curl">${curl}</code></pre>
  <p class="muted">${
    l.pricing_model === 'per_call'
      ? html`The first answer is 402 with payment requirements; pay and send the same call again with the proof — see <a href="/docs/payments">Payments</a>. `
      : ''
  }Get an API key in the <a href="/docs/quick-start">Quick Start</a>.</p>
</section>
<div class="detail-grid">
  <section aria-labelledby="score-title">
    <h2 id="score-title">Crochet Score</h2>
    ${
      c
        ? html`<div class="table-scroll"><table><tbody>
      ${row('Score', l.score.value, '0–1000')}
      ${row('Paid calls', c['paid_calls'], 'judged in the window')}
      ${row('Success (lower bound)', c['success_rate_lower_bound'], 'Wilson 95 %')}
      ${row('p95 latency', c['p95_latency_ms'] === null ? null : `${c['p95_latency_ms']} ms`, 'seller’s answer time')}
      ${row('Latency factor', c['latency_factor'], '0..1')}
      ${row('Rating', c['rating_bayesian'], `Bayesian, ${c['reviewers']} reviewers`)}
      ${row('Distinct buyers', c['distinct_buyers'], `buyers factor ${c['buyers_factor']}`)}
      ${row('Evidence weight', c['evidence_weight'], `${c['evidence_calls']} evidence calls`)}
      ${row('Quality', c['quality'], 'weighted factors')}
    </tbody></table></div>
    <p class="muted">Computed ${l.score.computed_at ? dateText(l.score.computed_at) : ''}. <a href="/docs/trust">How the score is made</a>.</p>`
        : html`<p class="muted">Not scored yet: the score job computes it within minutes of publication. <a href="/docs/trust">How the score is made</a>.</p>`
    }
  </section>
  <section aria-labelledby="reviews-title">
    <h2 id="reviews-title">Reviews</h2>
    ${
      reviews.data?.length
        ? html`<ul class="reviews">${reviews.data.map(
            (r) => html`<li class="card review">
        <span class="stars" aria-label="${r.rating} of 5">${stars(r.rating)}</span> <span class="muted">${dateText(r.created_at)}</span>
        ${r.comment ? html`<p>${r.comment}</p>` : ''}
      </li>`,
          )}</ul>`
        : html`<p class="muted">No reviews yet. Buyers of a paid call may review it.</p>`
    }
    ${reviews.next_cursor ? html`<p><a href="/marketplace/${id}${queryString({ reviews_cursor: reviews.next_cursor })}">Older reviews</a></p>` : ''}
  </section>
</div>`,
    );
  });

  // ---- /docs ----------------------------------------------------------------------------------------------------------
  // The pages' paths are known up front; their text once first asked for.
  const slugs = docsPages(catalog, { ...site(), settings: undefined }).map((p) => p.slug);
  let rendered: { pages: DocsPage[]; html: Map<string, Html> } | undefined;
  const docs = () => {
    if (rendered) return rendered;
    const pages = docsPages(catalog, site());
    rendered = { pages, html: renderDocs(pages) };
    return rendered;
  };
  const renderDocs = (pages: DocsPage[]) =>
    new Map(
      pages.map((p) => [
        p.slug,
        html`<div class="docs">
${docsNav(pages, p.slug)}
<article class="docs-body">
  <h1>${p.title}</h1>
  ${p.parts.map((part) => html`${part.heading ? html`<h2>${part.heading}</h2>` : ''}${trusted(linesToHtml(part.lines))}`)}
  ${
    p.slug === ''
      ? html`<h2>Pages</h2><ul>${pages.slice(1).map((q) => html`<li><a href="/docs/${q.slug}">${q.title}</a> — ${q.summary}</li>`)}<li><a href="/docs/api">API Reference</a> — every route, interactive, from the OpenAPI document.</li></ul>
<h2>For machines</h2><ul>
<li><a href="/llms.txt">llms.txt</a> — the summary for language models</li>
<li><a href="/agent-skill">Agent skill</a> (also <a href="/SKILL.md">SKILL.md</a>)</li>
<li><a href="/api/openapi.json">OpenAPI 3.1</a> and the <a href="/docs/api-reference.txt">plain-text API reference</a></li>
<li><a href="/seller-onboarding">Seller onboarding</a>, <a href="/docs/errors">error codes</a>, <a href="/docs/crochet-score">the Crochet Score</a></li>
<li><a href="/.well-known/agent-protocol.json">Agent protocol</a> and <a href="/.well-known/jwks.json">receipt keys</a></li>
</ul>`
      : ''
  }
  ${p.document ? html`<p class="docs-source">The same text for machines: <a href="${p.document}">${p.document}</a></p>` : ''}
</article>
</div>`,
      ]),
    );
  const docsPage = (slug: string) => (_request: FastifyRequest, reply: FastifyReply) => {
    const { pages, html: rendered } = docs();
    const p = pages.find((x) => x.slug === slug)!;
    return page(
      reply,
      { title: p.slug ? p.title : 'Docs', section: 'docs', description: p.summary },
      rendered.get(slug)!,
    );
  };
  app.get('/docs', options, docsPage(''));
  for (const slug of slugs.slice(1)) app.get(`/docs/${slug}`, options, docsPage(slug));

  // ---- /docs/api: Scalar over /api/openapi.json, its bundle served from here ---------------------------------------
  app.get('/docs/api', options, (_request, reply) =>
    reply
      .headers(HARDENING)
      .header('content-security-policy', API_REFERENCE_CSP)
      .header('cache-control', 'no-cache')
      .type('text/html; charset=utf-8')
      .send(
        html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>API Reference · Crochet</title>
<link rel="icon" href="${icon.url}" type="image/svg+xml">
<link rel="stylesheet" href="${css.url}">
<script src="/docs/api/scalar/js/scalar.js" defer></script>
<script src="${apiJs.url}" defer></script>
</head>
<body>
<div id="reference"></div>
<noscript><div class="api-fallback"><h1>API Reference</h1><p>The interactive reference needs JavaScript. The same routes are in the <a href="/docs/api-reference.txt">plain-text API reference</a> and the <a href="/api/openapi.json">OpenAPI document</a>; back to the <a href="/docs">docs</a>.</p></div></noscript>
</body>
</html>
`.value,
      ),
  );
  // ---- /login and /signup: HTML forms over the operator API, leading to /dashboard -----------------------------------
  const authPage = (which: 'login' | 'signup', error?: ApiAnswer<unknown>['error'], email = '') => {
    const login = which === 'login';
    return html`<div class="auth">
  <h1>${login ? 'Log in' : 'Sign up'}</h1>
  <p class="muted">${
    login
      ? 'Operators watch over the agents they run: spend, earnings, limits.'
      : 'Create an operator account to claim the agents you run and set the limits the gateway enforces.'
  }</p>
  <form class="form card" method="post" action="/${which}">
    ${error ? html`<p class="alert" role="alert">${error.message}${error.hint ? ` ${error.hint}` : ''}</p>` : ''}
    <div class="field"><label for="email">Email</label><input id="email" name="email" type="email" autocomplete="${login ? 'username' : 'email'}" required maxlength="320" value="${email}"></div>
    <div class="field"><label for="password">Password</label><input id="password" name="password" type="password" autocomplete="${login ? 'current-password' : 'new-password'}" required ${login ? '' : html`minlength="10" `}maxlength="200">${login ? '' : html`<p class="help">At least 10 characters.</p>`}</div>
    <button class="btn btn-primary" type="submit">${login ? 'Log in' : 'Create account'}</button>
  </form>
  <p>${login ? html`No account yet? <a href="/signup">Sign up</a>` : html`Have an account? <a href="/login">Log in</a>`}</p>
</div>`;
  };
  app.register(async (forms: FastifyInstance) => {
    forms.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) =>
      done(null, Object.fromEntries(new URLSearchParams(body as string))),
    );
    for (const which of ['login', 'signup'] as const) {
      const title = which === 'login' ? 'Log in' : 'Sign up';
      forms.get(`/${which}`, options, (_request, reply) => page(reply, { title, section: which }, authPage(which)));
      forms.post(`/${which}`, options, async (request, reply) => {
        const body = (request.body ?? {}) as Record<string, unknown>;
        const email = typeof body['email'] === 'string' ? body['email'] : '';
        const password = typeof body['password'] === 'string' ? body['password'] : '';
        // The operator API's own sign-in: same limits (for this client's address), same cross-site refusal.
        const res = await app.inject({
          method: 'POST',
          url: `/api/v1/operator/${which}`,
          remoteAddress: request.ip,
          headers: {
            'content-type': 'application/json',
            ...(request.headers.origin ? { origin: request.headers.origin } : {}),
            ...(request.headers['sec-fetch-site'] ? { 'sec-fetch-site': request.headers['sec-fetch-site'] } : {}),
          },
          payload: JSON.stringify({ email, password }),
        });
        reply.header('cache-control', 'no-store');
        if (res.statusCode < 300) {
          return reply
            .code(303)
            .header('set-cookie', res.headers['set-cookie'])
            .header('location', '/dashboard')
            .send();
        }
        const answer = res.json() as ApiAnswer<unknown>;
        return page(reply, { title, section: which }, authPage(which, answer.error, email), res.statusCode);
      });
    }
  });

  app.register(async (scoped: FastifyInstance) => {
    // Scalar's own page (with an inline script) is not used; whatever it serves gets the reference's policy.
    scoped.addHook('onSend', async (_request, reply) => {
      reply
        .headers(HARDENING)
        .header('content-security-policy', API_REFERENCE_CSP)
        .header('cache-control', 'public, max-age=3600');
    });
    await scoped.register(scalarApiReference, {
      routePrefix: '/docs/api/scalar',
      configuration: { url: '/api/openapi.json' },
      logLevel: 'warn',
    });
  });
};
