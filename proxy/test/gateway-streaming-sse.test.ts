import { createHash, randomBytes } from 'node:crypto';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProxyServer } from '../src/app.js';
import { startSeller, startTestStack, type TestSeller, type TestStack } from './stack.js';

const EVENT_COUNT = 5;
const EVENT_GAP_MS = 200;
const LARGE_BYTES = 5 * 1024 * 1024;

let stack: TestStack;
let proxy: ProxyServer;
let seller: TestSeller;
let buyerKey: string;
let listingId: string;
/** When the seller wrote its last SSE event (performance.now(), same process as the buyer). */
let sseEndedAt = 0;
const large = randomBytes(LARGE_BYTES);

beforeAll(async () => {
  stack = await startTestStack();
  proxy = stack.proxies[0]!;
  seller = await startSeller((req, res) => {
    if (req.url === '/svc/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.flushHeaders();
      let sent = 0;
      const next = () => {
        res.write(`id: ${sent}\ndata: event ${sent}\n\n`);
        sent++;
        if (sent < EVENT_COUNT) {
          setTimeout(next, EVENT_GAP_MS);
        } else {
          sseEndedAt = performance.now();
          res.end();
        }
      };
      next();
      return;
    }
    if (req.url === '/svc/large') {
      // No Content-Length: Node answers with chunked transfer coding.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const write = (offset: number) => {
        while (offset < large.length) {
          const end = Math.min(offset + 64 * 1024, large.length);
          const more = res.write(large.subarray(offset, end));
          offset = end;
          if (!more) {
            res.once('drain', () => write(offset));
            return;
          }
        }
        res.end();
      };
      write(0);
      return;
    }
    res.writeHead(404).end();
  });
  const sellerAgent = await stack.plane.register('seller');
  buyerKey = (await stack.plane.register('buyer')).apiKey;
  listingId = (await stack.plane.createListing(sellerAgent.apiKey, { private_endpoint_url: `${seller.url}/svc` }))
    .listing.id;
});
afterAll(async () => {
  await seller.close();
  await stack.stop();
});

const callGateway = (subPath: string) =>
  request(`${proxy.url}/api/v1/gateway/${listingId}${subPath}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${buyerKey}`, 'content-type': 'application/json' },
    body: '{}',
  });

describe('streaming through the gateway', () => {
  it('passes server-sent events through as they are written, in order', async () => {
    const res = await callGateway('/events');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    expect(res.headers['x-crochet-request-id']).toMatch(/^gr_/);
    const arrivals: { at: number; text: string }[] = [];
    for await (const chunk of res.body)
      arrivals.push({ at: performance.now(), text: Buffer.from(chunk).toString('utf8') });

    const text = arrivals.map((a) => a.text).join('');
    const data = [...text.matchAll(/^data: (.*)$/gm)].map((m) => m[1]);
    expect(data).toEqual(Array.from({ length: EVENT_COUNT }, (_, i) => `event ${i}`));
    // Behaviour, not speed: the first event is in the buyer's hands while the seller is still writing. The seller
    // spaces its events 800 ms apart in all, so a buffering gateway would deliver the first one at the end.
    const firstAt = arrivals[0]!.at;
    const lastAt = arrivals.at(-1)!.at;
    expect(arrivals[0]!.text).toContain('data: event 0');
    expect(sseEndedAt - firstAt).toBeGreaterThanOrEqual(600);
    expect(lastAt - firstAt).toBeGreaterThanOrEqual(600);
  });

  it('streams a large chunked response intact', async () => {
    const res = await callGateway('/large');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-length']).toBeUndefined();
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of res.body) {
      hash.update(chunk);
      bytes += chunk.length;
    }
    expect(bytes).toBe(LARGE_BYTES);
    expect(hash.digest('hex')).toBe(createHash('sha256').update(large).digest('hex'));
  });
});
