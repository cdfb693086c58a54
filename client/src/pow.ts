import { solvesChallenge } from '@crochet/protocol';

export { solvesChallenge };

/**
 * Proof of work (DESIGN §3.1): a decimal `nonce` such that sha256(utf8(salt + nonce)) has at least `difficulty`
 * leading zero bits. About 2^difficulty hashes on average, so the cost is per-hash overhead: `createHash` per nonce
 * spends most of its time allocating. While salt + nonce fits one SHA-256 block (55 bytes) this hashes the block in
 * place with 32-bit integer arithmetic, updating only the nonce's digits — several times faster, no allocation.
 */

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);
const H0 = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/** The first 32 bits of SHA-256 over one padded block (16 big-endian words); `w` is scratch of 64 words. */
const firstWord = (block: Int32Array, w: Int32Array, out: Int32Array): void => {
  for (let i = 0; i < 16; i++) w[i] = block[i]!;
  for (let i = 16; i < 64; i++) {
    const a = w[i - 15]!;
    const b = w[i - 2]!;
    const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
    const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
    w[i] = (w[i - 16]! + s0 + w[i - 7]! + s1) | 0;
  }
  let a = H0[0]! | 0;
  let b = H0[1]! | 0;
  let c = H0[2]! | 0;
  let d = H0[3]! | 0;
  let e = H0[4]! | 0;
  let f = H0[5]! | 0;
  let g = H0[6]! | 0;
  let h = H0[7]! | 0;
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i]! + w[i]!) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  out[0] = (a + H0[0]!) | 0;
  out[1] = (b + H0[1]!) | 0;
};

/**
 * Finds a nonce. Nonces are tried in order with a fixed digit count (10^(k-1) … 10^k − 1, k growing) so that the
 * block layout stays the same while only digit bytes change. The fast path checks 32 leading bits at most per word
 * pair; the final answer is always confirmed with node:crypto.
 */
export const solveChallenge = (salt: string, difficulty: number): string => {
  const saltBytes = Buffer.from(salt, 'utf8');
  if (difficulty > 64 || saltBytes.length > 40) return solveSlowly(salt, difficulty);
  const block = new Int32Array(16);
  const w = new Int32Array(64);
  const out = new Int32Array(2);
  const bytes = new Uint8Array(64);
  bytes.set(saltBytes, 0);
  for (let digits = 1; saltBytes.length + digits <= 55; digits++) {
    const length = saltBytes.length + digits;
    bytes.fill(0, saltBytes.length);
    bytes[length] = 0x80;
    const bitLength = length * 8;
    bytes[62] = (bitLength >>> 8) & 0xff;
    bytes[63] = bitLength & 0xff;
    // Digits as ASCII, most significant first; start at 10^(digits-1) (or 0 for one digit).
    const counter = new Uint8Array(digits).fill(0);
    // Words before the first digit never change for this digit count.
    const firstDigitWord = saltBytes.length >>> 2;
    for (let i = 0; i < 16; i++) {
      const o = i * 4;
      block[i] = (bytes[o]! << 24) | (bytes[o + 1]! << 16) | (bytes[o + 2]! << 8) | bytes[o + 3]!;
    }
    if (digits > 1) counter[0] = 1;
    for (;;) {
      for (let i = 0; i < digits; i++) bytes[saltBytes.length + i] = 0x30 + counter[i]!;
      for (let i = firstDigitWord; i < 16; i++) {
        const o = i * 4;
        block[i] = (bytes[o]! << 24) | (bytes[o + 1]! << 16) | (bytes[o + 2]! << 8) | bytes[o + 3]!;
      }
      firstWord(block, w, out);
      const zeros = out[0] === 0 ? 32 + Math.clz32(out[1]!) : Math.clz32(out[0]!);
      if (zeros >= Math.min(difficulty, 33)) {
        const nonce = Array.from(counter, (d) => String(d)).join('');
        if (solvesChallenge(salt, nonce, difficulty)) return nonce;
      }
      // Next number with the same digit count; past 99…9, more digits.
      let i = digits - 1;
      while (i >= 0 && counter[i] === 9) counter[i--] = 0;
      if (i < 0) break;
      counter[i]!++;
    }
  }
  return solveSlowly(salt, difficulty);
};

const solveSlowly = (salt: string, difficulty: number): string => {
  for (let nonce = 0; ; nonce++) if (solvesChallenge(salt, String(nonce), difficulty)) return String(nonce);
};
