import { Agent, getGlobalDispatcher, setGlobalDispatcher } from 'undici';

/**
 * Loading undici (the SSRF guard needs it) makes its Agent the global dispatcher of Node's built-in `fetch`. Node 20's
 * fetch then hands it `content-length: "N, N"` when the caller set the header itself (as @solana/kit's RPC
 * transport does), which undici 7 refuses as "invalid content-length header". This interceptor keeps one value, so global `fetch` behaves as before undici was loaded. Dispatchers we pass explicitly (the
 * gateway's upstream agent) are not affected.
 */
const dedupeContentLength =
  (dispatch: Agent['dispatch']): Agent['dispatch'] =>
  (options, handler) => {
    const headers = options.headers as Record<string, string | string[] | undefined> | null | undefined;
    const length = headers && !Array.isArray(headers) ? headers['content-length'] : undefined;
    if (typeof length === 'string' && length.includes(',')) {
      const values = new Set(length.split(',').map((v) => v.trim()));
      // Only a repeated identical value is mended; conflicting lengths stay an error.
      if (values.size === 1)
        return dispatch({ ...options, headers: { ...headers, 'content-length': [...values][0]! } }, handler);
    }
    return dispatch(options, handler);
  };

const MARK = Symbol.for('crochet.fetchCompat');
const current = getGlobalDispatcher() as unknown as Record<symbol, unknown>;
if (!current[MARK]) {
  const compat = new Agent().compose(dedupeContentLength) as unknown as Record<symbol, unknown>;
  compat[MARK] = true;
  setGlobalDispatcher(compat as never);
}
