import { ERROR_CODES } from '@crochet/protocol';
import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPaidListing, type PaymentStack, paySolana, startPaymentStack } from './payment-stack.js';
import { gatewayCall, startSeller, type TestSeller } from './stack.js';

/**
 * Issue 14: /api/openapi.json describes every error body — the 402's payment requirements (`payment` with `accepts`,
 * `direct`, `relay`) and each code's extra fields — and the bodies the gateway really sends validate against it.
 */

let stack: PaymentStack;
let seller: TestSeller;
let listing: string;
let buyerKey: string;
let openapi: any;
let ajv: Ajv;

beforeAll(async () => {
  stack = await startPaymentStack({ faucet: true });
  seller = await startSeller();
  const sellerAgent = await stack.plane.register('seller');
  buyerKey = (await stack.plane.register('buyer')).apiKey;
  listing = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/paid`, '0.10');
  openapi = await (await fetch(`${stack.proxies[0]!.url}/api/openapi.json`)).json();
  ajv = new Ajv({ strict: false, validateFormats: false, allErrors: true });
  ajv.addSchema({ $id: 'openapi.json', components: openapi.components });
}, 60_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

/** Validates a body against what the document says `operationId` answers with `status`. */
const expectDocumented = (operationId: string, status: number, body: unknown) => {
  const operation = Object.values<any>(openapi.paths)
    .flatMap((methods) => Object.values<any>(methods))
    .find((op) => op.operationId === operationId);
  const schema = operation.responses[String(status)].content['application/json'].schema;
  const rebased = JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"openapi.json#/components/'));
  const validate = ajv.compile(rebased);
  expect(validate(body), JSON.stringify(validate.errors, null, 1)).toBe(true);
};

describe('error bodies in the OpenAPI document', () => {
  it('has a schema for every code of the registry, its code pinned', () => {
    for (const code of ERROR_CODES) {
      expect(openapi.components.schemas[`Error_${code}`]?.properties.error.properties.code, code).toEqual({
        const: code,
      });
    }
  });

  it("describes the gateway's 402: payment with accepts, direct and relay; the real one validates", async () => {
    const schema = openapi.components.schemas.Error_PAYMENT_REQUIRED;
    expect(schema.required).toEqual(['error', 'payment']);
    expect(Object.keys(schema.properties.payment.properties)).toEqual(
      expect.arrayContaining(['payment_request_id', 'accepts', 'direct', 'relay', 'test_funds']),
    );
    expect(schema.properties.payment.properties.accepts.items.properties.payTo.description).toContain('OWNER address');
    const unpaid = await gatewayCall(stack.proxies[0]!, listing, buyerKey, { body: { q: 1 } });
    expect(unpaid.status).toBe(402);
    expect(unpaid.json.payment.relay).not.toBeNull();
    expectDocumented('callGateway', 402, unpaid.json);
  });

  it('describes extra fields, and the real 409 PAYMENT_ALREADY_USED and 404 bodies validate', async () => {
    const proof = await paySolana(stack, listing, buyerKey, 100_000n);
    expect((await gatewayCall(stack.proxies[0]!, listing, buyerKey, { headers: proof })).status).toBe(200);
    const reused = await gatewayCall(stack.proxies[0]!, listing, buyerKey, { headers: proof });
    expect([reused.status, reused.json.error.code]).toEqual([409, 'PAYMENT_ALREADY_USED']);
    expectDocumented('callGateway', 409, reused.json);
    expect(reused.json.error.gateway_request_id).toMatch(/^gr_/);
    // A body that lacks the documented extra field does not validate: the schema is not a catch-all.
    const { gateway_request_id: _, ...without } = reused.json.error;
    expect(() => expectDocumented('callGateway', 409, { error: without })).toThrow();

    const missing = await stack.plane.call('GET', '/api/v1/listings/lst_01KDH3Q0000000000000000000');
    expect(missing.status).toBe(404);
    expectDocumented('getListing', 404, missing.body);
    const invalid = await stack.plane.call('POST', '/api/v1/register', { body: { name: 'x' } });
    expect(invalid.status).toBe(400);
    expectDocumented('register', 400, invalid.body);
  });
});
