import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRaw, parseAnswer, type RawConnection } from './raw-socket.js';
import { startTestStack, type TestStack } from './stack.js';

/**
 * Slowloris: a client that sends its headers or its body a byte at a time, or holds a keep-alive connection idle,
 * is cut off within the configured bound (CROCHET_HEADERS_TIMEOUT_MS, CROCHET_REQUEST_TIMEOUT_MS,
 * CROCHET_KEEP_ALIVE_TIMEOUT_MS), on the proxy's public port and on the control plane. Before, a body sent at one
 * byte every 5 s was never closed.
 */

const HEADERS_MS = 1000;
const REQUEST_MS = 2000;
const IDLE_MS = 1000;
/** Node checks the headers and request timeouts once a second; the rest is room for a loaded machine. */
const SLACK_MS = 1000 + 2000;
const LIMITS = {
  CROCHET_HEADERS_TIMEOUT_MS: String(HEADERS_MS),
  CROCHET_REQUEST_TIMEOUT_MS: String(REQUEST_MS),
  CROCHET_KEEP_ALIVE_TIMEOUT_MS: String(IDLE_MS),
};

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack({ proxyEnv: LIMITS, planeEnv: LIMITS });
});
afterAll(() => stack.stop());

const planes = () => [
  ['proxy', stack.proxies[0]!.url],
  ['control plane', stack.plane.url],
];

/** Writes `text` one byte every `everyMs` until the server closes the connection. */
const trickle = (connection: RawConnection, text: string, everyMs: number) => {
  let i = 0;
  const timer = setInterval(() => {
    if (i < text.length) connection.write(text[i++]!);
  }, everyMs);
  void connection.closed.then(() => clearInterval(timer));
  return () => clearInterval(timer);
};

const expectCutOff = async (connection: RawConnection, atLeastMs: number, atMostMs: number, label: string) => {
  const stop = setTimeout(() => connection.destroy(), atMostMs + 5000);
  const elapsed = await connection.closed;
  clearTimeout(stop);
  expect(elapsed, `${label}: closed after ${elapsed} ms`).toBeGreaterThanOrEqual(atLeastMs);
  expect(elapsed, `${label}: closed after ${elapsed} ms`).toBeLessThanOrEqual(atMostMs);
};

describe('slow clients', () => {
  it('headers sent a byte at a time are cut off with 408 REQUEST_TIMEOUT', async () => {
    await Promise.all(
      planes().map(async ([label, url]) => {
        const connection = await openRaw(url!);
        trickle(connection, `GET /healthz HTTP/1.1\r\nHost: crochet.test\r\nX-Slow: ${'a'.repeat(200)}\r\n\r\n`, 100);
        await expectCutOff(connection, HEADERS_MS * 0.9, HEADERS_MS + SLACK_MS, label!);
        const answer = parseAnswer(connection.received());
        expect([answer?.status, answer?.json?.error?.code], label).toEqual([408, 'REQUEST_TIMEOUT']);
        expect(answer?.json.error.hint, label).toBeTruthy();
      }),
    );
  });

  it('a connection that never sends anything is closed', async () => {
    await Promise.all(
      planes().map(async ([label, url]) => {
        const connection = await openRaw(url!);
        await expectCutOff(connection, HEADERS_MS * 0.9, HEADERS_MS + SLACK_MS, label!);
      }),
    );
  });

  it('a body sent a byte at a time is cut off at the request timeout', async () => {
    const targets = [
      ...planes().map(([label, url]) => [label!, url!, '/api/v1/register'] as const),
      ['proxy (gateway route)', stack.proxies[0]!.url, '/api/v1/gateway/lst_01M8H4C1P9JHV629DV3713W3NR'] as const,
    ];
    await Promise.all(
      targets.map(async ([label, url, path]) => {
        const connection = await openRaw(url);
        connection.write(
          `POST ${path} HTTP/1.1\r\nHost: crochet.test\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n`,
        );
        trickle(connection, `{"name":"${'x'.repeat(990)}"}`, 100);
        await expectCutOff(connection, REQUEST_MS * 0.9, REQUEST_MS + SLACK_MS, label);
        if (!path.includes('gateway')) {
          const answer = parseAnswer(connection.received());
          expect([answer?.status, answer?.json?.error?.code], label).toEqual([408, 'REQUEST_TIMEOUT']);
        }
      }),
    );
  });

  it('an idle keep-alive connection is closed after the idle timeout', async () => {
    await Promise.all(
      planes().map(async ([label, url]) => {
        const connection = await openRaw(url!);
        connection.write('GET /healthz HTTP/1.1\r\nHost: crochet.test\r\n\r\n');
        const answer = await connection.answer();
        expect(answer?.status, label).toBe(200);
        const answeredAt = Date.now();
        await connection.closed;
        const idle = Date.now() - answeredAt;
        expect(idle, `${label}: idle ${idle} ms`).toBeGreaterThanOrEqual(IDLE_MS * 0.9);
        expect(idle, `${label}: idle ${idle} ms`).toBeLessThanOrEqual(IDLE_MS + SLACK_MS);
      }),
    );
  });

  it('a client that keeps sending in time is served', async () => {
    const connection = await openRaw(stack.proxies[0]!.url);
    const body = JSON.stringify({ name: 'x' });
    connection.write(
      `POST /api/v1/register HTTP/1.1\r\nHost: crochet.test\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    trickle(connection, body, 50);
    const answer = await connection.answer();
    // The register schema's answer: the body arrived whole and reached the route.
    expect([answer?.status, answer?.json?.error?.code]).toEqual([400, 'VALIDATION_FAILED']);
    connection.destroy();
  });
});
