/**
 * Seller-side verifier for the gateway's request signature (DESIGN §3.3), for sellers' own servers:
 * `verifyCrochetRequest` is a plain function for any framework, `crochetVerifier` wraps it as a Fastify plugin.
 *
 * Denials are values (`{ ok: false, reason }`); only misconfiguration throws. The signing primitives come from
 * `@crochet/protocol` so there is one definition of the canonical string.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { canonicalString, SIGNATURE_HEADERS, SIGNATURE_TOLERANCE_SECONDS } from '@crochet/protocol';
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify';

export type VerifyFailure =
  | 'missing_headers'
  | 'bad_timestamp'
  | 'timestamp_out_of_tolerance'
  | 'body_hash_mismatch'
  | 'bad_signature'
  | 'replayed';

export type VerifyResult =
  | { ok: true; requestId: string; listingId: string; timestamp: number; test: boolean }
  | { ok: false; reason: VerifyFailure; message: string };

/** What a verified request tells the seller's handler. `test` is not covered by the signature (DESIGN §3.3). */
export type CrochetRequestInfo = { requestId: string; listingId: string; timestamp: number; test: boolean };

export interface ReplayCache {
  /** true when first seen (and remembers it until expiresAtMs) */
  remember(requestId: string, expiresAtMs: number): boolean;
}

const DEFAULT_REPLAY_CACHE_ENTRIES_MAX = 100_000;

/**
 * In-memory replay cache with a size bound (evict oldest/expired). Per process: a seller running several instances
 * behind a load balancer needs a shared cache implementing `ReplayCache` to catch a replay sent to another instance.
 * When full, the oldest live entry is evicted, so the bound trades memory for replay protection under extreme load.
 */
export function createMemoryReplayCache(options?: { maxEntries?: number }): ReplayCache {
  const entriesMax = options?.maxEntries ?? DEFAULT_REPLAY_CACHE_ENTRIES_MAX;
  if (!Number.isSafeInteger(entriesMax) || entriesMax < 1) {
    throw new TypeError(`maxEntries must be a positive integer, got ${entriesMax}`);
  }
  // A Map iterates in insertion order; re-inserting moves an id to the end, so the first entry is always the oldest.
  const expiresAtMsById = new Map<string, number>();
  return {
    remember(requestId, expiresAtMs) {
      const nowMs = Date.now();
      const knownUntilMs = expiresAtMsById.get(requestId);
      if (knownUntilMs !== undefined && knownUntilMs > nowMs) return false;
      expiresAtMsById.delete(requestId);
      // Entries expire roughly in insertion order (the gateway's clock moves forward), so sweeping from the head
      // keeps the map small without a timer.
      for (const [id, untilMs] of expiresAtMsById) {
        if (untilMs > nowMs) break;
        expiresAtMsById.delete(id);
      }
      while (expiresAtMsById.size >= entriesMax) {
        const oldest = expiresAtMsById.keys().next();
        if (oldest.done) break;
        expiresAtMsById.delete(oldest.value);
      }
      expiresAtMsById.set(requestId, expiresAtMs);
      return true;
    },
  };
}

export interface VerifyOptions {
  /** Current and previous secret during a rotation overlap. */
  secrets: readonly string[];
  /** Default 300 (`SIGNATURE_TOLERANCE_SECONDS`). */
  toleranceSeconds?: number;
  /** The seller's clock; default `Date.now()`. */
  nowMs?: number;
  /** Without one, a captured request can be replayed within the tolerance window. */
  replayCache?: ReplayCache;
}

type HeaderRecord = Record<string, string | string[] | undefined>;

const TIMESTAMP_PATTERN = /^\d{1,12}$/;
const SIGNATURE_V1_PREFIX = 'v1=';
const SHA256_HEX_PATTERN = /^[0-9a-f]{64}$/i;

const deny = (reason: VerifyFailure, message: string): VerifyResult => ({ ok: false, reason, message });

/** A single-valued header; repeated values (an array) count as absent rather than guessing which one was signed. */
function singleHeader(headers: HeaderRecord, name: string): string | undefined {
  const value = headers[name];
  const single = Array.isArray(value) ? (value.length === 1 ? value[0] : undefined) : value;
  return single === undefined || single === '' ? undefined : single;
}

/** X-Crochet-Signature as one comma-separated list; repeated headers are concatenated, as HTTP allows for lists. */
function signatureList(headers: HeaderRecord): string {
  const value = headers[SIGNATURE_HEADERS.signature];
  return (Array.isArray(value) ? value.join(',') : (value ?? '')).trim();
}

/** Every `v1=` digest in the list. Unknown versions and malformed entries are skipped, never thrown on. */
function signatureV1Digests(list: string): Buffer[] {
  const digests: Buffer[] = [];
  for (const raw of list.split(',')) {
    const entry = raw.trim();
    if (!entry.startsWith(SIGNATURE_V1_PREFIX)) continue;
    const hex = entry.slice(SIGNATURE_V1_PREFIX.length);
    // Buffer.from(…, 'hex') silently stops at the first bad character; only a full 32-byte digest is comparable.
    if (SHA256_HEX_PATTERN.test(hex)) digests.push(Buffer.from(hex, 'hex'));
  }
  return digests;
}

/**
 * Checks X-Crochet-Timestamp within tolerance, recomputes sha256 of the exact raw body bytes and compares with
 * X-Crochet-Body-SHA256, recomputes the HMAC for each secret and compares (timingSafeEqual on equal-length buffers)
 * with every `v1=` entry of X-Crochet-Signature (comma-separated, ignore unknown versions); then, only if valid,
 * records the request id in the replay cache (rejecting a second use). headers: a Node IncomingHttpHeaders-like
 * record (lowercase keys, string | string[] | undefined).
 */
export function verifyCrochetRequest(
  headers: HeaderRecord,
  rawBody: Uint8Array | string,
  options: VerifyOptions,
): VerifyResult {
  const secrets = options.secrets.filter((secret) => secret !== '');
  if (secrets.length === 0) throw new TypeError('verifyCrochetRequest: no signing secret configured');
  const toleranceSeconds = options.toleranceSeconds ?? SIGNATURE_TOLERANCE_SECONDS;

  // --- headers present
  const requestId = singleHeader(headers, SIGNATURE_HEADERS.requestId);
  const listingId = singleHeader(headers, SIGNATURE_HEADERS.listingId);
  const timestampText = singleHeader(headers, SIGNATURE_HEADERS.timestamp);
  const bodySha256Claimed = singleHeader(headers, SIGNATURE_HEADERS.bodySha256);
  const signatures = signatureList(headers);
  if (!requestId || !listingId || !timestampText || !bodySha256Claimed || !signatures) {
    const missing = [
      [SIGNATURE_HEADERS.requestId, requestId],
      [SIGNATURE_HEADERS.listingId, listingId],
      [SIGNATURE_HEADERS.timestamp, timestampText],
      [SIGNATURE_HEADERS.bodySha256, bodySha256Claimed],
      [SIGNATURE_HEADERS.signature, signatures],
    ].flatMap(([name, value]) => (value ? [] : [name]));
    return deny('missing_headers', `missing or repeated header(s): ${missing.join(', ')}`);
  }

  // --- timestamp within tolerance
  if (!TIMESTAMP_PATTERN.test(timestampText)) {
    return deny('bad_timestamp', 'x-crochet-timestamp must be unix seconds');
  }
  const timestamp = Number(timestampText);
  const nowSeconds = Math.floor((options.nowMs ?? Date.now()) / 1000);
  const skewSeconds = nowSeconds - timestamp;
  if (Math.abs(skewSeconds) > toleranceSeconds) {
    return deny(
      'timestamp_out_of_tolerance',
      `x-crochet-timestamp is ${Math.abs(skewSeconds)} s ${skewSeconds > 0 ? 'old' : 'in the future'}; ` +
        `tolerance is ${toleranceSeconds} s`,
    );
  }

  // --- body hash over the exact bytes received (a string is taken as its UTF-8 bytes)
  const bodySha256 = createHash('sha256').update(rawBody).digest('hex');
  if (bodySha256 !== bodySha256Claimed) {
    return deny('body_hash_mismatch', 'x-crochet-body-sha256 does not match the body received');
  }

  // --- signature: any secret against any v1 entry
  const canonical = canonicalString(timestamp, requestId, listingId, bodySha256);
  const candidates = signatureV1Digests(signatures);
  if (candidates.length === 0) return deny('bad_signature', 'x-crochet-signature has no well-formed v1 entry');
  const signed = secrets.some((secret) => {
    const expected = createHmac('sha256', secret).update(canonical, 'utf8').digest();
    return candidates.some((candidate) => candidate.length === expected.length && timingSafeEqual(candidate, expected));
  });
  if (!signed) return deny('bad_signature', 'x-crochet-signature matches no configured secret');

  // --- replay: only a valid request is remembered, so forgeries cannot burn a real request id.
  // Past timestamp + tolerance the timestamp check rejects it anyway, so the cache can forget it then.
  const expiresAtMs = (timestamp + toleranceSeconds + 1) * 1000;
  if (options.replayCache && !options.replayCache.remember(requestId, expiresAtMs)) {
    return deny('replayed', `request ${requestId} was already received`);
  }

  return {
    ok: true,
    requestId,
    listingId,
    timestamp,
    test: singleHeader(headers, SIGNATURE_HEADERS.test) === '1',
  };
}

// ---------------------------------------------------------------------------------------------------------------------
// Fastify plugin
// ---------------------------------------------------------------------------------------------------------------------

export interface CrochetVerifierOptions {
  /** A function is called per request, so a rotation can take effect without a restart. */
  secrets: readonly string[] | (() => readonly string[]);
  toleranceSeconds?: number;
  /** Default: a `createMemoryReplayCache()` per registration. */
  replayCache?: ReplayCache;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The exact body bytes (crochetVerifier); null when the request had no body. */
    crochetRaw: Buffer | null;
    /** Set by crochetVerifier once the request's Crochet signature is verified. */
    crochet: CrochetRequestInfo | null;
  }
}

export const CROCHET_SIGNATURE_INVALID = 'CROCHET_SIGNATURE_INVALID';

/** `application/json` and structured-syntax `+json` types (RFC 6839 §3.1), parameters ignored. */
function isJsonContentType(contentType: string | undefined): boolean {
  const mediaType = (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
  return mediaType === 'application/json' || (mediaType.startsWith('application/') && mediaType.endsWith('+json'));
}

async function crochetVerifierPlugin(fastify: FastifyInstance, options: CrochetVerifierOptions): Promise<void> {
  const secrets = options.secrets;
  if (typeof secrets !== 'function' && secrets.filter((secret) => secret !== '').length === 0) {
    throw new TypeError('crochetVerifier: secrets must hold at least one signing secret');
  }
  const replayCache = options.replayCache ?? createMemoryReplayCache();
  const toleranceSeconds = options.toleranceSeconds;
  const { onProtoPoisoning = 'error', onConstructorPoisoning = 'error' } = fastify.initialConfig;
  // fastify's own JSON parser, so proto-poisoning protection follows the instance's settings.
  const parseJson = fastify.getDefaultJsonParser(onProtoPoisoning, onConstructorPoisoning);
  // A body that fails to parse is reported only after the signature checks out: unsigned callers learn nothing.
  const parseErrors = new WeakMap<FastifyRequest, Error>();

  if (!fastify.hasRequestDecorator('crochetRaw')) fastify.decorateRequest('crochetRaw', null);
  if (!fastify.hasRequestDecorator('crochet')) fastify.decorateRequest('crochet', null);

  // Every body must reach the verifier as raw bytes, so the built-in parsers (which decode text) give way to one
  // that keeps the Buffer and parses JSON itself.
  fastify.removeAllContentTypeParsers();
  const parseBody = async (request: FastifyRequest, body: Buffer): Promise<unknown> => {
    request.crochetRaw = body;
    if (!isJsonContentType(request.headers['content-type'])) return body;
    if (body.length === 0) return undefined;
    try {
      return await new Promise((resolve, reject) => {
        parseJson(request, body.toString('utf8'), (err, value) => (err ? reject(err) : resolve(value)));
      });
    } catch (err) {
      parseErrors.set(request, err as Error);
      return undefined;
    }
  };
  fastify.addContentTypeParser('application/json', { parseAs: 'buffer' }, parseBody);
  fastify.addContentTypeParser('*', { parseAs: 'buffer' }, parseBody);

  // preValidation: the first hook after the body is read, so an unsigned call gets 401 before any schema error.
  fastify.addHook('preValidation', async (request, reply) => {
    const result = verifyCrochetRequest(request.headers, request.crochetRaw ?? new Uint8Array(0), {
      secrets: typeof secrets === 'function' ? secrets() : secrets,
      toleranceSeconds,
      replayCache,
    });
    if (!result.ok) {
      return reply
        .code(401)
        .send({ error: { code: CROCHET_SIGNATURE_INVALID, reason: result.reason, message: result.message } });
    }
    const { requestId, listingId, timestamp, test } = result;
    request.crochet = { requestId, listingId, timestamp, test };
    const parseError = parseErrors.get(request);
    if (parseError) throw parseError;
  });
}

/**
 * Fastify plugin: keeps each body's raw bytes (`request.crochetRaw`), parses JSON bodies, and verifies the signature
 * before validation and the handler — 401 `{error:{code:'CROCHET_SIGNATURE_INVALID', reason, message}}` on failure,
 * `request.crochet` on success. It applies to the scope it is registered in (like fastify-plugin's skip-override),
 * so registering it inside a child plugin limits it to that plugin's routes.
 */
export const crochetVerifier: FastifyPluginAsync<CrochetVerifierOptions> = Object.assign(crochetVerifierPlugin, {
  // What fastify-plugin sets. Written by hand because fastify-plugin is not a declared dependency of this package.
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'crochet-verifier',
  [Symbol.for('plugin-meta')]: { name: 'crochet-verifier', fastify: '5.x' },
});
