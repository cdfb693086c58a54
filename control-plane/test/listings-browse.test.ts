import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';
import { expectError } from './listing-support.js';

/** §3.2: GET /api/v1/listings searches words in name, description and tags, filters, and sorts. */
describe('GET /api/v1/listings search, filters and sorts', () => {
  let plane: TestPlane;
  let alice: { apiKey: string; agentId: string };
  let bob: { apiKey: string; agentId: string };
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    plane = await startTestControlPlane();
    alice = await plane.register('alice');
    bob = await plane.register('bob');
    const specs: [string, string, Record<string, unknown>][] = [
      [
        'translate',
        alice.apiKey,
        {
          name: 'Translator',
          description: 'Translates text between languages',
          tags: ['language', 'text'],
          pricing_model: 'per_call',
          price: { amount: '0.05' },
        },
      ],
      [
        'summarise',
        alice.apiKey,
        {
          name: 'Summariser',
          description: 'Summarises long documents',
          tags: ['text', 'nlp'],
          pricing_model: 'per_call',
          price: { amount: '0.002' },
        },
      ],
      [
        'weather',
        bob.apiKey,
        { name: 'Weather', description: 'Current conditions for a city', tags: ['geo'], pricing_model: 'free' },
      ],
      [
        'geocode',
        bob.apiKey,
        {
          name: 'Geocoder',
          description: 'Turns addresses into coordinates',
          tags: ['geo', 'maps'],
          pricing_model: 'per_call',
          price: { amount: '1.5' },
        },
      ],
      [
        'echo',
        bob.apiKey,
        { name: 'Echo', description: 'Returns its input unchanged', tags: ['debug'], pricing_model: 'free' },
      ],
    ];
    for (const [key, apiKey, fields] of specs) {
      ids[key] = (await plane.createListing(apiKey, fields)).listing.id;
    }
    // Scores come from gateway behaviour; set them directly to exercise the sort.
    const scores: Record<string, number | null> = {
      translate: 700,
      summarise: 900,
      weather: 700,
      geocode: 100,
      echo: null,
    };
    for (const [key, score] of Object.entries(scores)) {
      await plane.deps.pool.query('UPDATE listings SET crochet_score = $2 WHERE id = $1', [ids[key], score]);
    }
  });
  afterAll(async () => {
    await plane?.stop();
  });

  const browse = async (query: string): Promise<any> => {
    const res = await plane.call('GET', `/api/v1/listings${query}`);
    expect(res.status, res.text).toBe(200);
    return res.body;
  };
  const names = (body: any): string[] => body.data.map((l: any) => l.id);
  const setOf = (...keys: string[]) => keys.map((k) => ids[k]).sort();

  it('lists every active listing without authentication, with public fields only', async () => {
    const body = await browse('');
    expect(body.next_cursor).toBeNull();
    expect([...names(body)].sort()).toEqual(setOf('translate', 'summarise', 'weather', 'geocode', 'echo'));
    for (const listing of body.data) {
      expect(listing.gateway_url).toBe(`http://crochet.test:8080/api/v1/gateway/${listing.id}`);
      expect(Object.keys(listing)).not.toContain('private_endpoint_url');
      expect(JSON.stringify(listing)).not.toContain('127.0.0.1');
    }
  });

  it('searches words in the name', async () => {
    expect(names(await browse('?q=translator'))).toEqual([ids['translate']]);
    expect(names(await browse('?q=Weather'))).toEqual([ids['weather']]);
  });

  it('searches words in the description', async () => {
    expect(names(await browse('?q=documents'))).toEqual([ids['summarise']]);
    expect(names(await browse(`?q=${encodeURIComponent('addresses coordinates')}`))).toEqual([ids['geocode']]);
  });

  it('searches words in the tags', async () => {
    expect([...names(await browse('?q=geo'))].sort()).toEqual(setOf('weather', 'geocode'));
    expect(names(await browse('?q=maps'))).toEqual([ids['geocode']]);
  });

  it('requires every word of a search, and finds nothing for unknown words', async () => {
    expect(names(await browse(`?q=${encodeURIComponent('text languages')}`))).toEqual([ids['translate']]);
    expect(await browse('?q=zeppelin')).toEqual({ data: [], next_cursor: null });
  });

  it('treats search syntax characters as text, not as an error', async () => {
    for (const q of ["'", '"unbalanced', 'a & b | !c', '(', ':*', '-', 'or']) {
      const res = await plane.call('GET', `/api/v1/listings?q=${encodeURIComponent(q)}`);
      expect(res.status, `${q}: ${res.text}`).toBe(200);
    }
    // A blank search is no search.
    expect(names(await browse('?q=%20%20'))).toHaveLength(5);
  });

  it('filters by tag', async () => {
    expect([...names(await browse('?tag=text'))].sort()).toEqual(setOf('translate', 'summarise'));
    expect(names(await browse('?tag=debug'))).toEqual([ids['echo']]);
    expect(names(await browse('?tag=nothing'))).toEqual([]);
  });

  it('filters by pricing_model', async () => {
    expect([...names(await browse('?pricing_model=free'))].sort()).toEqual(setOf('weather', 'echo'));
    expect([...names(await browse('?pricing_model=per_call'))].sort()).toEqual(
      setOf('translate', 'summarise', 'geocode'),
    );
    expectError(await plane.call('GET', '/api/v1/listings?pricing_model=subscription'), 400, 'VALIDATION_FAILED');
  });

  it('combines search, tag and pricing_model filters', async () => {
    expect(names(await browse('?q=geo&pricing_model=free'))).toEqual([ids['weather']]);
    expect(names(await browse('?tag=text&pricing_model=per_call&q=summarises'))).toEqual([ids['summarise']]);
    expect(names(await browse('?tag=geo&pricing_model=per_call'))).toEqual([ids['geocode']]);
  });

  it('filters by seller', async () => {
    expect([...names(await browse(`?seller_id=${bob.agentId}`))].sort()).toEqual(setOf('weather', 'geocode', 'echo'));
  });

  it('sorts by newest first', async () => {
    expect(names(await browse('?sort=newest'))).toEqual(
      ['echo', 'geocode', 'weather', 'summarise', 'translate'].map((k) => ids[k]),
    );
  });

  it('sorts by price, cheapest first, ties by id', async () => {
    const body = await browse('?sort=price');
    const free = [ids['weather']!, ids['echo']!].sort();
    expect(names(body)).toEqual([...free, ids['summarise'], ids['translate'], ids['geocode']]);
    expect(body.data.map((l: any) => l.price.amount_atomic)).toEqual(['0', '0', '2000', '50000', '1500000']);
  });

  it('sorts by score (the default), best first, unscored last, ties newest first', async () => {
    const expected = ['summarise', 'weather', 'translate', 'geocode', 'echo'].map((k) => ids[k]);
    expect(names(await browse('?sort=score'))).toEqual(expected);
    expect(names(await browse(''))).toEqual(expected);
    expect((await browse('?sort=score')).data.map((l: any) => l.crochet_score)).toEqual([900, 700, 700, 100, null]);
  });

  it('refuses an unknown sort or query parameter', async () => {
    expectError(await plane.call('GET', '/api/v1/listings?sort=popular'), 400, 'VALIDATION_FAILED');
    expectError(await plane.call('GET', '/api/v1/listings?colour=blue'), 400, 'VALIDATION_FAILED');
    expectError(await plane.call('GET', '/api/v1/listings?limit=0'), 400, 'VALIDATION_FAILED');
    expectError(await plane.call('GET', '/api/v1/listings?limit=101'), 400, 'VALIDATION_FAILED');
  });
});
