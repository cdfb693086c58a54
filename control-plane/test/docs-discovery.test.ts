import { createHash } from 'node:crypto';
import { ERROR_CODES } from '@crochet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestPlane } from './helpers.js';

let plane: TestPlane;
beforeAll(async () => {
  // Not the default fee, so the documents are seen to state the server's setting.
  plane = await startTestControlPlane({ CROCHET_FEE_BPS: '250', CROCHET_HISTORY_RETENTION_DAYS: '120' });
});
afterAll(() => plane.stop());

/** A client that knows only what /llms.txt and /api/openapi.json tell it. */
const leadingZeroBits = (digest: Buffer): number => {
  let bits = 0;
  for (const byte of digest) {
    if (byte === 0) {
      bits += 8;
      continue;
    }
    for (let mask = 0x80; mask > 0 && (byte & mask) === 0; mask >>= 1) bits++;
    break;
  }
  return bits;
};

describe('machine-readable documents', () => {
  it('are enough for a client to register, call /me, create a listing and read it back', async () => {
    const llms = await plane.call('GET', '/llms.txt');
    expect(llms.status).toBe(200);
    expect(llms.headers.get('content-type')).toContain('text/plain');
    expect(llms.text).toContain('sha256(utf8(salt + nonce))');
    const openapi = (await plane.call('GET', '/api/openapi.json')).body;
    expect(openapi.openapi).toBe('3.1.0');

    const operations = new Map<string, { method: string; path: string; op: any }>();
    for (const [path, methods] of Object.entries<any>(openapi.paths)) {
      for (const [method, op] of Object.entries<any>(methods)) operations.set(op.operationId, { method, path, op });
    }
    const request = async (
      operationId: string,
      options: { body?: unknown; key?: string; params?: Record<string, string> } = {},
    ) => {
      const { method, path } = operations.get(operationId)!;
      const url = path.replace(/\{(\w+)\}/g, (_, name) => options.params![name]!);
      return plane.call(method.toUpperCase(), url, options);
    };
    const solve = (data: any): string => {
      for (let n = 0; ; n++) {
        if (leadingZeroBits(createHash('sha256').update(`${data.salt}${n}`).digest()) >= data.difficulty)
          return String(n);
      }
    };

    const challenge = (await request('createChallenge')).body.data;
    const registerSchema = operations.get('register')!.op.requestBody.content['application/json'].schema;
    expect(registerSchema.required).toEqual(expect.arrayContaining(['challenge_id', 'nonce', 'name']));
    const registered = await request('register', {
      body: { challenge_id: challenge.challenge_id, nonce: solve(challenge), name: 'doc-reader' },
    });
    expect(registered.status).toBe(201);
    const key = registered.body.data.api_key;
    expect((await request('getMe', { key })).body.data.agent.name).toBe('doc-reader');

    const listingChallenge = (await request('createListingChallenge', { key })).body.data;
    const created = await request('createListing', {
      key,
      body: {
        challenge_id: listingChallenge.challenge_id,
        nonce: solve(listingChallenge),
        name: 'Summarize',
        description: 'Summarizes text',
        pricing_model: 'per_call',
        price: { amount: '0.002', currency: 'USDC' },
        private_endpoint_url: 'http://127.0.0.1:9/summarize',
      },
    });
    expect(created.status).toBe(201);
    const read = await request('getListing', { params: { id: created.body.data.listing.id } });
    expect(read.body.data.gateway_url).toBe(`http://crochet.test:8080/api/v1/gateway/${created.body.data.listing.id}`);
    expect(read.body.data.price).toEqual({ amount: '0.002', currency: 'USDC', amount_atomic: '2000' });
  });

  it('list every documented route in every document, from the same catalog', async () => {
    const openapi = (await plane.call('GET', '/api/openapi.json')).body;
    const routes = Object.entries<any>(openapi.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((m) => `${m.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`),
    );
    expect(routes.length).toBeGreaterThanOrEqual(15);
    const llms = (await plane.call('GET', '/llms.txt')).text;
    const reference = (await plane.call('GET', '/docs/api-reference.txt')).text;
    const skill = (await plane.call('GET', '/agent-skill')).text;
    const skillMd = (await plane.call('GET', '/SKILL.md')).text;
    const protocol = (await plane.call('GET', '/.well-known/agent-protocol.json')).body;
    for (const route of routes) {
      expect(llms).toContain(route);
      expect(reference).toContain(route);
      expect(skill).toContain(route);
    }
    expect(skillMd).toBe(skill);
    // What an agent must know of its human's oversight, in both texts an agent reads first.
    for (const text of [llms, skill]) {
      for (const phrase of [
        'POST /api/v1/me/claim',
        'SPEND_CAP_EXCEEDED',
        'AGENT_PAUSED',
        'LISTING_PAUSED_BY_OPERATOR',
      ]) {
        expect(text).toContain(phrase);
      }
    }
    expect(protocol.endpoints.map((e: any) => `${e.method} ${e.path}`).sort()).toEqual([...routes].sort());
    const seller = (await plane.call('GET', '/seller-onboarding')).text;
    expect(seller).toContain('POST /api/v1/listings/:id/endpoint/rotate-secret');
    expect(seller).toContain('X-Crochet-Signature');
  });

  it('say how long this server keeps call history (and that the ledger stays)', async () => {
    const llms = (await plane.call('GET', '/llms.txt')).text;
    const skill = (await plane.call('GET', '/agent-skill')).text;
    for (const text of [llms, skill]) {
      expect(text).toContain('kept at least 120 days');
      expect(text).toContain('never a call whose money is not settled');
      expect(text).toContain('the ledger (GET /api/v1/ledger) is kept for good');
    }
    const protocol = (await plane.call('GET', '/.well-known/agent-protocol.json')).body;
    expect(protocol.settings.history_retention_days).toBe(120);
  });

  it("explain the fee (this server's), payouts and on-chain refunds where agents and sellers read", async () => {
    expect(plane.config.feeBps).toBe(250);
    const llms = (await plane.call('GET', '/llms.txt')).text;
    const skill = (await plane.call('GET', '/agent-skill')).text;
    const seller = (await plane.call('GET', '/seller-onboarding')).text;
    for (const text of [llms, skill, seller]) {
      for (const phrase of [
        // The fee as configured, and what it makes of a price.
        'Marketplace fee: 2.5% of each paid call',
        'CROCHET_FEE_BPS = 250 basis points',
        'A call priced\n  0.1 USDC credits the seller 0.0975 and the marketplace 0.0025.',
        // Payouts: manual, automatic, wallet, idempotency, states, exactly once, the payout networks of this server.
        'POST /api/v1/payouts {network, amount?, to?} with an Idempotency-Key header',
        'PUT /api/v1/me/auto-payout {network, threshold',
        'Payouts go only to a verified wallet of yours',
        'pending (to be sent) → broadcast (sent, not final on chain) → confirmed',
        'or failed (nothing was sent',
        'Exactly once',
        'pays out on no network',
        'seller_payout and payout_sent',
        // Refunds: when, to whom, how to see them.
        'refund_due',
        'to the\n  address that paid',
        'refund_transfer {id: "rf_…", status,',
        'refund_sent and\n  buyer_debit_reversal',
      ]) {
        expect(text).toContain(phrase);
      }
    }
    const protocol = (await plane.call('GET', '/.well-known/agent-protocol.json')).body;
    expect(protocol.fee).toEqual({ bps: 250, percent: '2.5%', env: 'CROCHET_FEE_BPS' });
    expect(protocol.payouts.networks).toEqual([]);

    // Every money-out route is in the OpenAPI document, with its Idempotency-Key header and its errors.
    const openapi = (await plane.call('GET', '/api/openapi.json')).body;
    const create = openapi.paths['/api/v1/payouts'].post;
    expect(create.operationId).toBe('createPayout');
    expect(create.parameters).toContainEqual(
      expect.objectContaining({ name: 'Idempotency-Key', in: 'header', required: false }),
    );
    expect(create['x-crochet-errors']).toEqual(
      expect.arrayContaining(['PAYOUT_WALLET_REQUIRED', 'PAYOUT_EXCEEDS_PAYABLE', 'IDEMPOTENCY_KEY_REUSED']),
    );
    expect(Object.keys(create.responses)).toEqual(expect.arrayContaining(['200', '201', '409']));
    expect(openapi.paths['/api/v1/payouts'].get.operationId).toBe('listPayouts');
    expect(openapi.paths['/api/v1/payouts/{id}'].get.operationId).toBe('getPayout');
    expect(Object.keys(openapi.paths['/api/v1/me/auto-payout']).sort()).toEqual(['delete', 'get', 'put']);
    const reference = (await plane.call('GET', '/docs/api-reference.txt')).text;
    expect(reference).toContain('  headers:\n    Idempotency-Key: string (optional');
    for (const route of ['POST /api/v1/payouts', 'GET /api/v1/payouts/:id', 'PUT /api/v1/me/auto-payout']) {
      expect(seller).toContain(route);
    }
  });

  it('documents each operation with its errors, all of them registry codes', async () => {
    const openapi = (await plane.call('GET', '/api/openapi.json')).body;
    for (const methods of Object.values<any>(openapi.paths)) {
      for (const op of Object.values<any>(methods)) {
        expect(op.summary).toBeTruthy();
        expect(op.operationId).toBeTruthy();
        for (const code of op['x-crochet-errors']) expect(ERROR_CODES).toContain(code);
      }
    }
    const errors = await plane.call('GET', '/docs/errors');
    expect(errors.status).toBe(200);
    for (const code of ERROR_CODES) expect(errors.text).toContain(`## ${code}`);
  });

  it('answers health and readiness', async () => {
    expect((await plane.call('GET', '/healthz')).body.data.status).toBe('ok');
    const ready = await plane.call('GET', '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body.data.checks).toEqual({ postgres: 'ok', redis: 'ok' });
  });
});
