import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PaymentRequestIds } from './payment-request.js';

describe('payment request ids', () => {
  const key = randomBytes(32);
  const ids = new PaymentRequestIds(key);
  const listing = 'lst_01JD0000000000000000000000';
  const buyer = 'agt_01JD0000000000000000000000';

  it('prove who they were issued to and when, with nothing stored', () => {
    const at = Date.UTC(2026, 11, 3, 12, 0, 0);
    const id = ids.issue(listing, buyer, at);
    expect(id).toMatch(/^pay_[0-9A-HJKMNP-TV-Z]{42}$/);
    expect(new PaymentRequestIds(key).check(id, listing, buyer)).toEqual({
      listingId: listing,
      buyerId: buyer,
      issuedAtMs: at,
    });
  });

  it('are refused for another listing, another buyer, another key, or when altered', () => {
    const id = ids.issue(listing, buyer);
    expect(ids.check(id, 'lst_01JD0000000000000000000001', buyer)).toBeNull();
    expect(ids.check(id, listing, 'agt_01JD0000000000000000000001')).toBeNull();
    expect(new PaymentRequestIds(randomBytes(32)).check(id, listing, buyer)).toBeNull();
    const other = (c: string) => (c === 'A' ? 'B' : 'A');
    // The MAC, and the time it covers.
    expect(ids.check(`${id.slice(0, -1)}${other(id.at(-1)!)}`, listing, buyer)).toBeNull();
    expect(ids.check(`${id.slice(0, 12)}${other(id[12]!)}${id.slice(13)}`, listing, buyer)).toBeNull();
    expect(ids.check('pay_01JD0000000000000000000000', listing, buyer)).toBeNull();
    expect(ids.check('', listing, buyer)).toBeNull();
  });
});
