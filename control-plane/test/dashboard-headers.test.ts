import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';

/**
 * The dashboard is static and must stay safe to serve: a strict CSP (nothing inline, nothing from elsewhere, never
 * framed), no sniffing, and a script that never hands text to an HTML parser. The browser test
 * (proxy/test/dashboard-browser.test.ts) shows it working; this one keeps the rules from eroding.
 */

const source = (name: string) => readFileSync(new URL(`../src/dashboard/${name}`, import.meta.url), 'utf8');

let plane: TestPlane;
beforeAll(async () => {
  plane = await startTestControlPlane();
});
afterAll(() => plane.stop());

const get = (path: string, headers: Record<string, string> = {}) => fetch(`${plane.url}${path}`, { headers });

describe('GET /dashboard', () => {
  it('serves the page with a strict Content-Security-Policy and the usual hardening headers', async () => {
    const res = await get('/dashboard');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    const csp = res.headers.get('content-security-policy') ?? '';
    const directives = new Map(
      csp.split(';').map((d) => {
        const [name, ...values] = d.trim().split(/\s+/);
        return [name, values.join(' ')] as const;
      }),
    );
    expect(directives.get('default-src')).toBe("'self'");
    expect(directives.get('script-src')).toBe("'self'");
    expect(directives.get('style-src')).toBe("'self'");
    expect(directives.get('frame-ancestors')).toBe("'none'");
    expect(directives.get('object-src')).toBe("'none'");
    expect(directives.get('base-uri')).toBe("'none'");
    expect(directives.get('require-trusted-types-for')).toBe("'script'");
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|https?:|data:|\*/);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
  });

  it('serves the assets the page names, with their types, cached for good under their content hash', async () => {
    const html = await (await get('/dashboard')).text();
    const assets = [...html.matchAll(/(?:src|href)="(\/dashboard\/[^"]+)"/g)].map((m) => m[1]!);
    expect(assets.filter((a) => a.includes('?v=')).sort()).toEqual([
      expect.stringMatching(/^\/dashboard\/app\.css\?v=[\w-]{12}$/),
      expect.stringMatching(/^\/dashboard\/app\.js\?v=[\w-]{12}$/),
      expect.stringMatching(/^\/dashboard\/icon\.svg\?v=[\w-]{12}$/),
      expect.stringMatching(/^\/dashboard\/icon\.svg\?v=[\w-]{12}$/),
    ]);
    const types: Record<string, string> = {
      'app.js': 'text/javascript; charset=utf-8',
      'app.css': 'text/css; charset=utf-8',
      'icon.svg': 'image/svg+xml',
    };
    for (const path of new Set(assets.filter((a) => a.includes('?v=')))) {
      const res = await get(path);
      const name = path.slice('/dashboard/'.length, path.indexOf('?'));
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type'), path).toBe(types[name]);
      expect(res.headers.get('cache-control'), path).toBe('public, max-age=31536000, immutable');
      expect(res.headers.get('x-content-type-options'), path).toBe('nosniff');
      expect(res.headers.get('content-security-policy'), path).toContain("default-src 'self'");
      expect(await res.text()).toBe(source(name));
    }
  });

  it('answers 304 to a revalidation of an unchanged page', async () => {
    const first = await get('/dashboard');
    const etag = first.headers.get('etag');
    expect(etag).toMatch(/^"[\w-]+"$/);
    const again = await get('/dashboard', { 'if-none-match': etag! });
    expect(again.status).toBe(304);
    expect(again.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
  });

  it('is not part of the agents API documents', async () => {
    const openapi = (await (await get('/api/openapi.json')).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(openapi.paths).filter((p) => p.startsWith('/dashboard'))).toEqual([]);
  });
});

describe('the dashboard sources', () => {
  it('never give text to an HTML parser or evaluate strings as code', () => {
    const script = source('app.js');
    for (const sink of [
      'innerHTML',
      'outerHTML',
      'insertAdjacentHTML',
      'document.write',
      'createContextualFragment',
      'DOMParser',
      'srcdoc',
      'eval(',
      'new Function',
      'setAttribute(`on',
      "setAttribute('on",
    ]) {
      expect(script, sink).not.toContain(sink);
    }
    // Timers take functions, never strings of code.
    expect(script).not.toMatch(/set(Timeout|Interval)\(\s*['"`]/);
  });

  it('keep app.js plain JavaScript whose JSDoc types hold under strict checking with the DOM library', () => {
    const file = fileURLToPath(new URL('../src/dashboard/app.js', import.meta.url));
    const program = ts.createProgram([file], {
      allowJs: true,
      checkJs: true,
      noEmit: true,
      strict: true,
      noUncheckedIndexedAccess: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      lib: ['lib.es2023.d.ts', 'lib.dom.d.ts', 'lib.dom.iterable.d.ts'],
      types: [],
      skipLibCheck: true,
    });
    const problems = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    expect(problems).toEqual([]);
  }, 30_000);

  it('have nothing inline and load nothing from another origin', () => {
    const html = source('index.html');
    for (const tag of html.matchAll(/<script\b[^>]*>/g)) expect(tag[0]).toMatch(/\ssrc="\/dashboard\//);
    expect(html).not.toMatch(/<style\b/);
    expect(html).not.toMatch(/\sstyle=/);
    expect(html).not.toMatch(/\son[a-z]+=/);
    for (const name of ['index.html', 'app.js', 'app.css']) {
      expect(source(name), name).not.toMatch(/(?:https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}\//i);
      expect(source(name), name).not.toMatch(/@import|url\(\s*['"]?https?:/);
    }
  });
});
