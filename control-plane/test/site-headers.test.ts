import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';

/**
 * The public pages keep the dashboard's rules (DESIGN §3.10): a strict CSP on every page, only /docs/api relaxed and
 * only as far as its reference needs; their assets are this site's; API strings are text; the sign-in forms are the
 * operator API's, refused cross-site like it.
 */

const ORIGIN = 'http://crochet.test:8080';
let plane: TestPlane;
beforeAll(async () => {
  plane = await startTestControlPlane({ PUBLIC_BASE_URL: ORIGIN });
});
afterAll(() => plane?.stop());

const directives = (csp: string) =>
  new Map(
    csp.split(';').map((d) => {
      const [name, ...values] = d.trim().split(/\s+/);
      return [name, values.join(' ')] as const;
    }),
  );

const form = (path: string, fields: Record<string, string>, headers: Record<string, string> = {}) =>
  fetch(`${plane.url}${path}`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN, ...headers },
    body: new URLSearchParams(fields).toString(),
  });

describe('the public pages', () => {
  it('carry a strict CSP: nothing inline, nothing from elsewhere, Trusted Types, never framed', async () => {
    for (const path of ['/', '/marketplace', '/docs', '/docs/payments', '/login', '/signup']) {
      const res = await fetch(`${plane.url}${path}`);
      expect(res.status, path).toBe(200);
      const csp = res.headers.get('content-security-policy') ?? '';
      const d = directives(csp);
      expect(d.get('script-src'), path).toBe("'self'");
      expect(d.get('style-src'), path).toBe("'self'");
      expect(d.get('frame-ancestors'), path).toBe("'none'");
      expect(d.get('require-trusted-types-for'), path).toBe("'script'");
      expect(csp, path).not.toMatch(/unsafe-inline|unsafe-eval|https?:|data:|\*/);
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      const html = await res.text();
      expect(html, path).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>|\sstyle=|\son[a-z]+=/i);
      for (const [, url] of html.matchAll(/(?:src|href)="(\/site\/[^"]+)"/g)) {
        expect((await fetch(`${plane.url}${url}`)).status, url).toBe(200);
      }
    }
  });

  it('/docs/api relaxes styles only, loads the reference from this site, and stays out of the API documents', async () => {
    const res = await fetch(`${plane.url}/docs/api`);
    const d = directives(res.headers.get('content-security-policy') ?? '');
    expect(d.get('script-src')).toBe("'self'");
    expect(d.get('connect-src')).toBe("'self'");
    expect(d.get('style-src')).toBe("'self' 'unsafe-inline'");
    const html = await res.text();
    const scripts = [...html.matchAll(/<script([^>]*)>/g)].map((m) => m[1]!);
    expect(scripts.length).toBe(2);
    for (const attributes of scripts) {
      const src = /src="([^"]+)"/.exec(attributes)?.[1];
      expect(src).toMatch(/^\//);
      const js = await fetch(`${plane.url}${src}`);
      expect(js.status, src).toBe(200);
      expect(js.headers.get('content-type')).toContain('javascript');
    }
    const openapi = (await (await fetch(`${plane.url}/api/openapi.json`)).json()) as { paths: object };
    expect(Object.keys(openapi.paths).filter((p) => !p.startsWith('/api/'))).toEqual([]);
  });

  it('inserts listing text as text', async () => {
    const { apiKey } = await plane.register('seller');
    const name = '<script>alert(1)</script>"\'&';
    const { listing } = await plane.createListing(apiKey, { name, description: '<img src=x onerror=alert(1)>' });
    const page = await (await fetch(`${plane.url}/marketplace/${listing.id}`)).text();
    expect(page).toContain('&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;');
    expect(page).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(page).not.toContain('<img src=x');
    const list = await (await fetch(`${plane.url}/marketplace?q=alert`)).text();
    expect(list).not.toContain('<script>alert');
  });

  it('signs up and logs in through the operator API, with its cookie and a redirect to the dashboard', async () => {
    const signup = await form('/signup', { email: 'lin@example.com', password: 'long enough pass' });
    expect(signup.status).toBe(303);
    expect(signup.headers.get('location')).toBe('/dashboard');
    expect(signup.headers.get('set-cookie')).toMatch(/HttpOnly/i);
    const session = await fetch(`${plane.url}/api/v1/operator/session`, {
      headers: { cookie: signup.headers.get('set-cookie')!.split(';')[0]! },
    });
    expect(session.status).toBe(200);

    const wrong = await form('/login', { email: 'lin@example.com', password: 'not the password' });
    expect(wrong.status).toBe(401);
    const page = await wrong.text();
    expect(page).toContain('class="alert"');
    expect(page).toContain('value="lin@example.com"');
    expect(wrong.headers.get('set-cookie')).toBeNull();

    const taken = await form('/signup', { email: 'lin@example.com', password: 'long enough pass' });
    expect(taken.status).toBe(409);

    const login = await form('/login', { email: 'lin@example.com', password: 'long enough pass' });
    expect(login.status).toBe(303);
    expect(login.headers.get('set-cookie')).toMatch(/crochet_session=/);
  });

  it('refuses a sign-in form posted from another site, as the operator API does', async () => {
    const res = await form(
      '/login',
      { email: 'lin@example.com', password: 'long enough pass' },
      { origin: 'https://evil.example' },
    );
    expect(res.status).toBe(403);
    expect(res.headers.get('set-cookie')).toBeNull();
  });
});
