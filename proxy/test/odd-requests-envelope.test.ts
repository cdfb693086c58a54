import { ERROR_CODES } from '@crochet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RawAnswer, rawExchange } from './raw-socket.js';
import { startTestStack, type TestStack } from './stack.js';

/**
 * Requests Node's parser or Fastify's router refuse before any route runs — headers too large, a path that is not
 * valid percent-encoding, a malformed request line — answer inside the one error envelope with a registry code, on
 * the proxy's public port and on the control plane alike. An absolute-form target (RFC 9112 §3.2.2) is served as its
 * path (it was a 500 through the proxy).
 */

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(() => stack.stop());

const planes = () => [
  ['proxy', stack.proxies[0]!.url],
  ['control plane', stack.plane.url],
];

const expectEnvelope = (answer: RawAnswer | null, status: number, code: string, label: string) => {
  expect(answer, label).not.toBeNull();
  expect([answer!.status, answer!.json?.error?.code], `${label}: ${answer!.text}`).toEqual([status, code]);
  expect(ERROR_CODES).toContain(code);
  const { error } = answer!.json;
  expect(error.message, label).toBeTruthy();
  expect(error.hint, label).toBeTruthy();
  expect(error.request_id, label).toMatch(/^req_/);
  expect(error.docs, label).toBe(`/docs/errors#${code}`);
  expect(answer!.headers['content-type'], label).toContain('application/json');
};

const get = (target: string, extra = '') =>
  `GET ${target} HTTP/1.1\r\nHost: crochet.test\r\n${extra}Connection: close\r\n\r\n`;

describe('requests refused before any route runs', () => {
  it('headers too large: 431 HEADERS_TOO_LARGE', async () => {
    for (const [label, url] of planes()) {
      const big = `X-Padding: ${'a'.repeat(20_000)}\r\n`;
      expectEnvelope(await rawExchange(url!, get('/healthz', big)), 431, 'HEADERS_TOO_LARGE', label!);
      expectEnvelope(await rawExchange(url!, get('/api/v1/gateway/lst_x', big)), 431, 'HEADERS_TOO_LARGE', label!);
    }
  });

  it('a path that is not valid percent-encoding: 400 VALIDATION_FAILED naming the url', async () => {
    for (const [label, url] of planes()) {
      for (const path of ['/api/v1/listings/%ff', '/api/v1/gateway/%ff', '/%E0%A4%A']) {
        const answer = await rawExchange(url!, get(path));
        expectEnvelope(answer, 400, 'VALIDATION_FAILED', `${label} ${path}`);
        expect(answer!.json.error.field).toBe('url');
      }
    }
  });

  it('a malformed request: 400 HTTP_REQUEST_MALFORMED', async () => {
    for (const [label, url] of planes()) {
      for (const request of [
        'GARBAGE\r\n\r\n',
        'GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n',
        'GET / HTTP/9.9\r\n\r\n',
      ]) {
        expectEnvelope(await rawExchange(url!, request), 400, 'HTTP_REQUEST_MALFORMED', `${label} ${request}`);
      }
    }
  });

  it('an absolute-form target is served as its path', async () => {
    for (const [label, url] of planes()) {
      const absolute = await rawExchange(url!, get('http://crochet.test/api/v1/listings?limit=1'));
      expect([absolute?.status, absolute?.json?.next_cursor], `${label}: ${absolute?.text}`).toEqual([200, null]);
      const unknown = await rawExchange(url!, get('http://crochet.test/api/v1/nothing'));
      expectEnvelope(unknown, 404, 'ROUTE_NOT_FOUND', label!);
      // No path is the path / (RFC 9112 §3.2.2): the site's overview page.
      const bare = await rawExchange(url!, get('http://crochet.test'));
      expect([bare?.status, bare?.text.includes('<h1>A marketplace where AI agents')], label).toEqual([200, true]);
    }
    const health = await rawExchange(stack.proxies[0]!.url, get('https://example.com:8443/healthz'));
    expect(health?.status).toBe(200);
  });
});
