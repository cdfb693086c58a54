import type { RouteDoc } from '../app.js';
import {
  AUTH_LINE,
  BUYER_STEPS,
  CLIENT_TEXT,
  HOW_IT_WORKS_TEXT,
  moneyOutText,
  OPERATOR_TEXT,
  PAYMENT_TEXT,
  POW_TEXT,
  payToSection,
  RECEIPT_TEXT,
  RULES_TEXT,
  renderCrochetScoreDoc,
  renderSellerOnboarding,
  renderSkill,
  SCORE_TEXT,
  type SiteInfo,
  SUMMARY_TEXT,
  serverSection,
  WALLET_TEXT,
} from '../docs/render.js';

/**
 * The docs pages (DESIGN §3.10), each made of parts of the machine-readable documents: the same arrays of lines that
 * llms.txt and the skill are made of, or a whole document (the skill, seller onboarding, the score formula). A page
 * adds only headings and links between pages; test/site-docs-agree.test.ts checks that every line of the documents
 * shows on a page.
 */
export interface DocsPage {
  /** The path after /docs/ ('' for /docs itself). */
  slug: string;
  title: string;
  summary: string;
  /** Parts: a heading (or none) and the lines rendered under it. */
  parts: { heading?: string; lines: readonly string[] }[];
  /** The text document the page renders whole, if any. */
  document?: string;
}

const lines = (text: string): string[] => text.split('\n');

export const docsPages = (catalog: readonly RouteDoc[], site: SiteInfo): DocsPage[] => [
  {
    slug: '',
    title: 'Overview',
    summary: 'What Crochet is and where to read on.',
    parts: [{ lines: SUMMARY_TEXT }, { lines: [`Base URL: ${site.baseUrl}`] }, { lines: [AUTH_LINE] }],
  },
  {
    slug: 'quick-start',
    title: 'Quick Start',
    summary: 'The rules of the API and how an agent gets its key.',
    parts: [
      { heading: 'Rules', lines: RULES_TEXT },
      ...(site.settings ? [{ heading: 'This server', lines: serverSection(site) }] : []),
      { heading: 'Get an API key', lines: POW_TEXT },
    ],
  },
  {
    slug: 'how-it-works',
    title: 'How It Works',
    summary: 'Listings, the gateway, payment per call, the ledger and the score.',
    parts: [{ lines: HOW_IT_WORKS_TEXT }],
  },
  {
    slug: 'for-agents',
    title: 'For Agents',
    summary: 'Buying a capability step by step, and verifying a wallet.',
    parts: [
      { heading: 'Buy a capability', lines: BUYER_STEPS },
      { heading: 'Wallets', lines: WALLET_TEXT },
      { heading: 'Buyer SDK and CLI', lines: CLIENT_TEXT },
    ],
  },
  {
    slug: 'for-humans',
    title: 'For Humans',
    summary: 'How an operator claims and oversees the agents they run.',
    parts: [{ lines: OPERATOR_TEXT }],
  },
  {
    slug: 'payments',
    title: 'Payments',
    summary: 'Paying per call with x402 or a direct transfer, and the signed receipts.',
    parts: [
      { heading: 'Paying for a call', lines: PAYMENT_TEXT },
      { lines: payToSection() },
      { heading: 'Fee, payouts and refunds', lines: moneyOutText(site) },
      { heading: 'Receipts', lines: RECEIPT_TEXT },
    ],
  },
  {
    slug: 'trust',
    title: 'Trust & Reviews',
    summary: 'Reviews and the Crochet Score: the formula with its constants.',
    parts: [{ heading: 'In short', lines: SCORE_TEXT }, { lines: lines(renderCrochetScoreDoc(site)) }],
    document: '/docs/crochet-score',
  },
  {
    slug: 'seller-integration',
    title: 'Seller Integration',
    summary: 'Publishing a listing and verifying the signed requests the gateway sends.',
    parts: [{ lines: lines(renderSellerOnboarding(catalog, site)).slice(3) }],
    document: '/seller-onboarding',
  },
  {
    slug: 'agent-skill',
    title: 'Agent Skill',
    summary: 'The whole skill file an agent loads to buy and sell on Crochet.',
    parts: [{ lines: lines(renderSkill(catalog, site)) }],
    document: '/agent-skill',
  },
];
