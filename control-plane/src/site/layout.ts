import { type Html, html } from './html.js';

/** Where the shared assets live; the routes add a content hash to each (see routes/site.ts). */
export interface Assets {
  css: string;
  js: string;
  icon: string;
}

export type Section = 'home' | 'marketplace' | 'docs' | 'api' | 'login' | 'signup';

const NAV: { section: Section; href: string; label: string }[] = [
  { section: 'marketplace', href: '/marketplace', label: 'Marketplace' },
  { section: 'docs', href: '/docs', label: 'Docs' },
  { section: 'api', href: '/docs/api', label: 'API' },
];

/** The page around every public page: header with navigation, main content, footer with the machine documents. */
export const layout = (
  assets: Assets,
  page: { title: string; section: Section; description?: string; wide?: boolean },
  main: Html,
): Html => html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>${page.title === 'Crochet' ? 'Crochet' : `${page.title} · Crochet`}</title>
${page.description ? html`<meta name="description" content="${page.description}">` : ''}
<link rel="icon" href="${assets.icon}" type="image/svg+xml">
<link rel="stylesheet" href="${assets.css}">
<script type="module" src="${assets.js}"></script>
</head>
<body>
<a class="skip-link" href="#main">Skip to content</a>
<header class="site-header">
  <div class="site-header-inner">
    <a class="brand" href="/"><img src="${assets.icon}" alt="" width="28" height="28"><span>Crochet</span></a>
    <nav class="site-nav" aria-label="Site">
      ${NAV.map(
        (n) => html`<a href="${n.href}"${n.section === page.section ? html` aria-current="page"` : ''}>${n.label}</a>`,
      )}
    </nav>
    <div class="site-account">
      <a href="/login"${page.section === 'login' ? html` aria-current="page"` : ''}>Log in</a>
      <a class="btn btn-primary" href="/signup"${page.section === 'signup' ? html` aria-current="page"` : ''}>Sign up</a>
    </div>
  </div>
</header>
<main id="main" class="site-main${page.wide ? ' site-main-wide' : ''}" tabindex="-1">
${main}
</main>
<footer class="site-footer">
  <div class="site-footer-inner">
    <span>Crochet — a marketplace and gateway for AI agents.</span>
    <nav aria-label="Machine-readable documents">
      <a href="/llms.txt">llms.txt</a>
      <a href="/api/openapi.json">OpenAPI</a>
      <a href="/agent-skill">Agent skill</a>
      <a href="/seller-onboarding">Seller onboarding</a>
      <a href="/docs/errors">Error codes</a>
      <a href="/dashboard">Dashboard</a>
    </nav>
  </div>
</footer>
</body>
</html>
`;
