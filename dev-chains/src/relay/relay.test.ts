import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createRelayClient,
  RelayApiError,
  RelayResponseError,
  RelayTimeoutError,
  RelayUnavailableError,
} from '../../../plugins/src/payments/relay-client.js';
import { type CreateRelayRequestInput, type RelayStandIn, startRelayStandIn } from './stand-in.js';

const API_KEY = 'test-relay-key';
const BASE_CHAIN = 8453;
const SOLANA_CHAIN = 792703809;
const USDC_BASE = '0x833589fcd6edb6e08f4c7c32d4f71b54bda02913';
const MARKETPLACE = '0x00000000000000000000000000000000c0c0e7a1';
const BUYER = '0x1111111111111111111111111111111111111111';
const hex32 = (byte: string) => `0x${byte.repeat(32)}`;

function input(overrides: Partial<CreateRelayRequestInput> = {}): CreateRelayRequestInput {
  return {
    user: BUYER,
    recipient: MARKETPLACE,
    originChainId: SOLANA_CHAIN,
    destinationChainId: BASE_CHAIN,
    currencyOut: { chainId: BASE_CHAIN, address: USDC_BASE, symbol: 'USDC', decimals: 6 },
    amountOut: '1250000',
    inTxHashes: ['5j7s8K1nSolanaDepositSignature'],
    outTxHashes: [hex32('ab')],
    ...overrides,
  };
}

describe('Relay client against the Relay stand-in', () => {
  let relay: RelayStandIn;

  beforeAll(async () => {
    relay = await startRelayStandIn({ apiKey: API_KEY });
  });
  afterAll(async () => {
    await relay.stop();
  });

  const client = () => createRelayClient({ baseUrl: relay.url, apiKey: API_KEY, timeoutMs: 2_000 });

  it('reads a successful request: status, fill hashes, recipient, currency and amount', async () => {
    const created = relay.createRequest(input());
    expect(created.id).toMatch(/^0x[0-9a-f]{64}$/);

    const status = await client().getStatus(created.id);
    expect(status).toMatchObject({
      requestId: created.id,
      status: 'success',
      inTxHashes: ['5j7s8K1nSolanaDepositSignature'],
      txHashes: [hex32('ab')],
      originChainId: SOLANA_CHAIN,
      destinationChainId: BASE_CHAIN,
    });
    expect(status.updatedAt).toBeTypeOf('number');

    const request = await client().getRequest(created.id);
    expect(request).not.toBeNull();
    expect(request).toMatchObject({
      id: created.id,
      status: 'success',
      user: BUYER,
      recipient: MARKETPLACE,
      delivered: {
        currency: { chainId: BASE_CHAIN, address: USDC_BASE, symbol: 'USDC', decimals: 6 },
        amount: '1250000',
        amountFormatted: '1.25',
      },
      inTxs: [{ txHash: '5j7s8K1nSolanaDepositSignature', chainId: SOLANA_CHAIN }],
      outTxs: [{ txHash: hex32('ab'), chainId: BASE_CHAIN, type: 'onchain' }],
    });
    expect(request?.createdAt).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it('answers the raw documented shapes on the wire', async () => {
    const created = relay.createRequest(input({ details: 'filled' }));
    const headers = { 'x-api-key': API_KEY };
    const status = (await (
      await fetch(`${relay.url}/intents/status/v3?requestId=${created.id}`, { headers })
    ).json()) as object;
    expect(Object.keys(status).sort()).toEqual(
      ['destinationChainId', 'details', 'inTxHashes', 'originChainId', 'status', 'txHashes', 'updatedAt'].sort(),
    );
    const list = (await (await fetch(`${relay.url}/requests/v3?id=${created.id}`, { headers })).json()) as any;
    expect(Object.keys(list)).toEqual(['requests']);
    expect(list.requests).toHaveLength(1);
    expect(Object.keys(list.requests[0]).sort()).toEqual(
      ['createdAt', 'data', 'id', 'recipient', 'requestType', 'sender', 'status', 'updatedAt', 'user'].sort(),
    );
    expect(list.requests[0].data.route.actual.destination.outputCurrency.currency.symbol).toBe('USDC');
    expect(list.requests[0].data.outTxs[0]).toMatchObject({ txHash: hex32('ab'), chainId: BASE_CHAIN });
  });

  it('retired GET /requests/v2 as Relay did: 410 with the deprecation signals, whatever the key', async () => {
    const created = relay.createRequest(input());
    const before = relay.hits.retired;
    const res = await fetch(`${relay.url}/requests/v2?id=${created.id}`, { headers: { 'x-api-key': API_KEY } });
    expect(res.status).toBe(410);
    expect(res.headers.get('sunset')).toBe('Tue, 24 Nov 2026 00:00:00 GMT');
    expect(res.headers.get('link')).toContain('rel="successor-version"');
    expect(((await res.json()) as { message: string }).message).toMatch(/requests\/v3/);
    expect(relay.hits.retired).toBe(before + 1);
  });

  it('follows pending → success: no fill hash until the fill exists', async () => {
    const created = relay.createRequest(input({ status: 'pending' }));
    const before = await client().getStatus(created.id);
    expect(before.status).toBe('pending');
    expect(before.txHashes).toEqual([]);
    const requestBefore = await client().getRequest(created.id);
    expect(requestBefore?.status).toBe('pending');
    expect(requestBefore?.outTxs).toEqual([]);
    expect(requestBefore?.delivered).toBeUndefined();

    relay.setStatus(created.id, 'submitted');
    expect((await client().getStatus(created.id)).status).toBe('submitted');
    expect((await client().getRequest(created.id))?.status).toBe('submitted');

    relay.setStatus(created.id, 'success');
    const after = await client().getStatus(created.id);
    expect(after.status).toBe('success');
    expect(after.txHashes).toEqual([hex32('ab')]);
    expect(after.updatedAt).toBeGreaterThan(before.updatedAt!);
    const requestAfter = await client().getRequest(created.id);
    expect(requestAfter?.status).toBe('success');
    expect(requestAfter?.outTxs.map((t) => t.txHash)).toEqual([hex32('ab')]);
    expect(requestAfter?.delivered?.amount).toBe('1250000');
  });

  it('reports failure and refund', async () => {
    const failed = relay.createRequest(input({ status: 'failure', outTxHashes: [] }));
    const refunded = relay.createRequest(input({ status: 'refund', outTxHashes: [hex32('cd')] }));
    expect((await client().getStatus(failed.id)).status).toBe('failure');
    expect((await client().getRequest(failed.id))?.status).toBe('failure');
    expect((await client().getStatus(refunded.id)).status).toBe('refund');
    expect((await client().getRequest(refunded.id))?.status).toBe('refund');
  });

  it('unknown id: status "waiting" with no hashes, and no request', async () => {
    const unknown = hex32('ee');
    expect(await client().getStatus(unknown)).toEqual({
      requestId: unknown,
      status: 'waiting',
      inTxHashes: [],
      txHashes: [],
    });
    expect(await client().getRequest(unknown)).toBeNull();
  });

  it('ids are matched case-insensitively', async () => {
    const created = relay.createRequest(input({ id: `0x${'Ab'.repeat(32)}` }));
    expect((await client().getStatus(created.id.toLowerCase())).status).toBe('success');
    expect((await client().getRequest(created.id.toUpperCase().replace('0X', '0x')))?.id).toBe(created.id);
  });

  it('a wrong API key → RelayApiError 401 on both endpoints; the client refuses to run without one', async () => {
    const created = relay.createRequest(input());
    const c = createRelayClient({ baseUrl: relay.url, apiKey: 'wrong-key', timeoutMs: 2_000 });
    const err = await c.getStatus(created.id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RelayApiError);
    expect((err as RelayApiError).status).toBe(401);
    expect((err as RelayApiError).retryable).toBe(false);
    expect((err as RelayApiError).relayMessage).toBe('Invalid API key');
    await expect(c.getRequest(created.id)).rejects.toMatchObject({ name: 'RelayApiError', status: 401 });
    for (const apiKey of ['', ' ', undefined]) {
      expect(() => createRelayClient({ baseUrl: relay.url, apiKey: apiKey as string, timeoutMs: 2_000 })).toThrow(
        /apiKey is required/,
      );
    }
  });

  it('without a key: requests v3 answers 400 as Relay does, the status endpoint serves the caller', async () => {
    const created = relay.createRequest(input());
    const v3 = await fetch(`${relay.url}/requests/v3?id=${created.id}`);
    expect(v3.status).toBe(400);
    expect(await v3.json()).toEqual({ message: "headers must have required property 'x-api-key'" });
    const status = await fetch(`${relay.url}/intents/status/v3?requestId=${created.id}`);
    expect(status.status).toBe(200);
  });

  it('slow Relay (delayMs 500) with timeoutMs 100 → RelayTimeoutError, promptly', async () => {
    const created = relay.createRequest(input({ delayMs: 500 }));
    const c = createRelayClient({ baseUrl: relay.url, apiKey: API_KEY, timeoutMs: 100 });
    const startedAt = performance.now();
    const err = await c.getStatus(created.id).catch((e: unknown) => e);
    const elapsedMs = performance.now() - startedAt;
    expect(err).toBeInstanceOf(RelayTimeoutError);
    expect((err as RelayTimeoutError).timeoutMs).toBe(100);
    expect(elapsedMs).toBeLessThan(400);
    await expect(c.getRequest(created.id)).rejects.toBeInstanceOf(RelayTimeoutError);
    // the same request answers when the client waits long enough
    const patient = createRelayClient({ baseUrl: relay.url, apiKey: API_KEY, timeoutMs: 2_000 });
    expect((await patient.getStatus(created.id)).status).toBe('success');
  });

  it('POST /quote/v2 without a solver: 400 NO_SWAP_ROUTES_FOUND; bad input: 400 INVALID_INPUT', async () => {
    const quote = (body: unknown) =>
      fetch(`${relay.url}/quote/v2`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const route = {
      user: BUYER,
      recipient: MARKETPLACE,
      originChainId: BASE_CHAIN,
      destinationChainId: BASE_CHAIN,
      originCurrency: USDC_BASE,
      destinationCurrency: USDC_BASE,
      amount: '1000',
      tradeType: 'EXACT_OUTPUT',
    };
    const none = await quote(route);
    expect(none.status).toBe(400);
    expect(await none.json()).toMatchObject({ errorCode: 'NO_SWAP_ROUTES_FOUND' });
    const bad = await quote({ ...route, amount: '-1' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ errorCode: 'INVALID_INPUT' });
  });

  it('rejects a malformed request id before calling Relay', async () => {
    const before = { ...relay.hits };
    await expect(client().getStatus('0x1234')).rejects.toBeInstanceOf(TypeError);
    await expect(client().getRequest('not-an-id&id=0x00')).rejects.toBeInstanceOf(TypeError);
    expect(relay.hits).toEqual(before);
  });

  it('a stopped Relay → RelayUnavailableError', async () => {
    const gone = await startRelayStandIn();
    await gone.stop();
    const c = createRelayClient({ baseUrl: gone.url, apiKey: gone.apiKey, timeoutMs: 2_000 });
    const err = await c.getStatus(hex32('11')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RelayUnavailableError);
    expect((err as RelayUnavailableError).retryable).toBe(true);
  });
});

describe('Relay client response validation', () => {
  let server: Server;
  let url: string;
  let next: { status: number; body: string } = { status: 200, body: '{}' };

  beforeAll(async () => {
    server = createServer((_req, res) => {
      res.writeHead(next.status, { 'content-type': 'application/json' });
      res.end(next.body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  const c = () => createRelayClient({ baseUrl: url, apiKey: API_KEY, timeoutMs: 2_000 });

  it('rejects bodies that are not the documented shape', async () => {
    for (const body of ['not json', '[]', '{"status":"done"}', '{"status":"success","txHashes":"0xab"}']) {
      next = { status: 200, body };
      await expect(c().getStatus(hex32('22'))).rejects.toBeInstanceOf(RelayResponseError);
    }
    next = {
      status: 200,
      body: JSON.stringify({
        requests: [
          {
            id: hex32('22'),
            status: 'success',
            data: {
              route: {
                actual: {
                  destination: {
                    outputCurrency: { currency: { chainId: 1, address: 'x', symbol: 'USDC' }, amount: '1' },
                  },
                },
              },
            },
          },
        ],
      }),
    };
    await expect(c().getRequest(hex32('22'))).rejects.toThrow(/decimals/);
    next = { status: 200, body: '{"continuation":"abc"}' };
    await expect(c().getRequest(hex32('22'))).rejects.toBeInstanceOf(RelayResponseError);
  });

  it('a 5xx is a retryable RelayApiError carrying Relay message', async () => {
    next = { status: 503, body: '{"message":"Service unavailable"}' };
    const err = await c()
      .getStatus(hex32('33'))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RelayApiError);
    expect(err).toMatchObject({ status: 503, retryable: true, relayMessage: 'Service unavailable' });
  });
});
