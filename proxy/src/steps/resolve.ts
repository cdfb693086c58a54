import { ApiError, bearerToken } from '@crochet/protocol';
import type { Call } from '../call.js';
import type { ConfigStore } from '../config-store.js';

/**
 * The steps before admission, served from the proxy's memory: which listing, which caller, and whether the request
 * itself is acceptable. A refusal here is answered without recording anything (the call was never admitted).
 */

const retryAfter = (seconds: number) => ({ headers: { 'retry-after': String(seconds) } });

/** The listing named in the path, as the published config has it. */
export const resolveListing = (call: Call, store: ConfigStore): ApiError | null => {
  if (!store.loaded) return new ApiError('STATE_UNAVAILABLE', retryAfter(1));
  const listing = store.listing(call.request.listingId);
  if (!listing) return new ApiError('LISTING_NOT_FOUND');
  if (listing.status === 'archived') return new ApiError('LISTING_ARCHIVED');
  if (listing.status === 'paused') return new ApiError('LISTING_PAUSED');
  call.listing = listing;
  return null;
};

/** The API key (memory; one Redis lookup only for a key not seen yet) and its agent. */
export const authenticate = (call: Call, store: ConfigStore): ApiError | null | Promise<ApiError | null> => {
  const token = bearerToken(call.request.headers.authorization);
  if (token === undefined) return new ApiError('AUTH_REQUIRED');
  const hash = store.keyHash(token);
  if (hash === null) return new ApiError('API_KEY_MALFORMED');
  const known = store.key(hash);
  return known ? keyFound(call, store, known) : store.fetchKey(hash).then((key) => keyFound(call, store, key));
};

const keyFound = (
  call: Call,
  store: ConfigStore,
  key: Awaited<ReturnType<ConfigStore['fetchKey']>>,
): ApiError | null => {
  // A key this proxy has not seen yet, and Redis cannot say: our store's outage, not the caller's mistake.
  if (key === 'unavailable') return new ApiError('STATE_UNAVAILABLE', retryAfter(1));
  if (!key) return new ApiError('API_KEY_INVALID');
  if (key.status === 'revoked') return new ApiError('API_KEY_REVOKED');
  const buyer = store.agent(key.agent_id);
  if (buyer?.status === 'paused') return new ApiError('AGENT_PAUSED');
  call.key = key;
  call.buyer = buyer;
  return null;
};

/**
 * The sub-path exactly as the buyer sent it, still percent-encoded. Route params are decoded, and a decoded `%3F`,
 * `%23` or `%2F` put back into a URL would start a query, cut the path, or add a segment the check never saw.
 */
const rawSubPath = (url: string): { path: string; query: string } => {
  const cut = url.indexOf('?');
  const path = cut < 0 ? url : url.slice(0, cut);
  // '', 'api', 'v1', 'gateway', '<listing id>', then the sub-path's segments.
  const segments = path.split('/');
  return { path: segments.length > 5 ? segments.slice(5).join('/') : '', query: cut < 0 ? '' : url.slice(cut) };
};

/** C0 controls and DEL: a NUL cannot even be stored in PostgreSQL, and none has a place in a URL path. */
const hasControl = (text: string): boolean => {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
};

/**
 * The request before anything is counted or paid: a body declared larger than the listing accepts, and the seller
 * URL `/api/v1/gateway/:listingId/<sub-path>` maps to — dot segments may not climb out of the seller's path, and
 * control characters are refused.
 */
export const checkRequest = (call: Call): ApiError | null => {
  const listing = call.listing!;
  const declaredBytes = Number(call.request.headers['content-length'] ?? 0);
  if (declaredBytes > listing.bodyLimitBytes) {
    call.responseHeaders['connection'] = 'close';
    return new ApiError('PAYLOAD_TOO_LARGE', {
      message: `The request body is larger than this listing accepts (${listing.bodyLimitBytes} bytes).`,
      details: { limit_bytes: listing.bodyLimitBytes },
    });
  }
  const { path, query } = rawSubPath(call.request.url);
  if (path) {
    for (const segment of path.split('/')) {
      let decoded: string;
      try {
        decoded = decodeURIComponent(segment);
      } catch {
        return new ApiError('VALIDATION_FAILED', { message: 'The gateway sub-path is not valid percent-encoding.' });
      }
      if (decoded === '.' || decoded === '..' || decoded.includes('/') || decoded.includes('\\')) {
        return new ApiError('VALIDATION_FAILED', {
          message: 'The gateway sub-path may not contain dot segments or encoded slashes.',
        });
      }
      if (hasControl(decoded)) {
        return new ApiError('VALIDATION_FAILED', {
          message: 'The gateway sub-path may not contain control characters (such as %00).',
        });
      }
    }
  }
  const search = listing.upstreamSearch || query;
  call.target = path ? `${listing.upstreamPath}/${path}${search}` : `${listing.upstream.pathname}${search}`;
  return null;
};
