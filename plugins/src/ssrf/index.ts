/**
 * SSRF guard for seller endpoint URLs (DESIGN §3.2): checked when a URL is saved (control plane, `checkEndpointUrl`)
 * and again at connect time in the gateway (`createGuardedAgent` / `guardedLookup`), so DNS changes after saving
 * (rebinding) cannot reach loopback, private, link-local or metadata addresses.
 *
 * How a connect-time refusal surfaces: the connector fails with a `SsrfBlockedError` (`code === SSRF_BLOCKED_CODE`).
 * undici's `request()` / `dispatcher.request()` reject with that very error object, so `err.code` is
 * `ERR_CROCHET_SSRF_BLOCKED`. undici's `fetch()` wraps it as `TypeError('fetch failed')` with it as `err.cause`.
 * `isSsrfBlockedError()` walks the `cause` chain and covers both.
 */
import dns from 'node:dns';
import net from 'node:net';
import ipaddr from 'ipaddr.js';
import { Agent, buildConnector } from 'undici';

export const SSRF_BLOCKED_CODE = 'ERR_CROCHET_SSRF_BLOCKED';

const MAX_URL_LENGTH = 2048;
const LOOKUP_TIMEOUT_MS = 5000;
const DEFAULT_CONNECT_TIMEOUT_MS = 5000;

/** The error a guarded connection fails with. `address` is the refused IP; `hostname` what was being connected to. */
export class SsrfBlockedError extends Error {
  readonly code = SSRF_BLOCKED_CODE;
  readonly hostname: string;
  readonly address: string;

  constructor(hostname: string, address: string) {
    super(
      hostname === address
        ? `connection to forbidden address ${address} refused`
        : `connection to ${hostname} refused: it resolves to forbidden address ${address}`,
    );
    this.name = 'SsrfBlockedError';
    this.hostname = hostname;
    this.address = address;
  }
}

/** True when `err`, or any error in its `cause` chain (as undici's fetch wraps it), is an SSRF refusal. */
export function isSsrfBlockedError(err: unknown): boolean {
  let current: unknown = err;
  for (let depth = 0; depth < 8 && typeof current === 'object' && current !== null; depth++) {
    if ((current as { code?: unknown }).code === SSRF_BLOCKED_CODE) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function isForbiddenV4(addr: ipaddr.IPv4): boolean {
  return addr.range() !== 'unicast';
}

/** 2000::/3 is the only IPv6 space allocated for global unicast; anything else has no business being a seller. */
const GLOBAL_UNICAST_V6 = ipaddr.IPv6.parseCIDR('2000::/3');
/** IPv4-compatible (deprecated, ::a.b.c.d). '::' and '::1' fall in here too but are classified before. */
const V4_COMPATIBLE_V6 = ipaddr.IPv6.parseCIDR('::/96');

function embeddedV4(addr: ipaddr.IPv6): ipaddr.IPv4 {
  const p = addr.parts;
  const hi = p[6] ?? 0;
  const lo = p[7] ?? 0;
  return new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
}

function isForbiddenV6(addr: ipaddr.IPv6): boolean {
  switch (addr.range()) {
    case 'unicast':
      // ipaddr calls everything unclassified 'unicast'; only 2000::/3 is really global, and ::a.b.c.d is not.
      return addr.match(V4_COMPATIBLE_V6) || !addr.match(GLOBAL_UNICAST_V6);
    case 'ipv4Mapped': // ::ffff:a.b.c.d
    case 'rfc6145': // ::ffff:0:a.b.c.d (SIIT)
      return isForbiddenV4(embeddedV4(addr));
    case 'rfc6052': {
      // 64:ff9b::/96 is the well-known NAT64 prefix: judge the embedded IPv4. 64:ff9b:1::/48 is local-use: forbidden.
      const p = addr.parts;
      const wellKnown = p[0] === 0x64 && p[1] === 0xff9b && p[2] === 0 && p[3] === 0 && p[4] === 0 && p[5] === 0;
      return wellKnown ? isForbiddenV4(embeddedV4(addr)) : true;
    }
    default:
      // loopback, unspecified, linkLocal, uniqueLocal (incl. fd00:ec2::254), multicast, 6to4, teredo, reserved,
      // benchmarking, discard, orchid, site-local, ... Tunnelled addresses (6to4/teredo) are refused outright: their
      // relays can reach IPv4 space we cannot see, and no legitimate seller endpoint needs them.
      return true;
  }
}

/**
 * True unless `ip` is a public unicast address. Anything that is not a well-formed IP literal (including the
 * non-canonical IPv4 forms URL parsers accept, like '2130706433' or '0x7f.1') is forbidden too: fail closed.
 * Brackets and an IPv6 zone id are tolerated.
 */
export function isForbiddenAddress(ip: string): boolean {
  const candidate = stripBrackets(ip.trim());
  if (net.isIP(candidate) === 0) return true;
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.parse(candidate);
  } catch {
    return true;
  }
  return addr.kind() === 'ipv4' ? isForbiddenV4(addr as ipaddr.IPv4) : isForbiddenV6(addr as ipaddr.IPv6);
}

export type EndpointUrlCheck =
  | { ok: true; url: URL; scheme: 'https' | 'http'; host: string; port: number; addresses: string[] }
  | {
      ok: false;
      reason: 'invalid' | 'scheme' | 'credentials' | 'forbidden_address' | 'unresolvable';
      message: string;
    };

export interface EndpointPolicy {
  /** Development only: allows plain http and private/loopback addresses. */
  allowPrivate: boolean;
  /** Resolves a hostname to IP strings. Defaults to `dns.promises.lookup(host, { all: true, verbatim: true })`. */
  lookup?: (hostname: string) => Promise<string[]>;
}

async function defaultLookup(hostname: string): Promise<string[]> {
  const results = await dns.promises.lookup(hostname, { all: true, verbatim: true });
  return results.map((r) => r.address);
}

async function resolveWithTimeout(
  lookup: (hostname: string) => Promise<string[]>,
  hostname: string,
): Promise<string[] | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), LOOKUP_TIMEOUT_MS);
  });
  try {
    return await Promise.race([lookup(hostname), timeout]);
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Validates a seller's private endpoint URL at save time. On success `url` is the normalized URL without fragment,
 * `host` the hostname (IPv6 without brackets), `port` the explicit or default port and `addresses` what it resolved to.
 * Messages never echo the URL (it is a secret-ish value), only the offending address.
 */
export async function checkEndpointUrl(raw: string, policy: EndpointPolicy): Promise<EndpointUrlCheck> {
  if (raw.length > MAX_URL_LENGTH) {
    return { ok: false, reason: 'invalid', message: `URL is longer than ${MAX_URL_LENGTH} characters` };
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, reason: 'invalid', message: 'not a valid absolute URL' };
  }
  if (url.href.length > MAX_URL_LENGTH) {
    return { ok: false, reason: 'invalid', message: `URL is longer than ${MAX_URL_LENGTH} characters` };
  }

  let scheme: 'https' | 'http';
  if (url.protocol === 'https:') scheme = 'https';
  else if (url.protocol === 'http:') scheme = 'http';
  else return { ok: false, reason: 'scheme', message: 'URL scheme must be https' };
  if (scheme === 'http' && !policy.allowPrivate) {
    return { ok: false, reason: 'scheme', message: 'URL scheme must be https (plain http is development-only)' };
  }

  if (url.username !== '' || url.password !== '') {
    return { ok: false, reason: 'credentials', message: 'URL must not contain credentials (user:pass@)' };
  }
  url.hash = '';

  const host = stripBrackets(url.hostname);
  if (host === '') return { ok: false, reason: 'invalid', message: 'URL has no host' };
  const port = url.port === '' ? (scheme === 'https' ? 443 : 80) : Number(url.port);

  let addresses: string[];
  if (net.isIP(host) !== 0) {
    addresses = [host];
  } else {
    const resolved = await resolveWithTimeout(policy.lookup ?? defaultLookup, host);
    if (resolved === null || resolved.length === 0) {
      return { ok: false, reason: 'unresolvable', message: `host ${host} could not be resolved` };
    }
    addresses = resolved;
  }

  if (!policy.allowPrivate) {
    const forbidden = addresses.find((a) => isForbiddenAddress(a));
    if (forbidden !== undefined) {
      return {
        ok: false,
        reason: 'forbidden_address',
        message:
          forbidden === host
            ? `address ${forbidden} is not a public address`
            : `host ${host} resolves to ${forbidden}, which is not a public address`,
      };
    }
  }

  return { ok: true, url, scheme, host, port, addresses };
}

type LookupAllCallback = (err: NodeJS.ErrnoException | null, addresses: dns.LookupAddress[]) => void;
type LookupOneCallback = (err: NodeJS.ErrnoException | null, address: string, family: number) => void;

/**
 * A `dns.lookup` replacement for `net.connect` / undici's `connect: { lookup }`: resolves with all addresses and
 * refuses the connection (SsrfBlockedError) if ANY of them is forbidden — no partial use of a mixed answer, which is
 * also what `checkEndpointUrl` does. Honours both `all: true` and `all: false` callback shapes, and numeric `family`.
 * With `allowPrivate` it is plain `dns.lookup`.
 */
export function guardedLookup(policy: { allowPrivate: boolean }): typeof dns.lookup {
  if (policy.allowPrivate) return dns.lookup;

  function lookup(
    hostname: string,
    optionsOrCallback: number | dns.LookupOptions | LookupOneCallback | undefined,
    maybeCallback?: LookupOneCallback | LookupAllCallback,
  ): void {
    const callback = typeof optionsOrCallback === 'function' ? optionsOrCallback : maybeCallback;
    if (typeof callback !== 'function') throw new TypeError('guardedLookup: callback must be a function');
    const options: dns.LookupOptions =
      typeof optionsOrCallback === 'number'
        ? { family: optionsOrCallback }
        : typeof optionsOrCallback === 'object' && optionsOrCallback !== null
          ? optionsOrCallback
          : {};
    const wantAll = options.all === true;

    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) {
        if (wantAll) (callback as LookupAllCallback)(err, []);
        else (callback as LookupOneCallback)(err, '', 0);
        return;
      }
      const forbidden = addresses.find((a) => isForbiddenAddress(a.address));
      const first = addresses[0];
      let failure: NodeJS.ErrnoException | null = null;
      if (forbidden !== undefined) {
        failure = new SsrfBlockedError(hostname, forbidden.address);
      } else if (first === undefined) {
        failure = Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), {
          code: 'ENOTFOUND',
          hostname,
        });
      }
      if (wantAll) {
        if (failure) (callback as LookupAllCallback)(failure, []);
        else (callback as LookupAllCallback)(null, addresses);
      } else if (failure || first === undefined) {
        (callback as LookupOneCallback)(failure, '', 0);
      } else {
        (callback as LookupOneCallback)(null, first.address, first.family);
      }
    });
  }

  return lookup as unknown as typeof dns.lookup;
}

/**
 * An undici Agent for forwarding to sellers. Host names go through `guardedLookup`; IP-literal hosts (for which
 * net/tls skip the lookup) are checked in the connector itself. Either way the connection fails with
 * `SsrfBlockedError` (code `ERR_CROCHET_SSRF_BLOCKED`) before any socket is opened to a forbidden address.
 */
export function createGuardedAgent(options: {
  allowPrivate: boolean;
  connectTimeoutMs?: number;
  keepAliveTimeoutMs?: number;
  connections?: number;
}): Agent {
  const baseConnect = buildConnector({
    timeout: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    lookup: guardedLookup({ allowPrivate: options.allowPrivate }),
  });

  const connect: buildConnector.connector = (connectOptions, callback) => {
    if (!options.allowPrivate) {
      const host = stripBrackets(connectOptions.hostname);
      if (net.isIP(host) !== 0 && isForbiddenAddress(host)) {
        const err = new SsrfBlockedError(host, host);
        // Asynchronous like a real connect failure, so undici's bookkeeping sees the usual ordering.
        process.nextTick(() => callback(err, null));
        return;
      }
    }
    baseConnect(connectOptions, callback);
  };

  return new Agent({
    connect,
    ...(options.keepAliveTimeoutMs !== undefined ? { keepAliveTimeout: options.keepAliveTimeoutMs } : {}),
    ...(options.connections !== undefined ? { connections: options.connections } : {}),
  });
}
