import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectApiError, rawRequest, startTestStack, type TestStack } from './stack.js';

/**
 * Control-plane bodies through the proxy: a body over the control plane's limit (CONTROL_PLANE_BODY_LIMIT_BYTES,
 * 256 KiB by default) is a 413 PAYLOAD_TOO_LARGE, a body under it reaches the control plane — never a 503. Before,
 * bodies of 256 KiB–1 MiB got 503 or 413 at random: the control plane answered 413 and closed while the proxy was
 * still writing. Sizes across the range, each several times, whole and chunked, and once more with a proxy whose
 * limit is larger than the control plane's (two deployments configured apart).
 */

const LIMIT = 256 * 1024;
const SIZES = [LIMIT - 1024, LIMIT - 1, LIMIT, LIMIT + 1, 300_000, 512 * 1024, 900_000, 1024 * 1024, 1_500_000];
const REPEAT = 4;

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack();
  await stack.addProxy({ CONTROL_PLANE_BODY_LIMIT_BYTES: String(4 * LIMIT) });
});
afterAll(() => stack.stop());

/** A JSON body of exactly `bytes` bytes that the register route's schema refuses (so nothing is created). */
const bodyOf = (bytes: number): string => {
  const shell = JSON.stringify({ name: '' });
  return JSON.stringify({ name: 'x'.repeat(bytes - shell.length) });
};

const send = (url: string, bytes: number, chunked: boolean) => {
  const body = bodyOf(bytes);
  expect(Buffer.byteLength(body)).toBe(bytes);
  return rawRequest(url, '/api/v1/register', {
    headers: { 'content-type': 'application/json' },
    body: chunked ? [body.slice(0, 65_536), body.slice(65_536)] : body,
  });
};

const expectAnswer = (res: Awaited<ReturnType<typeof send>>, bytes: number, label: string) => {
  if (bytes > LIMIT) {
    const error = expectApiError(res, 413, 'PAYLOAD_TOO_LARGE');
    expect(error.limit_bytes, label).toBe(LIMIT);
  } else {
    // Read whole and refused by the register schema: the control plane's own answer.
    expect([res.status, res.json?.error?.code], `${label}: ${res.text.slice(0, 200)}`).toEqual([
      400,
      'VALIDATION_FAILED',
    ]);
  }
};

describe('control-plane bodies through the proxy', () => {
  it('are 413 over the control plane limit and reach it under, whole or chunked, every time', async () => {
    for (let round = 0; round < REPEAT; round++) {
      for (const bytes of SIZES) {
        for (const chunked of [false, true]) {
          const res = await send(stack.proxies[0]!.url, bytes, chunked);
          expectAnswer(res, bytes, `${bytes} bytes${chunked ? ' chunked' : ''}, round ${round}`);
        }
      }
    }
  });

  it('are 413, never 503, when sent at once', async () => {
    const answers = await Promise.all(
      SIZES.flatMap((bytes) =>
        [0, 1].map(async () => ({ bytes, res: await send(stack.proxies[0]!.url, bytes, false) })),
      ),
    );
    for (const { bytes, res } of answers) expectAnswer(res, bytes, `${bytes} bytes at once`);
  });

  it('are 413 from the control plane itself when a proxy allows more than it does', async () => {
    const lax = stack.proxies[1]!;
    for (let round = 0; round < REPEAT; round++) {
      for (const bytes of SIZES.filter((size) => size <= 4 * LIMIT)) {
        expectAnswer(await send(lax.url, bytes, round % 2 === 1), bytes, `lax proxy, ${bytes} bytes, round ${round}`);
      }
    }
  });

  it('the proxy applies the control plane limit by default', () => {
    expect(stack.proxies[0]!.app.initialConfig.bodyLimit).toBe(stack.plane.config.bodyLimitBytes);
  });
});
