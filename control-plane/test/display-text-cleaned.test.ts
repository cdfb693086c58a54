import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanComment } from '../src/reviews.js';
import { startTestControlPlane, type TestPlane } from './helpers.js';

/**
 * Names and descriptions that others read (agents, listings, keys) are stored without control characters and
 * without the bidirectional controls that make text display differently from how it is stored (an override can show
 * "exe.gnp" as "png.exe"); names are one line. One cleaning for all of them and for review comments.
 */

let plane: TestPlane;
let key: string;
beforeAll(async () => {
  plane = await startTestControlPlane();
  key = (await plane.register('owner')).apiKey;
});
afterAll(() => plane.stop());

const RLO = '\u202E';
const dirty = `  Evil${RLO}gnp.exe\u2066x\u2069\r\nsecond\tline\u0007\u200F  `;

describe('display text', () => {
  it('agent names and descriptions are stored and served cleaned; names on one line', async () => {
    const { apiKey, agentId } = await plane.register(dirty);
    const me = await plane.call('GET', '/api/v1/me', { key: apiKey });
    expect(me.body.data.agent ?? me.body.data).toMatchObject({ id: agentId, name: 'Evilgnp.exex second line' });
  });

  it('listing names and descriptions are cleaned on create and on change; descriptions keep line breaks', async () => {
    const { listing } = await plane.createListing(key, { name: dirty, description: `${dirty}\u2028third` });
    expect(listing.name).toBe('Evilgnp.exex second line');
    expect(listing.description).toBe('Evilgnp.exex\nsecond line  \nthird');
    const patched = await plane.call('PATCH', `/api/v1/listings/${listing.id}`, {
      key,
      body: { name: `Renamed${RLO}\n`, description: `a\u202Db\u0085c` },
    });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.body.data).toMatchObject({ name: 'Renamed', description: 'abc' });
    const read = await plane.call('GET', `/api/v1/listings/${listing.id}`);
    expect(read.body.data).toMatchObject({ name: 'Renamed', description: 'abc' });
    // Search finds the cleaned text, not the disguised one.
    const found = await plane.call('GET', '/api/v1/listings?q=Renamed');
    expect(found.body.data.map((l: { id: string }) => l.id)).toContain(listing.id);
  });

  it('key names are cleaned', async () => {
    const res = await plane.call('POST', '/api/v1/keys', { key, body: { name: `ci${RLO}\nbot\u0001` } });
    expect(res.status, res.text).toBe(201);
    expect(res.body.data.key.name).toBe('ci bot');
  });

  it('a name with nothing visible left is refused, naming the field', async () => {
    const blank = `${RLO}\u2066\u0007`;
    const listingChallenge = plane.createListing(key, { name: blank });
    await expect(listingChallenge).rejects.toThrow(/VALIDATION_FAILED.*body\.name/);
    await expect(plane.register(blank)).rejects.toThrow(/VALIDATION_FAILED.*body\.name/);
    const { listing } = await plane.createListing(key);
    const patched = await plane.call('PATCH', `/api/v1/listings/${listing.id}`, {
      key,
      body: { description: `\u202A\u202C` },
    });
    expect([patched.status, patched.body.error.code, patched.body.error.field]).toEqual([
      400,
      'VALIDATION_FAILED',
      'body.description',
    ]);
    expect(patched.body.error.hint).toBeTruthy();
  });

  it('review comments are cleaned by the same rule (line breaks kept)', () => {
    expect(cleanComment(`${dirty}`)).toBe('Evilgnp.exex\nsecond line');
    expect(cleanComment(`${RLO}\u0007`)).toBeNull();
  });
});
