import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { App } from '../app.js';

const DIR = new URL('../dashboard/', import.meta.url);

/**
 * §3.7: the operator dashboard is static (no build step, no templating of data): the page fetches everything from the
 * operator API with the session cookie. Nothing inline, nothing from another origin — so the policy can forbid both,
 * and Trusted Types turn any string written into an HTML sink into an error instead of a script.
 */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join('; ');

const SECURITY_HEADERS = {
  'content-security-policy': DASHBOARD_CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=()',
};

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

const asset = (body: Buffer, type: string): Asset => ({
  body,
  type,
  etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
});
const read = (name: string) => readFileSync(new URL(name, DIR));

/** The assets, read once; the page names them with their content hash so they can be cached for good. */
const loadAssets = () => {
  const script = asset(read('app.js'), 'text/javascript; charset=utf-8');
  const style = asset(read('app.css'), 'text/css; charset=utf-8');
  const icon = asset(read('icon.svg'), 'image/svg+xml');
  const version = (a: Asset) => a.etag.slice(1, 13);
  const html = read('index.html')
    .toString('utf8')
    .replaceAll('/dashboard/app.js', `/dashboard/app.js?v=${version(script)}`)
    .replaceAll('/dashboard/app.css', `/dashboard/app.css?v=${version(style)}`)
    .replaceAll('/dashboard/icon.svg', `/dashboard/icon.svg?v=${version(icon)}`);
  return { page: asset(Buffer.from(html), 'text/html; charset=utf-8'), script, style, icon };
};

// The page itself revalidates every time (a new deploy shows at once); the assets it names by hash never change.
const PAGE_CACHE = 'no-cache';
const ASSET_CACHE = 'public, max-age=31536000, immutable';

const send = (request: FastifyRequest, reply: FastifyReply, file: Asset, cacheControl: string) => {
  reply.headers(SECURITY_HEADERS).header('cache-control', cacheControl).header('etag', file.etag).type(file.type);
  if (request.headers['if-none-match'] === file.etag) return reply.code(304).send();
  return reply.send(file.body);
};

/** GET /dashboard and its three assets (HEAD comes with each GET). */
export const dashboardRoutes = (app: App): void => {
  const { page, script, style, icon } = loadAssets();
  const options = { config: { documented: false } } as const;
  app.get('/dashboard', options, (request, reply) => send(request, reply, page, PAGE_CACHE));
  app.get('/dashboard/app.js', options, (request, reply) => send(request, reply, script, ASSET_CACHE));
  app.get('/dashboard/app.css', options, (request, reply) => send(request, reply, style, ASSET_CACHE));
  app.get('/dashboard/icon.svg', options, (request, reply) => send(request, reply, icon, ASSET_CACHE));
};
