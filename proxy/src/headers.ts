import type { IncomingHttpHeaders } from 'node:http';

/**
 * Header hygiene both ways (DESIGN §3.3). Hop-by-hop headers (RFC 9110 §7.6.1) never cross the gateway; the buyer's
 * credentials, cookies and payment proofs never reach the seller; nothing a buyer sends as X-Crochet-* survives (the
 * gateway sets its own); nothing the seller answers can set cookies on, or reveal, the gateway's or its own origin.
 */
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
];

/**
 * An upstream's response headers without the hop-by-hop ones (and those its `Connection` names): the connection to
 * the client is the proxy's own, with its own keep-alive and timeouts.
 */
export const withoutHopByHop = (headers: IncomingHttpHeaders): IncomingHttpHeaders => {
  const listed = (headers.connection ?? '').toLowerCase().split(',');
  const out: IncomingHttpHeaders = {};
  for (const name in headers) {
    if (!HOP_BY_HOP.includes(name) && !listed.some((h) => h.trim() === name)) out[name] = headers[name];
  }
  return out;
};

const REQUEST_DROP = new Set([
  ...HOP_BY_HOP,
  'host',
  'content-length',
  'expect',
  'authorization',
  'cookie',
  'payment-signature',
  'x-payment',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-real-ip',
]);

// x402's headers are the gateway's to send (v2 and v1 names): a seller's PAYMENT-RESPONSE would tell the buyer of a
// settlement that never happened.
const RESPONSE_DROP = new Set([
  ...HOP_BY_HOP,
  'set-cookie',
  'location',
  'content-location',
  'alt-svc',
  'payment-response',
  'payment-required',
  'x-payment-response',
  'x-payment-required',
]);

const isCrochet = (name: string): boolean => name.startsWith('x-crochet-');

/**
 * The header names a `Connection` header lists (dropped with it), or null when it lists none beyond the hop-by-hop
 * ones (the usual `keep-alive` or `close`): no set made per message for those.
 */
const connectionListed = (value: string | string[] | undefined): ReadonlySet<string> | null => {
  if (value === undefined) return null;
  const lower = String(value).toLowerCase();
  if (lower === 'keep-alive' || lower === 'close' || lower === '') return null;
  return new Set(lower.split(',').map((h) => h.trim()));
};

/** The buyer's headers as the seller may see them (names are lowercase, as Node gives them). */
export const sellerRequestHeaders = (
  incoming: IncomingHttpHeaders,
  own: Record<string, string>,
): IncomingHttpHeaders => {
  const listed = connectionListed(incoming.connection);
  const out: IncomingHttpHeaders = {};
  for (const name in incoming) {
    if (REQUEST_DROP.has(name) || isCrochet(name) || listed?.has(name)) continue;
    out[name] = incoming[name];
  }
  return Object.assign(out, own);
};

/** The seller's headers as the buyer may see them, plus the gateway's own (`own`, then `more` over it). */
export const buyerResponseHeaders = (
  upstream: IncomingHttpHeaders,
  own: Record<string, string>,
  more: Record<string, string> = {},
): Record<string, string | string[]> => {
  const listed = connectionListed(upstream.connection);
  const out: Record<string, string | string[]> = {};
  for (const name in upstream) {
    const value = upstream[name];
    if (value === undefined || RESPONSE_DROP.has(name) || isCrochet(name) || listed?.has(name)) continue;
    out[name] = value;
  }
  return Object.assign(out, own, more);
};
