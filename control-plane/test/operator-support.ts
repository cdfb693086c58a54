import { randomBytes } from 'node:crypto';

/**
 * Shared by the operator test files (and the proxy's operator-controls test): an operator as the dashboard is one —
 * a session cookie and a CSRF token — against any base URL (a control plane, or a proxy passing /api/v1 through).
 */

export interface OperatorResponse {
  status: number;
  headers: Headers;
  body: any;
  text: string;
}

export interface OperatorClient {
  id: string;
  email: string;
  password: string;
  /** The `crochet_session=…` pair to send as Cookie. */
  cookie: string;
  csrf: string;
  /**
   * A request with the session cookie; state-changing methods carry X-CSRF-Token unless `csrf` is false (or another
   * token is given).
   */
  call(
    method: string,
    path: string,
    options?: { body?: unknown; headers?: Record<string, string>; csrf?: string | false; cookie?: string | false },
  ): Promise<OperatorResponse>;
}

/** A JSON request with no session; `cookie`/`headers` as given. */
export const operatorRequest = async (
  baseUrl: string,
  method: string,
  path: string,
  options: { body?: unknown; headers?: Record<string, string> } = {},
): Promise<OperatorResponse> => {
  const headers: Record<string, string> = { ...options.headers };
  if (options.body !== undefined) headers['content-type'] ??= 'application/json';
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers,
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
  });
  const text = await response.text();
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: response.status, headers: response.headers, body, text };
};

/** The `name=value` part of the session Set-Cookie header. */
export const sessionCookieOf = (headers: Headers): string => {
  const cookie = headers.getSetCookie().find((c) => c.startsWith('crochet_session='));
  if (!cookie) throw new Error('no session cookie was set');
  return cookie.split(';')[0]!;
};

const client = (
  baseUrl: string,
  identity: { id: string; email: string; password: string; cookie: string; csrf: string },
): OperatorClient => ({
  ...identity,
  call: (method, path, options = {}) => {
    const headers: Record<string, string> = { ...options.headers };
    if (options.cookie !== false) headers['cookie'] = options.cookie ?? identity.cookie;
    const csrf = options.csrf ?? identity.csrf;
    if (method !== 'GET' && csrf !== false) headers['x-csrf-token'] = csrf;
    return operatorRequest(baseUrl, method, path, {
      headers,
      ...(options.body !== undefined ? { body: options.body } : {}),
    });
  },
});

/** A unique email for a test operator. */
export const testEmail = (): string => `op-${randomBytes(4).toString('hex')}@example.test`;

/** Signs up a new operator (already signed in). */
export const signUpOperator = async (
  baseUrl: string,
  email: string = testEmail(),
  password = 'correct horse battery',
): Promise<OperatorClient> => {
  const res = await operatorRequest(baseUrl, 'POST', '/api/v1/operator/signup', { body: { email, password } });
  if (res.status !== 201) throw new Error(`signup failed: ${res.text}`);
  return client(baseUrl, {
    id: res.body.data.operator.id,
    email: res.body.data.operator.email,
    password,
    cookie: sessionCookieOf(res.headers),
    csrf: res.body.data.csrf_token,
  });
};

/** Signs an existing operator in: a new session. */
export const logInOperator = async (baseUrl: string, email: string, password: string): Promise<OperatorClient> => {
  const res = await operatorRequest(baseUrl, 'POST', '/api/v1/operator/login', { body: { email, password } });
  if (res.status !== 200) throw new Error(`login failed: ${res.text}`);
  return client(baseUrl, {
    id: res.body.data.operator.id,
    email: res.body.data.operator.email,
    password,
    cookie: sessionCookieOf(res.headers),
    csrf: res.body.data.csrf_token,
  });
};

/** An agent's claim code, redeemed by the operator; returns the claimed agent. */
export const claimAgent = async (
  baseUrl: string,
  operator: OperatorClient,
  agentApiKey: string,
): Promise<{ id: string; name: string; claimed_at: string }> => {
  const code = await operatorRequest(baseUrl, 'POST', '/api/v1/me/claim', {
    headers: { authorization: `Bearer ${agentApiKey}` },
  });
  if (code.status !== 201) throw new Error(`claim code failed: ${code.text}`);
  const res = await operator.call('POST', '/api/v1/operator/claims', {
    body: { claim_code: code.body.data.claim_code },
  });
  if (res.status !== 200) throw new Error(`claim failed: ${res.text}`);
  return res.body.data.agent;
};
