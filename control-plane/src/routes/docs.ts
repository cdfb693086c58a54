import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { publicReceiptJwks } from '@crochet/plugins';
import { Type } from 'typebox';
import type { App, Deps, RouteDoc } from '../app.js';
import {
  renderAgentProtocol,
  renderApiReference,
  renderLlmsTxt,
  renderOpenApi,
  renderSellerOnboarding,
  renderSignatureTestVectors,
  renderSkill,
  type SiteInfo,
} from '../docs/render.js';
import { measurePowHashesPerSecond, serverSettings } from '../docs/settings.js';
import { ListingIdSchema } from '../schemas.js';
import { siteRoutes } from './site.js';

const require = createRequire(import.meta.url);

/** The data plane's route (proxy/src/gateway.ts), described in the catalog's terms. */
const GATEWAY_ROUTE: RouteDoc = {
  method: 'POST',
  url: '/api/v1/gateway/:listingId',
  auth: 'api_key',
  schema: {
    operationId: 'callGateway',
    summary: "Call a listing: the body is forwarded, signed, to the seller and the seller's answer streams back",
    description:
      'Any method works; a sub-path after the listing id and the query string are passed on. The answer is the ' +
      "seller's status, headers and body, plus X-Crochet-Request-Id and RateLimit-* headers. A per_call listing " +
      'answers 402 with payment requirements until the call is paid.',
    tags: ['gateway'],
    params: Type.Object({ listingId: ListingIdSchema }),
    body: Type.Unknown({ description: "whatever the listing's input_schema describes" }),
    response: { 200: Type.Unknown({ description: "the seller's answer" }) },
  },
  errors: [
    'LISTING_NOT_FOUND',
    'LISTING_PAUSED',
    'LISTING_ARCHIVED',
    'AGENT_PAUSED',
    'SPEND_CAP_EXCEEDED',
    'RATE_LIMITED',
    'PAYMENT_REQUIRED',
    'PAYMENT_PENDING',
    'PAYMENT_ALREADY_USED',
    'PAYMENT_ROUTE_MINIMUM_NOT_MET',
    'PAYMENT_INVALID',
    'PAYMENT_NETWORK_UNSUPPORTED',
    'PAYMENT_UNCONFIRMED',
    'PAYMENT_TX_FAILED',
    'PAYMENT_UNDERPAID',
    'PAYMENT_WRONG_RECIPIENT',
    'PAYMENT_WRONG_ASSET',
    'PAYMENT_MEMO_MISMATCH',
    'PAYMENT_SENDER_MISMATCH',
    'PAYMENT_REQUEST_EXPIRED',
    'PAYMENT_RELAY_FAILED',
    'PAYMENT_SETTLEMENT_FAILED',
    'PAYMENT_VERIFIER_UNAVAILABLE',
    'PAYMENT_PROOF_EXPIRED',
    'PAYMENT_RAILS_UNAVAILABLE',
    'PAYLOAD_TOO_LARGE',
    'VALIDATION_FAILED',
    'UPSTREAM_TIMEOUT',
    'UPSTREAM_UNAVAILABLE',
    'UPSTREAM_FORBIDDEN',
    'STATE_UNAVAILABLE',
  ],
};
const ERRORS_MD = readFileSync(require.resolve('@crochet/protocol/docs/errors.md'), 'utf8');
const VERSION = (require('../../package.json') as { version: string }).version;

/** §3.8: the machine-readable surfaces, rendered once (after every route is registered) and served from memory. */
export const docsRoutes = (app: App, { config, money }: Deps, catalog: readonly RouteDoc[]): void => {
  // The documents state this server's settings: its fee and the networks it can pay out on (a treasury key each).
  const site: SiteInfo = {
    baseUrl: config.publicBaseUrl,
    version: VERSION,
    feeBps: config.feeBps,
    payoutNetworks: [...(money?.treasuries.keys() ?? [])],
  };
  // The gateway route is served by the proxies, not by this app; it is documented beside the routes that are.
  const all = [...catalog, GATEWAY_ROUTE];
  let rendered: Record<string, string> | undefined;
  // The proof-of-work cost is measured once, on first use (~0.35 s), so the documents state this server's.
  let withSettings: SiteInfo | undefined;
  const measuredSite = (): SiteInfo =>
    (withSettings ??= { ...site, settings: serverSettings(config, measurePowHashesPerSecond()) });
  const documents = (): Record<string, string> => {
    if (rendered) return rendered;
    const measured = measuredSite();
    rendered = {
      openapi: JSON.stringify(renderOpenApi(all, measured)),
      llms: renderLlmsTxt(all, measured),
      reference: renderApiReference(all, measured),
      skill: renderSkill(all, measured),
      seller: renderSellerOnboarding(all, measured),
      protocol: JSON.stringify(renderAgentProtocol(all, measured)),
      vectors: JSON.stringify(renderSignatureTestVectors(measured)),
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
  serve('/signature-test-vectors.json', json, 'vectors');
  serve('/docs/errors', markdown, () => ERRORS_MD);
  // §3.4: the keys receipts are signed with, current and previous (kept until what they signed expires). Cached
  // briefly: a verifier that meets an unknown kid fetches again.
  const jwks = JSON.stringify(publicReceiptJwks(config.receiptKeys));
  serve('/.well-known/jwks.json', 'application/jwk-set+json', () => jwks);
  // §3.10: the same documents for people, beside the pages that browse the marketplace.
  siteRoutes(app, all, measuredSite);
};
