import dns from 'node:dns';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';
import { expectError, listingBody } from './listing-support.js';

/**
 * §3.2: with private endpoints not allowed (production), a private endpoint URL must be https and must not resolve
 * to loopback, private, link-local or metadata addresses. Checked when saved, on create and on PUT /endpoint.
 */

/** Names the injected resolver answers; anything else goes to the system resolver (localhost → loopback). */
const RESOLVES: Record<string, string[]> = {
  'internal.example': ['10.0.0.8'],
  'mixed.example': ['93.184.216.34', '10.0.0.8'],
  'metadata.example': ['169.254.169.254'],
  'v6-loopback.example': ['::1'],
  'public.example': ['93.184.216.34'],
  'empty.example': [],
};

const INVALID = [
  ['http://93.184.216.34/x', 'plain http'],
  ['https://user:pass@93.184.216.34/x', 'credentials'],
  ['https://user@93.184.216.34/x', 'user name only'],
  ['ftp://93.184.216.34/x', 'another scheme'],
  ['file:///etc/passwd', 'file scheme'],
  ['not a url', 'not a URL'],
] as const;

const FORBIDDEN = [
  ['https://127.0.0.1/', 'IPv4 loopback'],
  ['https://localhost/', 'localhost'],
  ['https://169.254.169.254/latest/meta-data/', 'cloud metadata'],
  ['https://[::ffff:127.0.0.1]/', 'IPv4-mapped IPv6 loopback'],
  ['https://2130706433/', 'decimal IPv4 loopback'],
  ['https://0177.0.0.1/', 'octal IPv4 loopback'],
  ['https://0x7f.1/', 'hex short IPv4 loopback'],
  ['https://[::1]/', 'IPv6 loopback'],
  ['https://0.0.0.0/', 'unspecified'],
  ['https://10.1.2.3/', 'private 10/8'],
  ['https://192.168.0.10:8443/', 'private 192.168/16'],
  ['https://172.16.5.4/', 'private 172.16/12'],
  ['https://100.64.0.1/', 'carrier-grade NAT'],
  ['https://[fd00:ec2::254]/', 'unique-local IPv6 (AWS metadata)'],
  ['https://[fe80::1]/', 'link-local IPv6'],
  ['https://internal.example/', 'a name resolving to 10.0.0.8'],
  ['https://mixed.example/', 'a name with one private address among public ones'],
  ['https://metadata.example/', 'a name resolving to the metadata address'],
  ['https://v6-loopback.example/', 'a name resolving to ::1'],
] as const;

const UNRESOLVABLE = [
  ['https://broken.example/', 'lookup throws'],
  ['https://empty.example/', 'lookup returns no address'],
] as const;

describe('private endpoint URL SSRF rules when saved', () => {
  let plane: TestPlane;
  let seller: { apiKey: string; agentId: string };
  let listing: any;
  const lookups: string[] = [];

  beforeAll(async () => {
    plane = await startTestControlPlane(
      { CROCHET_ALLOW_PRIVATE_ENDPOINTS: '0' },
      {
        lookup: async (host) => {
          lookups.push(host);
          if (host === 'broken.example') throw Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' });
          const known = RESOLVES[host];
          if (known) return known;
          const results = await dns.promises.lookup(host, { all: true, verbatim: true });
          return results.map((r) => r.address);
        },
      },
    );
    seller = await plane.register('seller');
    ({ listing } = await plane.createListing(seller.apiKey, { private_endpoint_url: 'https://93.184.216.34/start' }));
  });
  afterAll(async () => {
    await plane?.stop();
  });
  beforeEach(() => {
    lookups.length = 0;
  });

  const create = async (url: string) =>
    plane.call('POST', '/api/v1/listings', {
      key: seller.apiKey,
      body: await listingBody(plane, seller.apiKey, { private_endpoint_url: url }),
    });
  const put = (url: string) =>
    plane.call('PUT', `/api/v1/listings/${listing.id}/endpoint`, {
      key: seller.apiKey,
      body: { private_endpoint_url: url },
    });
  const listingCount = async (): Promise<number> => {
    const { rows } = await plane.deps.pool.query('SELECT count(*)::int AS n FROM listings');
    return rows[0].n;
  };
  const savedUrl = async (): Promise<string> => {
    const { rows } = await plane.deps.pool.query('SELECT endpoint_url_enc FROM listings WHERE id = $1', [listing.id]);
    return plane.deps.box.open(rows[0].endpoint_url_enc, `listing:${listing.id}:endpoint_url`);
  };

  describe('on create', () => {
    it.each(INVALID)('refuses %s (%s) with ENDPOINT_URL_INVALID', async (url) => {
      const before = await listingCount();
      expectError(await create(url), 400, 'ENDPOINT_URL_INVALID');
      expect(await listingCount()).toBe(before);
    });

    it.each(FORBIDDEN)('refuses %s (%s) with ENDPOINT_URL_FORBIDDEN', async (url) => {
      const before = await listingCount();
      expectError(await create(url), 400, 'ENDPOINT_URL_FORBIDDEN');
      expect(await listingCount()).toBe(before);
    });

    it.each(UNRESOLVABLE)('refuses %s (%s) with ENDPOINT_UNRESOLVABLE', async (url) => {
      const before = await listingCount();
      expectError(await create(url), 400, 'ENDPOINT_UNRESOLVABLE');
      expect(await listingCount()).toBe(before);
    });

    it('accepts a public IP literal without any DNS lookup', async () => {
      const res = await create('https://93.184.216.34/x');
      expect(res.status, res.text).toBe(201);
      expect(lookups).toEqual([]);
      const meta = await plane.call('GET', `/api/v1/listings/${res.body.data.listing.id}/endpoint`, {
        key: seller.apiKey,
      });
      expect(meta.body.data).toMatchObject({ scheme: 'https', host: '93.184.216.34' });
    });

    it('accepts a name that resolves only to public addresses, through the lookup', async () => {
      const res = await create('https://public.example/v1');
      expect(res.status, res.text).toBe(201);
      expect(lookups).toEqual(['public.example']);
    });

    it('refuses forbidden literals before any DNS lookup', async () => {
      expectError(await create('https://169.254.169.254/'), 400, 'ENDPOINT_URL_FORBIDDEN');
      expectError(await create('https://2130706433/'), 400, 'ENDPOINT_URL_FORBIDDEN');
      expect(lookups).toEqual([]);
    });

    it('does not echo the URL in the error, only the offending address', async () => {
      const res = await create('https://internal.example/secret-path?token=abc123');
      expectError(res, 400, 'ENDPOINT_URL_FORBIDDEN');
      expect(res.text).not.toContain('secret-path');
      expect(res.text).not.toContain('abc123');
      const creds = await create('https://admin:s3cr3t@93.184.216.34/');
      expectError(creds, 400, 'ENDPOINT_URL_INVALID');
      expect(creds.text).not.toContain('s3cr3t');
    });
  });

  describe('on PUT /endpoint', () => {
    it.each(INVALID)('refuses %s (%s) with ENDPOINT_URL_INVALID and keeps the saved URL', async (url) => {
      expectError(await put(url), 400, 'ENDPOINT_URL_INVALID');
      expect(await savedUrl()).toBe('https://93.184.216.34/start');
    });

    it.each(FORBIDDEN)('refuses %s (%s) with ENDPOINT_URL_FORBIDDEN and keeps the saved URL', async (url) => {
      expectError(await put(url), 400, 'ENDPOINT_URL_FORBIDDEN');
      expect(await savedUrl()).toBe('https://93.184.216.34/start');
    });

    it.each(UNRESOLVABLE)('refuses %s (%s) with ENDPOINT_UNRESOLVABLE and keeps the saved URL', async (url) => {
      expectError(await put(url), 400, 'ENDPOINT_UNRESOLVABLE');
      expect(await savedUrl()).toBe('https://93.184.216.34/start');
    });

    it('keeps the metadata unchanged after a refusal', async () => {
      const before = await plane.call('GET', `/api/v1/listings/${listing.id}/endpoint`, { key: seller.apiKey });
      expectError(await put('https://127.0.0.1/'), 400, 'ENDPOINT_URL_FORBIDDEN');
      const after = await plane.call('GET', `/api/v1/listings/${listing.id}/endpoint`, { key: seller.apiKey });
      expect(after.body.data.host).toBe('93.184.216.34');
      expect(after.body.data.updated_at).toBe(before.body.data.updated_at);
    });

    it('accepts a public IP literal without any DNS lookup, and a public name', async () => {
      const literal = await put('https://93.184.216.34/x');
      expect(literal.status, literal.text).toBe(200);
      expect(lookups).toEqual([]);
      expect(literal.body.data).toMatchObject({ scheme: 'https', host: '93.184.216.34' });

      const named = await put('https://public.example:8443/y');
      expect(named.status, named.text).toBe(200);
      expect(named.body.data).toMatchObject({ scheme: 'https', host: 'public.example:8443' });
      expect(lookups).toEqual(['public.example']);
      expect(await savedUrl()).toBe('https://public.example:8443/y');

      const back = await put('https://93.184.216.34/start');
      expect(back.status, back.text).toBe(200);
    });
  });
});
