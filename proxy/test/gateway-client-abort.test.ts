import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPaidListing, type PaymentStack, paySolana, startPaymentStack } from './payment-stack.js';
import { eventually, gatewayCall, startSeller, type TestSeller } from './stack.js';

/**
 * DESIGN §3.5: a buyer that goes away gets a final state within seconds — client_aborted — and its money outcome:
 * booked if the seller answered, given back or refunded if it did not. The seller's request is abandoned too.
 */

let stack: PaymentStack;
let seller: TestSeller;
let free: string;
let paid: string;
let buyerKey: string;
/** Requests the seller saw closed by the gateway before it answered them. */
const abandoned: string[] = [];

beforeAll(async () => {
  stack = await startPaymentStack();
  seller = await startSeller((req, res) => {
    const id = String(req.headers['x-crochet-request-id']);
    if (req.url!.endsWith('/slow')) {
      const timer = setTimeout(() => res.end('{"late":true}'), 3_000);
      res.once('close', () => {
        clearTimeout(timer);
        if (!res.writableFinished) abandoned.push(id);
      });
      return;
    }
    if (req.url!.endsWith('/drip')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      let n = 0;
      const timer = setInterval(() => {
        res.write(`chunk ${n++}\n`);
        if (n === 20) {
          clearInterval(timer);
          res.end();
        }
      }, 100);
      res.once('close', () => clearInterval(timer));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  const sellerKey = (await stack.plane.register('seller')).apiKey;
  buyerKey = (await stack.plane.register('buyer')).apiKey;
  free = (await stack.plane.createListing(sellerKey, { private_endpoint_url: seller.url })).listing.id;
  paid = await createPaidListing(stack, sellerKey, seller.url, '0.01');
}, 60_000);
afterAll(async () => {
  await seller.close();
  await stack?.stop();
});

/** Sends a call and destroys the connection on a cue: after `ms`, or once `bytes` of the answer arrived. */
const abortingCall = (
  listingId: string,
  subPath: string,
  cue: { ms?: number; bytes?: number; bodySent?: string; declared?: number },
  headers: Record<string, string> = {},
): Promise<{ requestId: string | undefined; received: number }> =>
  new Promise((resolve) => {
    const body = cue.bodySent ?? '{"q":1}';
    const req = httpRequest(`${stack.proxies[0]!.url}/api/v1/gateway/${listingId}${subPath}`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${buyerKey}`,
        'content-type': 'application/json',
        'content-length': String(cue.declared ?? Buffer.byteLength(body)),
        ...headers,
      },
    });
    let requestId: string | undefined;
    let received = 0;
    const done = () => {
      req.destroy();
      resolve({ requestId, received });
    };
    req.on('error', () => {});
    req.on('response', (res) => {
      requestId = res.headers['x-crochet-request-id'] as string | undefined;
      res.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (cue.bytes !== undefined && received >= cue.bytes) done();
      });
      res.on('error', () => {});
    });
    req.write(body);
    if (cue.declared === undefined) req.end();
    if (cue.ms !== undefined) setTimeout(done, cue.ms);
  });

/** The proxy's open-streams gauge, read from its metrics listener. */
const openStreams = async (): Promise<number> => {
  const text = await (await fetch(`${stack.proxies[0]!.metricsUrl}/metrics`)).text();
  return Number(/^crochet_open_streams (\S+)$/m.exec(text)?.[1]);
};

const row = async (where: string, param: string) => {
  await stack.plane.eventsConsumer.drain();
  const { rows } = await stack.plane.deps.pool.query(`SELECT * FROM gateway_requests WHERE ${where}`, [param]);
  return rows;
};

const journals = async (gatewayRequestId: string) =>
  (
    await stack.plane.deps.pool.query('SELECT kind FROM ledger_journals WHERE gateway_request_id = $1 ORDER BY id', [
      gatewayRequestId,
    ])
  ).rows.map((r) => r.kind as string);

/** A direct Solana transfer paying for one call of the paid listing. */
const payment = () => paySolana(stack, paid, buyerKey, 10_000n);

describe('a buyer that goes away', () => {
  it('waiting on a slow seller: the call is client_aborted within seconds and the seller request is abandoned', async () => {
    const before = seller.requests.length;
    await abortingCall(free, '/slow', { ms: 300 });
    await eventually(() => expect(seller.requests.length).toBe(before + 1));
    const id = String(seller.requests.at(-1)!.headers['x-crochet-request-id']);
    const [recorded] = await eventually(async () => {
      const rows = await row('id = $1', id);
      expect(rows[0]?.status).toBe('client_aborted');
      return rows;
    }, 5_000);
    expect(recorded).toMatchObject({ http_status: 499, error_code: null });
    await eventually(() => expect(abandoned).toContain(id));
  });

  it('from a paid call the seller never answered: client_aborted, booked and reversed (refund_due), the proof spent', async () => {
    const proof = await payment();
    await abortingCall(paid, '/slow', { ms: 300 }, proof);
    const id = String(seller.requests.at(-1)!.headers['x-crochet-request-id']);
    await eventually(async () => {
      const [r] = await row('id = $1', id);
      expect(r).toMatchObject({ status: 'client_aborted', payment: { outcome: { status: 'refund_due' } } });
      expect(await journals(id)).toEqual(['payment', 'refund']);
    }, 5_000);
    const again = await gatewayCall(stack.proxies[0]!, paid, buyerKey, { headers: proof });
    expect(again.status, again.text).toBe(409);
    expect(again.json.error.gateway_request_id).toBe(id);
  });

  it('mid-stream from a paid call the seller answered: client_aborted and booked as paid', async () => {
    const proof = await payment();
    const { requestId, received } = await abortingCall(paid, '/drip', { bytes: 1 }, proof);
    expect(received).toBeGreaterThan(0);
    await eventually(async () => {
      const [r] = await row('id = $1', requestId!);
      expect(r).toMatchObject({
        status: 'client_aborted',
        http_status: 200,
        payment: { outcome: { status: 'settled' } },
      });
      expect(await journals(requestId!)).toEqual(['payment']);
    }, 5_000);
  });

  it('mid-answer: the answer streaming counts as an open stream until the buyer leaves, then no longer', async () => {
    expect(await openStreams()).toBe(0);
    const streaming = new Promise<() => void>((resolve) => {
      const req = httpRequest(`${stack.proxies[0]!.url}/api/v1/gateway/${free}/drip`, {
        method: 'POST',
        headers: { authorization: `Bearer ${buyerKey}`, 'content-type': 'application/json' },
      });
      req.on('error', () => {});
      req.on('response', (res) => {
        res.on('error', () => {});
        res.once('data', () => resolve(() => req.destroy()));
      });
      req.end('{"q":1}');
    });
    const leave = await streaming;
    expect(await openStreams()).toBe(1);
    leave();
    await eventually(async () => expect(await openStreams()).toBe(0), 5_000);
  });

  it('while sending its body to a paid listing: nothing forwarded, the proof given back, so the retry pays with it', async () => {
    const proof = await payment();
    const before = seller.requests.length;
    await abortingCall(paid, '', { ms: 300, bodySent: '{"q":', declared: 100 }, proof);
    const [aborted] = await eventually(async () => {
      const rows = await row(`payment ->> 'tx' = $1`, proof['x-crochet-payment-tx']!.split(':').at(-1)!);
      expect(rows[0]?.status).toBe('client_aborted');
      return rows;
    }, 5_000);
    expect(aborted.payment.outcome).toEqual({ status: 'released', tx: null });
    expect(await journals(aborted.id)).toEqual([]);
    expect(seller.requests.length).toBe(before);
    const retry = await gatewayCall(stack.proxies[0]!, paid, buyerKey, { headers: proof });
    expect(retry.status, retry.text).toBe(200);
  });
});
