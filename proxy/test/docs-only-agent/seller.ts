/**
 * The docs-only agent's seller (issue 14): an HTTP server whose signature check is written from the published spec
 * (/signature-test-vectors.json) alone, and checked against the published vectors before it serves. Like agent.ts it
 * imports nothing of Crochet: node built-ins only.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What /signature-test-vectors.json publishes (the fields this seller reads). */
export interface PublishedSignatureSpec {
  spec: string;
  algorithm: string;
  key: string;
  timestamp_unit: string;
  canonical: string;
  header_format: string;
  tolerance_seconds: number;
  vectors: {
    name: string;
    secrets: string[];
    timestamp: number;
    request_id: string;
    listing_id: string;
    body: string;
    body_sha256: string;
    canonical: string;
    expected_header: string;
  }[];
}

/** Checks a request's signature with the secrets of the listing it names. */
export type SignatureCheck = (
  headers: IncomingHttpHeaders,
  body: Buffer,
  secretsOf: (listingId: string) => readonly string[],
  nowSeconds?: number,
) => { ok: true; listingId: string } | { ok: false; reason: string };

const fail = (what: string): never => {
  throw new Error(`the published signature spec does not say ${what}`);
};

/**
 * A verifier built from the spec as published: the HMAC algorithm, the header names the spec text gives, the order
 * of the canonical string's parts, the `v1=` entries of the signature header, the key as a UTF-8 string, the
 * timestamp unit and the tolerance. Throws when the spec says something this seller cannot follow.
 */
export const signatureCheckFromSpec = (published: PublishedSignatureSpec): SignatureCheck => {
  const hmac = /^HMAC-SHA(256|384|512)$/i.exec(published.algorithm) ?? fail('an HMAC algorithm it names');
  const digest = `sha${hmac[1]}`;
  if (!/UTF-8 string/i.test(published.key) || !/not base64/i.test(published.key)) fail('how the key is used');
  if (!/seconds/i.test(published.timestamp_unit)) fail('the timestamp unit in seconds');
  // Header names the spec text shows ("X-Crochet-Timestamp: …"); each canonical part is the header ending in it.
  const headerNames = [...published.spec.matchAll(/\b(X-[A-Za-z0-9-]+):/g)].map((m) => m[1]!);
  const headerFor = (part: string) =>
    headerNames.find((h) => h.toLowerCase().replace(/-/g, '_').endsWith(`_${part.toLowerCase()}`)) ??
    fail(`which header carries ${part}`);
  const separator = /[^a-z0-9_]/i.exec(published.canonical)?.[0] ?? fail('how the canonical string is joined');
  const parts = published.canonical.split(separator);
  const partHeaders = parts.map((part) => headerFor(part).toLowerCase());
  const signatureHeader = (
    headerNames.find((h) => /signature$/i.test(h)) ?? fail('the signature header')
  ).toLowerCase();
  const version = /^([a-z0-9]+)=/i.exec(published.header_format)?.[1] ?? fail('the signature entry version');
  const bodyPart = parts.findIndex((p) => /sha256$/i.test(p));
  const timestampPart = parts.findIndex((p) => /timestamp/i.test(p));
  const listingPart = parts.findIndex((p) => /listing/i.test(p));
  if (bodyPart < 0 || timestampPart < 0 || listingPart < 0) fail('the body hash, timestamp and listing parts');

  const check: SignatureCheck = (headers, body, secretsOf, nowSeconds = Math.floor(Date.now() / 1000)) => {
    const values = partHeaders.map((name) => headers[name]);
    if (values.some((v) => typeof v !== 'string')) return { ok: false, reason: 'missing signed headers' };
    const strings = values as string[];
    const bodyHash = createHash('sha256').update(body).digest('hex');
    if (strings[bodyPart] !== bodyHash) return { ok: false, reason: 'body hash differs from the body received' };
    const timestamp = Number(strings[timestampPart]);
    if (!/^[0-9]+$/.test(strings[timestampPart]!) || Math.abs(nowSeconds - timestamp) > published.tolerance_seconds) {
      return { ok: false, reason: 'timestamp outside the tolerance' };
    }
    const header = headers[signatureHeader];
    if (typeof header !== 'string') return { ok: false, reason: 'no signature header' };
    const given = header
      .split(',')
      .map((entry) => entry.trim())
      .filter((entry) => entry.startsWith(`${version}=`))
      .map((entry) => Buffer.from(entry.slice(version.length + 1), 'hex'));
    const canonical = strings.join(separator);
    const listingId = strings[listingPart]!;
    for (const secret of secretsOf(listingId)) {
      const expected = createHmac(digest, Buffer.from(secret, 'utf8')).update(canonical, 'utf8').digest();
      if (given.some((g) => g.length === expected.length && timingSafeEqual(g, expected)))
        return { ok: true, listingId };
    }
    return { ok: false, reason: 'no signature entry matches' };
  };

  // The published vectors, each at its own timestamp, with each of its secrets alone.
  for (const v of published.vectors) {
    const headers: IncomingHttpHeaders = { [signatureHeader]: v.expected_header };
    const byPart: Record<string, string> = {
      timestamp: String(v.timestamp),
      request_id: v.request_id,
      listing_id: v.listing_id,
      body_sha256: v.body_sha256,
    };
    parts.forEach((part, i) => {
      headers[partHeaders[i]!] = byPart[part] ?? fail(`the value of ${part} in the vectors`);
    });
    for (const secret of v.secrets) {
      const result = check(headers, Buffer.from(v.body, 'utf8'), () => [secret], v.timestamp);
      if (!result.ok) throw new Error(`signature check fails test vector "${v.name}": ${result.reason}`);
    }
    if (check(headers, Buffer.from(`${v.body} `, 'utf8'), () => v.secrets, v.timestamp).ok) {
      throw new Error(`signature check accepts a changed body in "${v.name}"`);
    }
  }
  return check;
};

/** One request the seller received and what its signature check said. */
export interface SellerRequest {
  path: string;
  listingId: string | undefined;
  signature: 'valid' | string;
}

export interface DocsOnlySeller {
  url: string;
  requests: SellerRequest[];
  /** The listing's signing secret, once the listing exists (shown once at creation). */
  addSecret(listingId: string, secret: string): void;
  close(): Promise<void>;
}

/**
 * The seller's server: `/free` echoes, `/paid` answers a paid result; a request whose signature does not check out
 * is refused with 401 (and recorded either way).
 */
export const startDocsOnlySeller = async (check: SignatureCheck): Promise<DocsOnlySeller> => {
  const secrets = new Map<string, string[]>();
  const requests: SellerRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const result = check(req.headers, body, (listingId) => secrets.get(listingId) ?? []);
      const path = req.url ?? '/';
      requests.push({
        path,
        listingId: result.ok ? result.listingId : undefined,
        signature: result.ok ? 'valid' : result.reason,
      });
      if (!result.ok) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: result.reason }));
        return;
      }
      let input: unknown = null;
      try {
        input = JSON.parse(body.toString('utf8'));
      } catch {}
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify(
          path.startsWith('/paid') ? { answer: 'forty-two', paid: true, input } : { echo: input, paid: false },
        ),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    addSecret: (listingId, secret) => secrets.set(listingId, [...(secrets.get(listingId) ?? []), secret]),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};
