import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { ulid, ulidTimeMs } from './ids.js';

/**
 * Payment request ids (`pay_…`, the `payment_request_id` of a 402 and the memo of a Solana transfer) that prove
 * themselves: `pay_<ULID><MAC>`, where the ULID carries the time it was issued and the MAC binds it to the listing and
 * the buyer under a key derived from the data-plane key. A proxy checks a memo without looking anything up, so a
 * payment request a buyer paid against stays usable whatever Redis loses (DESIGN §2 durability rule), and nothing is
 * written per 402 to remember it. The gateway request that answered the 402 records the id in PostgreSQL.
 */

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const MAC_CHARS = 16; // 80 bits
const ID = /^pay_([0-9A-HJKMNP-TV-Z]{26})([0-9A-HJKMNP-TV-Z]{16})$/;

const base32 = (bytes: Buffer, chars: number): string => {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = ((value << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5 && out.length < chars) {
      out += CROCKFORD[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out;
};

export interface PaymentRequestClaims {
  listingId: string;
  buyerId: string;
  /** When the 402 was issued (unix ms). */
  issuedAtMs: number;
}

export class PaymentRequestIds {
  readonly #key: Buffer;

  /** `dataPlaneKey`: the 32-byte key every proxy holds (CROCHET_DATA_PLANE_KEY). */
  constructor(dataPlaneKey: Buffer) {
    this.#key = Buffer.from(hkdfSync('sha256', dataPlaneKey, '', 'crochet payment request id v1', 32));
  }

  #mac(time: string, listingId: string, buyerId: string): string {
    return base32(createHmac('sha256', this.#key).update(`${time}\n${listingId}\n${buyerId}`).digest(), MAC_CHARS);
  }

  /** A new id for a 402 issued now to this buyer for this listing. */
  issue(listingId: string, buyerId: string, nowMs: number = Date.now()): string {
    const time = ulid(nowMs);
    return `pay_${time}${this.#mac(time, listingId, buyerId)}`;
  }

  /** When the id was issued, if it is one this gateway issued to this buyer for this listing; null otherwise. */
  check(id: string, listingId: string, buyerId: string): PaymentRequestClaims | null {
    const match = ID.exec(id);
    if (!match) return null;
    const [, time, mac] = match as unknown as [string, string, string];
    const expected = Buffer.from(this.#mac(time, listingId, buyerId));
    if (!timingSafeEqual(Buffer.from(mac), expected)) return null;
    return { listingId, buyerId, issuedAtMs: ulidTimeMs(time) };
  }
}
