import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { App, Deps, RouteDoc } from '../app.js';
import {
  renderAgentProtocol,
  renderApiReference,
  renderLlmsTxt,
  renderOpenApi,
  renderSellerOnboarding,
  renderSkill,
  type SiteInfo,
} from '../docs/render.js';

const require = createRequire(import.meta.url);
const ERRORS_MD = readFileSync(require.resolve('@crochet/protocol/docs/errors.md'), 'utf8');
const VERSION = (require('../../package.json') as { version: string }).version;

/** §3.8: the machine-readable surfaces, rendered once (after every route is registered) and served from memory. */
export const docsRoutes = (app: App, { config }: Deps, catalog: readonly RouteDoc[]): void => {
  const site: SiteInfo = { baseUrl: config.publicBaseUrl, version: VERSION };
  let rendered: Record<string, string> | undefined;
  const documents = (): Record<string, string> => {
    rendered ??= {
      openapi: JSON.stringify(renderOpenApi(catalog, site)),
      llms: renderLlmsTxt(catalog, site),
      reference: renderApiReference(catalog, site),
      skill: renderSkill(catalog, site),
      seller: renderSellerOnboarding(catalog, site),
      protocol: JSON.stringify(renderAgentProtocol(catalog, site)),
    };
    return rendered;
  };
  const serve = (url: string, type: string, key: string | (() => string)) =>
    app.get(url, { config: { documented: false } }, async (_request, reply) =>
      reply
        .type(type)
        .header('cache-control', 'public, max-age=300')
        .send(typeof key === 'string' ? documents()[key] : key()),
    );
  const markdown = 'text/markdown; charset=utf-8';
  const text = 'text/plain; charset=utf-8';
  const json = 'application/json; charset=utf-8';
  serve('/api/openapi.json', json, 'openapi');
  serve('/llms.txt', text, 'llms');
  serve('/docs/api-reference.txt', text, 'reference');
  serve('/agent-skill', markdown, 'skill');
  serve('/SKILL.md', markdown, 'skill');
  serve('/seller-onboarding', text, 'seller');
  serve('/.well-known/agent-protocol.json', json, 'protocol');
  serve('/docs/errors', markdown, () => ERRORS_MD);
};
