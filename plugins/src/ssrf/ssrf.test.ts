import dns from 'node:dns';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fetch, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkEndpointUrl,
  createGuardedAgent,
  type EndpointPolicy,
  guardedLookup,
  isForbiddenAddress,
  isSsrfBlockedError,
  SSRF_BLOCKED_CODE,
  SsrfBlockedError,
} from './index.js';

const strict: EndpointPolicy = { allowPrivate: false };
const dev: EndpointPolicy = { allowPrivate: true };

function fakeLookup(table: Record<string, string[]>): (hostname: string) => Promise<string[]> {
  return async (hostname) => {
    const hit = table[hostname];
    if (hit) return hit;
    throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
  };
}

describe('isForbiddenAddress', () => {
  it.each([
    '127.0.0.1',
    '127.255.255.254',
    '10.0.0.1',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '100.100.100.200',
    '0.0.0.0',
    '255.255.255.255',
    '224.0.0.1',
    '192.0.2.1',
    '198.18.0.1',
    '240.0.0.1',
    '::',
    '::1',
    '[::1]',
    'fe80::1',
    'fe80::1%eth0',
    'fd00::1',
    'fd00:ec2::254',
    'fc00::1',
    'ff02::1',
    'fec0::1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::ffff:169.254.169.254',
    '::ffff:0:10.0.0.1',
    '::127.0.0.1',
    '64:ff9b::10.0.0.1',
    '64:ff9b::127.0.0.1',
    '64:ff9b:1::1',
    '2002:7f00:1::1',
    '2002:5db8:d822::1',
    '2001:0:4136:e378:8000:63bf:3fff:fdd2',
    '2001:db8::1',
    '2001:2::1',
    '100::1',
    '4000::1',
    'not-an-ip',
    '2130706433',
    '0177.0.0.1',
    '',
  ])('forbids %s', (ip) => {
    expect(isForbiddenAddress(ip)).toBe(true);
  });

  it.each([
    '93.184.216.34',
    '8.8.8.8',
    '1.1.1.1',
    '172.32.0.1',
    '100.128.0.1',
    '2606:4700::1',
    '[2606:4700::1]',
    '2a00:1450:4001:80b::200e',
    '::ffff:93.184.216.34',
    '64:ff9b::93.184.216.34',
  ])('allows %s', (ip) => {
    expect(isForbiddenAddress(ip)).toBe(false);
  });
});

describe('checkEndpointUrl', () => {
  it.each([
    ['http://93.184.216.34', 'scheme'],
    ['https://127.0.0.1', 'forbidden_address'],
    ['https://localhost', 'forbidden_address'],
    ['https://169.254.169.254/latest/meta-data', 'forbidden_address'],
    ['https://[::ffff:127.0.0.1]/', 'forbidden_address'],
    ['https://2130706433/', 'forbidden_address'],
    ['https://0177.0.0.1/', 'forbidden_address'],
    ['https://0x7f.0.0.1/', 'forbidden_address'],
    ['https://[::1]/', 'forbidden_address'],
    ['https://10.0.0.1', 'forbidden_address'],
    ['https://192.168.1.1', 'forbidden_address'],
    ['https://172.16.0.1', 'forbidden_address'],
    ['https://100.64.0.1', 'forbidden_address'],
    ['https://[fe80::1]/', 'forbidden_address'],
    ['https://[fd00::1]/', 'forbidden_address'],
    ['https://[fd00:ec2::254]/', 'forbidden_address'],
    ['https://100.100.100.200/', 'forbidden_address'],
    ['https://0.0.0.0/', 'forbidden_address'],
    ['https://user:pass@93.184.216.34/', 'credentials'],
    ['https://user@93.184.216.34/', 'credentials'],
    ['ftp://x', 'scheme'],
    ['file:///etc/passwd', 'scheme'],
    ['javascript:alert(1)', 'scheme'],
    ['not a url', 'invalid'],
    ['', 'invalid'],
    ['/relative/path', 'invalid'],
    [`https://93.184.216.34/${'a'.repeat(2100)}`, 'invalid'],
  ])('blocks %s (%s)', async (raw, reason) => {
    const result = await checkEndpointUrl(raw, strict);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.reason).toBe(reason);
      expect(result.message).toBeTypeOf('string');
    }
  });

  it('blocks a public-looking name that resolves to a private address', async () => {
    const lookup = fakeLookup({ 'api.seller.example': ['10.0.0.5'] });
    const result = await checkEndpointUrl('https://api.seller.example/run', { allowPrivate: false, lookup });
    expect(result).toMatchObject({ ok: false, reason: 'forbidden_address' });
  });

  it('blocks a name resolving to mixed public and private addresses', async () => {
    const lookup = fakeLookup({ 'mixed.example': ['93.184.216.34', '127.0.0.1'] });
    const result = await checkEndpointUrl('https://mixed.example/', { allowPrivate: false, lookup });
    expect(result).toMatchObject({ ok: false, reason: 'forbidden_address' });
  });

  it('blocks a name resolving to a v6 metadata address', async () => {
    const lookup = fakeLookup({ 'meta.example': ['fd00:ec2::254'] });
    const result = await checkEndpointUrl('https://meta.example/', { allowPrivate: false, lookup });
    expect(result).toMatchObject({ ok: false, reason: 'forbidden_address' });
  });

  it('reports a lookup failure as unresolvable', async () => {
    const lookup = fakeLookup({});
    const result = await checkEndpointUrl('https://nope.example/', { allowPrivate: false, lookup });
    expect(result).toMatchObject({ ok: false, reason: 'unresolvable' });
  });

  it('reports an empty lookup answer as unresolvable', async () => {
    const lookup = fakeLookup({ 'empty.example': [] });
    const result = await checkEndpointUrl('https://empty.example/', { allowPrivate: false, lookup });
    expect(result).toMatchObject({ ok: false, reason: 'unresolvable' });
  });

  it('allows a public IPv4 literal and drops the fragment', async () => {
    const result = await checkEndpointUrl('https://93.184.216.34/path?q=1#frag', strict);
    expect(result.ok).toBe(true);
    if (result.ok) {
      expect(result.scheme).toBe('https');
      expect(result.host).toBe('93.184.216.34');
      expect(result.port).toBe(443);
      expect(result.addresses).toEqual(['93.184.216.34']);
      expect(result.url.href).toBe('https://93.184.216.34/path?q=1');
    }
  });

  it('allows a public IPv6 literal, host without brackets', async () => {
    const result = await checkEndpointUrl('https://[2606:4700::1]:8443/', strict);
    expect(result).toMatchObject({ ok: true, host: '2606:4700::1', port: 8443, addresses: ['2606:4700::1'] });
  });

  it('allows a name resolving only to public addresses', async () => {
    const lookup = fakeLookup({ 'api.seller.example': ['93.184.216.34', '2606:4700::1'] });
    const result = await checkEndpointUrl('https://API.Seller.example/v1', { allowPrivate: false, lookup });
    expect(result).toMatchObject({
      ok: true,
      host: 'api.seller.example',
      addresses: ['93.184.216.34', '2606:4700::1'],
    });
  });

  it('with allowPrivate allows http and loopback', async () => {
    const a = await checkEndpointUrl('http://127.0.0.1:3000/x', dev);
    expect(a).toMatchObject({ ok: true, scheme: 'http', host: '127.0.0.1', port: 3000 });
    const b = await checkEndpointUrl('https://localhost', dev);
    expect(b.ok).toBe(true);
    if (b.ok) {
      expect(b.port).toBe(443);
      expect(b.addresses.length).toBeGreaterThan(0);
      for (const address of b.addresses) expect(isForbiddenAddress(address)).toBe(true);
    }
  });

  it('with allowPrivate still rejects credentials and other schemes', async () => {
    expect(await checkEndpointUrl('http://u:p@127.0.0.1/', dev)).toMatchObject({ ok: false, reason: 'credentials' });
    expect(await checkEndpointUrl('ftp://127.0.0.1/', dev)).toMatchObject({ ok: false, reason: 'scheme' });
  });
});

describe('guardedLookup', () => {
  const lookup = guardedLookup({ allowPrivate: false });

  it('refuses localhost with all: false', async () => {
    const err = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
      lookup('localhost', { all: false }, (e) => resolve(e));
    });
    expect(err).toBeInstanceOf(SsrfBlockedError);
    expect(err?.code).toBe(SSRF_BLOCKED_CODE);
  });

  it('refuses localhost with all: true and with the (hostname, callback) shape', async () => {
    const errAll = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
      lookup('localhost', { all: true }, (e) => resolve(e));
    });
    expect(errAll?.code).toBe(SSRF_BLOCKED_CODE);
    const errShort = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
      lookup('localhost', (e) => resolve(e));
    });
    expect(errShort?.code).toBe(SSRF_BLOCKED_CODE);
  });

  it('passes resolution errors through unchanged', async () => {
    const err = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
      lookup('does-not-exist.invalid', { all: true }, (e) => resolve(e));
    });
    expect(err).not.toBeNull();
    expect(err?.code).not.toBe(SSRF_BLOCKED_CODE);
  });

  it('is plain dns.lookup when private addresses are allowed', () => {
    expect(guardedLookup({ allowPrivate: true })).toBe(dns.lookup);
  });
});

describe('createGuardedAgent', () => {
  let server: http.Server;
  let port = 0;
  let connections = 0;

  beforeAll(async () => {
    server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    });
    server.on('connection', () => {
      connections++;
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  async function requestError(url: string, dispatcher: ReturnType<typeof createGuardedAgent>): Promise<unknown> {
    try {
      const res = await request(url, { dispatcher });
      await res.body.dump();
    } catch (err) {
      return err;
    }
    return null;
  }

  it('blocks an IP-literal loopback host; request() rejects with err.code', async () => {
    const agent = createGuardedAgent({ allowPrivate: false });
    try {
      const err = await requestError(`http://127.0.0.1:${port}/`, agent);
      expect(err).toBeInstanceOf(SsrfBlockedError);
      expect((err as NodeJS.ErrnoException).code).toBe(SSRF_BLOCKED_CODE);
      expect(isSsrfBlockedError(err)).toBe(true);
    } finally {
      await agent.close();
    }
  });

  it('blocks a name resolving to loopback; request() rejects with err.code', async () => {
    const agent = createGuardedAgent({ allowPrivate: false });
    try {
      const err = await requestError(`http://localhost:${port}/`, agent);
      expect((err as NodeJS.ErrnoException | null)?.code).toBe(SSRF_BLOCKED_CODE);
      expect(isSsrfBlockedError(err)).toBe(true);
    } finally {
      await agent.close();
    }
  });

  it('blocks IPv6 and non-canonical literals too', async () => {
    const agent = createGuardedAgent({ allowPrivate: false });
    try {
      for (const url of [
        `http://[::1]:${port}/`,
        `http://[::ffff:127.0.0.1]:${port}/`,
        `http://2130706433:${port}/`,
        `https://169.254.169.254/latest/meta-data`,
      ]) {
        const err = await requestError(url, agent);
        expect((err as NodeJS.ErrnoException | null)?.code, url).toBe(SSRF_BLOCKED_CODE);
      }
    } finally {
      await agent.close();
    }
  });

  it('no blocked request ever reached the server', () => {
    expect(connections).toBe(0);
  });

  it('with fetch() the refusal is err.cause', async () => {
    const agent = createGuardedAgent({ allowPrivate: false });
    try {
      const err = await fetch(`http://localhost:${port}/`, { dispatcher: agent }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(TypeError);
      expect((err as { cause?: NodeJS.ErrnoException }).cause?.code).toBe(SSRF_BLOCKED_CODE);
      expect(isSsrfBlockedError(err)).toBe(true);
    } finally {
      await agent.close();
    }
  });

  it('with allowPrivate connects to 127.0.0.1 and localhost', async () => {
    const agent = createGuardedAgent({ allowPrivate: true, connectTimeoutMs: 2000, keepAliveTimeoutMs: 1000 });
    try {
      for (const url of [`http://127.0.0.1:${port}/`, `http://localhost:${port}/`]) {
        const res = await request(url, { dispatcher: agent });
        expect(res.statusCode, url).toBe(200);
        expect(await res.body.text()).toBe('ok');
      }
    } finally {
      await agent.close();
    }
  });
});
