import { hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Redis } from 'ioredis';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import type { OperatorRedisKeys } from './keys.js';

/**
 * Operator sessions (DESIGN §3.7): an HS256 JWT in the `crochet_session` cookie carrying the operator id and the
 * session's CSRF token, plus a session id that must still be live in Redis — so logging out ends a session at once,
 * even for someone holding a copy of the cookie.
 */

export const SESSION_COOKIE = 'crochet_session';
export const SESSION_TTL_SECONDS = 7 * 24 * 3600;
const HKDF_INFO = 'crochet-operator-session';
const AUDIENCE = 'crochet-operator';

/** The signing key of sessions, derived from the at-rest encryption key (no separate secret to configure). */
export const sessionKey = (encryptionKey: Buffer): Uint8Array =>
  new Uint8Array(hkdfSync('sha256', encryptionKey, Buffer.alloc(0), HKDF_INFO, 32));

export interface OperatorSession {
  operatorId: string;
  sessionId: string;
  /** The token state-changing requests must echo in X-CSRF-Token. */
  csrf: string;
}

/** Signs a session token; exported so tests can make expired or foreign ones. */
export const signSession = (
  session: OperatorSession,
  key: Uint8Array,
  expiresAt: number = Math.floor(Date.now() / 1000) + SESSION_TTL_SECONDS,
): Promise<string> =>
  new SignJWT({ csrf: session.csrf })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(session.operatorId)
    .setJti(session.sessionId)
    .setAudience(AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(expiresAt)
    .sign(key);

/** The values of every cookie called `name` in a Cookie header (RFC 6265 §5.4), in the order sent. */
export const cookieValues = (header: string | undefined, name: string): string[] => {
  if (!header) return [];
  const values: string[] = [];
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq < 0 || pair.slice(0, eq).trim() !== name) continue;
    let value = pair.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    values.push(value);
  }
  return values;
};

/** Compares two tokens in constant time (for equal lengths; a length difference is not a secret). */
export const sameToken = (a: string, b: string): boolean => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

export class SessionManager {
  readonly #redis: Redis;
  readonly #keys: OperatorRedisKeys;
  /** First: the signing key; the rest verify sessions signed before an encryption-key rotation. */
  readonly #signingKeys: Uint8Array[];
  readonly #secure: boolean;

  constructor(options: { redis: Redis; keys: OperatorRedisKeys; encryptionKeys: Buffer[]; secure: boolean }) {
    this.#redis = options.redis;
    this.#keys = options.keys;
    this.#signingKeys = options.encryptionKeys.map(sessionKey);
    this.#secure = options.secure;
  }

  /** Starts a session for an operator: its token and the Set-Cookie value carrying it. */
  async create(operatorId: string): Promise<{ session: OperatorSession; cookie: string }> {
    const session: OperatorSession = {
      operatorId,
      sessionId: randomBytes(18).toString('base64url'),
      csrf: randomBytes(32).toString('base64url'),
    };
    await this.#redis.set(this.#keys.session(session.sessionId), operatorId, 'EX', SESSION_TTL_SECONDS);
    const token = await signSession(session, this.#signingKeys[0]!);
    return { session, cookie: this.#cookie(token, SESSION_TTL_SECONDS) };
  }

  /** The live session a Cookie header carries, or null (none, forged, expired, logged out). */
  async read(cookieHeader: string | undefined): Promise<OperatorSession | null> {
    // A cookie planted by a sibling domain may come first; any one valid session is enough.
    for (const token of cookieValues(cookieHeader, SESSION_COOKIE).slice(0, 4)) {
      const session = await this.#verify(token);
      if (!session) continue;
      const owner = await this.#redis.get(this.#keys.session(session.sessionId));
      if (owner === session.operatorId) return session;
    }
    return null;
  }

  async #verify(token: string): Promise<OperatorSession | null> {
    if (token.length > 2048) return null;
    for (const key of this.#signingKeys) {
      try {
        const { payload } = await jwtVerify(token, key, { algorithms: ['HS256'], audience: AUDIENCE });
        const { sub, jti, csrf } = payload;
        if (typeof sub !== 'string' || typeof jti !== 'string' || typeof csrf !== 'string') return null;
        return { operatorId: sub, sessionId: jti, csrf };
      } catch (error) {
        // Only a signature mismatch is worth trying the next key for; expiry and shape failures are final.
        if (!(error instanceof joseErrors.JWSSignatureVerificationFailed)) return null;
      }
    }
    return null;
  }

  /** Ends a session: its cookie stops working everywhere at once. */
  async revoke(sessionId: string): Promise<void> {
    await this.#redis.del(this.#keys.session(sessionId));
  }

  /** A Set-Cookie value that removes the session cookie. */
  clearCookie(): string {
    return this.#cookie('', 0);
  }

  #cookie(token: string, maxAgeSeconds: number): string {
    const attributes = [
      `${SESSION_COOKIE}=${token}`,
      'Path=/',
      `Max-Age=${maxAgeSeconds}`,
      'HttpOnly',
      'SameSite=Strict',
    ];
    if (this.#secure) attributes.push('Secure');
    return attributes.join('; ');
  }
}
