import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRaw, type RawConnection } from './raw-socket.js';
import { eventually, startTestStack, type TestStack } from './stack.js';

/**
 * A client past CROCHET_MAX_CONNECTIONS_PER_CLIENT open connections is refused (429 TOO_MANY_CONNECTIONS, then
 * closed) while another client is served as usual; past CROCHET_MAX_CONNECTIONS in all, connections are closed
 * unanswered; a trusted proxy's address is exempt from the per-client cap (it carries many clients). Loopback
 * addresses stand for the clients (127.0.0.0/8 all reach a server on 127.0.0.1).
 */

const PER_CLIENT = 3;
const TOTAL = 8;
const TRUSTED = '127.0.0.9';

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack({
    proxyEnv: {
      CROCHET_MAX_CONNECTIONS_PER_CLIENT: String(PER_CLIENT),
      CROCHET_MAX_CONNECTIONS: String(TOTAL),
      PROXY_TRUSTED_PROXIES: `${TRUSTED},127.0.3.0/24`,
    },
  });
});
afterAll(() => stack.stop());

const HEALTH = 'GET /healthz HTTP/1.1\r\nHost: crochet.test\r\n\r\n';

/** A keep-alive connection from `from` that got one 200 (so the server counts it as open). */
const held = async (from: string): Promise<RawConnection> => {
  const connection = await openRaw(stack.proxies[0]!.url, from);
  connection.write(HEALTH);
  const answer = await connection.answer();
  expect(answer?.status, `${from}: ${answer?.text}`).toBe(200);
  return connection;
};

describe('connection caps', () => {
  it('refuses a client past its cap and serves another client meanwhile', async () => {
    const open: RawConnection[] = [];
    for (let i = 0; i < PER_CLIENT; i++) open.push(await held('127.0.0.2'));

    const refused = await openRaw(stack.proxies[0]!.url, '127.0.0.2');
    refused.write(HEALTH);
    const answer = await refused.answer();
    expect([answer?.status, answer?.json?.error?.code], answer?.text).toEqual([429, 'TOO_MANY_CONNECTIONS']);
    expect(answer?.headers['retry-after']).toBe('1');
    expect(answer?.json.error.hint).toBeTruthy();
    await refused.closed;

    // Another address is unaffected, and so are the held connections.
    const other = await held('127.0.0.3');
    open[0]!.write(HEALTH);
    await eventually(() => expect(open[0]!.received().split('HTTP/1.1 200').length - 1).toBe(2));

    // One closed frees a place for the same client.
    open.pop()!.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    open.push(await held('127.0.0.2'));

    for (const connection of [...open, other]) connection.destroy();
  });

  it('exempts trusted proxies from the per-client cap', async () => {
    const open: RawConnection[] = [];
    for (let i = 0; i < PER_CLIENT + 1; i++) open.push(await held(TRUSTED), await held('127.0.3.7'));
    for (const connection of open) connection.destroy();
  });

  it('closes connections past the total cap without reading them', async () => {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const open: RawConnection[] = [];
    for (let i = 0; i < TOTAL; i++) open.push(await held(`127.0.1.${i + 1}`));
    const extra = await openRaw(stack.proxies[0]!.url, '127.0.2.1');
    extra.write(HEALTH);
    expect(await extra.answer()).toBeNull();
    await extra.closed;
    open.pop()!.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    open.push(await held('127.0.2.1'));
    for (const connection of open) connection.destroy();
  });
});
