import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readableText } from '../src/site/markup.js';
import { startTestControlPlane, type TestPlane } from './helpers.js';

/**
 * One source, two renderings (DESIGN §3.10): the docs pages for people and the documents for machines are made of the
 * same text. Every line an agent reads in llms.txt, the skill, seller onboarding and the score formula shows on a docs
 * page, word for word (markup aside); a section added to a text document without a page fails here.
 */

const PAGES = [
  '/docs',
  '/docs/quick-start',
  '/docs/how-it-works',
  '/docs/for-agents',
  '/docs/for-humans',
  '/docs/payments',
  '/docs/trust',
  '/docs/seller-integration',
  '/docs/agent-skill',
];

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" };
/** What a reader sees of a page's main content: tags dropped, entities decoded. */
const pageText = (page: string): string => {
  const main = /<main[^>]*>([\s\S]*)<\/main>/.exec(page)?.[1] ?? '';
  return main.replace(/<[^>]+>/g, ' ').replace(/&(amp|lt|gt|quot|#39);/g, (_m, e: string) => ENTITIES[e]!);
};

let plane: TestPlane;
const pages = new Map<string, string>();
const get = async (path: string) => {
  const res = await fetch(`${plane.url}${path}`);
  expect(res.status, path).toBe(200);
  return res.text();
};

beforeAll(async () => {
  plane = await startTestControlPlane();
  for (const path of PAGES) pages.set(path, readableText(pageText(await get(path))));
});
afterAll(() => plane?.stop());

/** The lines of a document that carry text (not setext underlines or table rules). */
const textLines = (doc: string): string[] =>
  doc
    .split('\n')
    .filter((line, i, all) => !/^=+$/.test(line) && !/^=+$/.test(all[i + 1] ?? ''))
    .map(readableText)
    .filter((line) => line !== '');

const missingFrom = (doc: string, text: string): string[] => textLines(doc).filter((line) => !text.includes(line));

describe('the docs pages render the machine-readable documents', () => {
  it('serves every page as HTML under the site policy', async () => {
    for (const path of PAGES) {
      const res = await fetch(`${plane.url}${path}`);
      expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    }
  });

  it.each([
    ['/agent-skill', '/docs/agent-skill'],
    ['/seller-onboarding', '/docs/seller-integration'],
    ['/docs/crochet-score', '/docs/trust'],
  ])('%s: every line is on %s', async (document, page) => {
    expect(missingFrom(await get(document), pages.get(page)!)).toEqual([]);
  });

  it('llms.txt: every line before its list of documents and routes is on some docs page', async () => {
    const llms = await get('/llms.txt');
    const prose = llms.slice(0, llms.indexOf('## Documents')).replace(/^# Crochet$/m, '');
    const all = [...pages.values()].join('');
    expect(missingFrom(prose, all)).toEqual([]);
  });

  it('the skill lists the same routes as the API reference page source', async () => {
    const skill = await get('/agent-skill');
    const openapi = JSON.parse(await get('/api/openapi.json')) as { paths: Record<string, unknown> };
    for (const path of Object.keys(openapi.paths)) {
      expect(skill).toContain(path.replace(/\{([^}]+)\}/g, ':$1'));
    }
    // The reference's own assets are not API routes.
    expect(
      Object.keys(openapi.paths).some((p) => p.startsWith('/docs') || p === '/' || p.startsWith('/marketplace')),
    ).toBe(false);
  });

  it('links between docs pages resolve', async () => {
    const raw = await Promise.all(PAGES.map((p) => get(p)));
    const links = new Set(raw.flatMap((page) => [...page.matchAll(/href="(\/[^"#?]*)/g)].map((m) => m[1]!)));
    expect(links.size).toBeGreaterThan(20);
    for (const link of links) {
      const res = await fetch(`${plane.url}${link}`);
      expect(res.status, link).toBe(200);
    }
  });
});
