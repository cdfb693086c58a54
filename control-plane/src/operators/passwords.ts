import { randomBytes, type ScryptOptions, scrypt, timingSafeEqual } from 'node:crypto';

/**
 * Operator passwords, hashed with scrypt (memory-hard, in node:crypto). The parameters are stored with each hash, so
 * raising them later leaves existing hashes verifiable: `scrypt$<N>$<r>$<p>$<salt b64>$<key b64>`.
 */

// One of OWASP's equivalent scrypt settings (N=2^15, r=8, p=3): 32 MiB, about three times the work of p=1.
const PARAMS = { N: 2 ** 15, r: 8, p: 3 } as const;
const SALT_BYTES = 16;
const KEY_BYTES = 32;
// scrypt needs 128·N·r bytes (32 MiB here); node's default ceiling is exactly that, so give it room.
const maxmemFor = (N: number, r: number) => 256 * N * r;

const derive = (password: string, salt: Buffer, N: number, r: number, p: number): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const options: ScryptOptions = { N, r, p, maxmem: maxmemFor(N, r) };
    // NFKC: the same password typed on another keyboard or OS may arrive composed differently.
    scrypt(password.normalize('NFKC'), salt, KEY_BYTES, options, (error, key) =>
      error ? reject(error) : resolve(key),
    );
  });

/** A new hash of `password` with a fresh salt. */
export const hashPassword = async (password: string): Promise<string> => {
  const salt = randomBytes(SALT_BYTES);
  const key = await derive(password, salt, PARAMS.N, PARAMS.r, PARAMS.p);
  return ['scrypt', PARAMS.N, PARAMS.r, PARAMS.p, salt.toString('base64'), key.toString('base64')].join('$');
};

const STORED = /^scrypt\$(\d{1,8})\$(\d{1,3})\$(\d{1,3})\$([A-Za-z0-9+/=]{1,88})\$([A-Za-z0-9+/=]{1,88})$/;

/** True when `password` matches `stored`; compares in constant time. A malformed stored value never matches. */
export const verifyPassword = async (password: string, stored: string): Promise<boolean> => {
  const match = STORED.exec(stored);
  if (!match) return false;
  const [N, r, p] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const expected = Buffer.from(match[5]!, 'base64');
  if (expected.length !== KEY_BYTES) return false;
  const key = await derive(password, Buffer.from(match[4]!, 'base64'), N, r, p);
  return timingSafeEqual(key, expected);
};

// Made once: verifying against it costs what a real verification costs.
let dummy: Promise<string> | undefined;

/** Makes the dummy hash ahead of the first sign-in, so that one is not slower than the others. */
export const prepareDummyPassword = (): void => {
  dummy ??= hashPassword('crochet-dummy-password');
  dummy.catch(() => {});
};

/**
 * Spends the time of one verification without a stored hash: sign-in with an unknown email then takes as long as a
 * wrong password, so response times do not tell which emails have accounts.
 */
export const verifyDummyPassword = async (password: string): Promise<false> => {
  prepareDummyPassword();
  await verifyPassword(password, await dummy!);
  return false;
};
