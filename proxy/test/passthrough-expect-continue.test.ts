import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from './stack.js';

/**
 * `Expect: 100-continue` on a route passed through to the control plane is answered as without it. Before, undici
 * refused to forward a request carrying the header and every such request was a 503 CONTROL_PLANE_UNAVAILABLE.
 */

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(() => stack.stop());

/** A request as curl sends a large body: `Expect: 100-continue`, the body only once the server said 100 Continue. */
const withExpect = (
  url: string,
  method: string,
  path: string,
  body?: string,
): Promise<{ status: number; continued: boolean; json: any }> =>
  new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { expect: '100-continue' };
    if (body !== undefined)
      Object.assign(headers, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    const req = request(`${url}${path}`, { method, headers, agent: false });
    let continued = false;
    req.on('continue', () => {
      continued = true;
      req.end(body);
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode!, continued, json: JSON.parse(Buffer.concat(chunks).toString()) }),
      );
    });
    req.on('error', reject);
    if (body === undefined) req.end();
    else req.flushHeaders();
  });

describe('Expect: 100-continue through the proxy', () => {
  it('is served on every kind of passed-through route', async () => {
    const url = stack.proxies[0]!.url;
    const challenge = await withExpect(url, 'POST', '/api/v1/auth/challenge');
    expect(challenge.status, JSON.stringify(challenge.json)).toBe(201);
    expect(challenge.json.data.challenge_id).toMatch(/^chl_/);

    const listings = await withExpect(url, 'GET', '/api/v1/listings');
    expect(listings.status).toBe(200);

    // A JSON body sent only after 100 Continue reaches the control plane whole: its schema answers.
    const register = await withExpect(url, 'POST', '/api/v1/register', JSON.stringify({ name: 'x' }));
    expect(register.continued).toBe(true);
    expect([register.status, register.json.error.code, register.json.error.field]).toEqual([
      400,
      'VALIDATION_FAILED',
      'body.challenge_id',
    ]);
  });
});
