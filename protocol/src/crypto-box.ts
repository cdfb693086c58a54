import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/**
 * Encryption at rest for sellers' private endpoint URLs and signing secrets: AES-256-GCM with a key from the
 * environment. A sealed value is `v1.<key id>.<iv>.<tag>.<ciphertext>` (base64url parts); the key id lets a previous
 * key keep opening old values during a key rotation. The associated data binds a value to its row and field, so a
 * ciphertext copied into another listing does not open.
 */
export class CryptoBox {
  readonly #keys: Map<string, Buffer>;
  readonly #currentId: string;

  /** `current` seals and opens; `previous` keys only open. Each is 32 bytes. */
  constructor(current: Buffer, previous: readonly Buffer[] = []) {
    for (const key of [current, ...previous]) {
      if (key.length !== 32) throw new Error('encryption keys must be 32 bytes');
    }
    this.#currentId = CryptoBox.keyId(current);
    this.#keys = new Map([current, ...previous].map((key) => [CryptoBox.keyId(key), key]));
  }

  /** A short public fingerprint of a key. */
  static keyId(key: Buffer): string {
    return createHash('sha256').update(key).digest('base64url').slice(0, 8);
  }

  /** Parses a key given as base64 (or base64url) of 32 bytes; null when it is not one. */
  static parseKey(text: string): Buffer | null {
    const key = Buffer.from(text, text.includes('-') || text.includes('_') ? 'base64url' : 'base64');
    return key.length === 32 ? key : null;
  }

  seal(plaintext: string, context: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#keys.get(this.#currentId)!, iv);
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const parts = [iv, cipher.getAuthTag(), ciphertext].map((b) => b.toString('base64url'));
    return `v1.${this.#currentId}.${parts.join('.')}`;
  }

  /** Opens a sealed value; throws when the key is unknown or the value or context was tampered with. */
  open(sealed: string, context: string): string {
    const [version, keyId, iv, tag, ciphertext] = sealed.split('.');
    const key = keyId === undefined ? undefined : this.#keys.get(keyId);
    if (version !== 'v1' || !key || iv === undefined || tag === undefined || ciphertext === undefined) {
      throw new Error('sealed value has an unknown format or key');
    }
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
  }
}
