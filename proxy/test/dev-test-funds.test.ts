import { usdcBalanceOf } from '@crochet/dev-chains';
import { generateKeyPairSigner } from '@solana/kit';
import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from '@x402/fetch';
import { ExactSvmScheme } from '@x402/svm/exact/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPaidListing, type PaymentStack, startPaymentStack } from './payment-stack.js';
import { startSeller, type TestSeller } from './stack.js';

/**
 * Issue 14: on development chains the published documents and every 402 say where test funds are (the faucet, its
 * request bodies, each network's RPC URL), the faucet answers JSON on every path and refuses what it does not know,
 * and the documents state the server's real settings. An agent that follows them pays without guessing.
 */

let stack: PaymentStack;
let seller: TestSeller;
let listing: string;
let buyerKey: string;
let base: string;
let faucet: string;

beforeAll(async () => {
  stack = await startPaymentStack({ faucet: true });
  seller = await startSeller();
  const sellerAgent = await stack.plane.register('seller');
  buyerKey = (await stack.plane.register('buyer')).apiKey;
  listing = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/paid`, '0.01');
  base = stack.proxies[0]!.url;
  faucet = stack.faucetUrl!;
}, 60_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

const post = (url: string, body: string) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });

const expectEnvelope = async (res: Response, status: number, code: string) => {
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const body = (await res.json()) as { error: Record<string, string> };
  expect([res.status, body.error.code]).toEqual([status, code]);
  expect(body.error).toMatchObject({
    message: expect.any(String),
    hint: expect.any(String),
    request_id: expect.any(String),
    docs: `/docs/errors#${code}`,
  });
  return body.error;
};

describe('the dev faucet', () => {
  it('describes itself at GET /: routes with their bodies and every network with its RPC URL', async () => {
    const res = await fetch(`${faucet}/`);
    expect(res.status).toBe(200);
    const { data } = (await res.json()) as any;
    expect(data.routes.map((r: any) => `${r.method} ${r.path}`)).toEqual(['POST /solana', 'POST /evm', 'POST /relay']);
    expect(data.networks.solana).toMatchObject({ network: stack.solana.caip2, rpc_url: stack.solana.rpcUrl });
    expect(data.networks.evm).toMatchObject({ network: stack.evm.caip2, rpc_url: stack.evm.rpcUrl });
  });

  it('answers every other path and method with a JSON 404 in the error envelope', async () => {
    await expectEnvelope(await fetch(`${faucet}/faucet`), 404, 'ROUTE_NOT_FOUND');
    await expectEnvelope(await post(`${faucet}/sol`, '{}'), 404, 'ROUTE_NOT_FOUND');
    await expectEnvelope(await fetch(`${faucet}/solana`), 404, 'ROUTE_NOT_FOUND');
  });

  it('refuses unknown fields, missing or malformed values and bad JSON with 400 and a registry code', async () => {
    const signer = await generateKeyPairSigner();
    const unknown = await expectEnvelope(
      await post(`${faucet}/solana`, JSON.stringify({ address: signer.address, usdc: 5 })),
      400,
      'VALIDATION_FAILED',
    );
    expect(unknown.message).toContain('usdc');
    await expectEnvelope(await post(`${faucet}/solana`, '{"sol":1}'), 400, 'VALIDATION_FAILED');
    await expectEnvelope(await post(`${faucet}/solana`, '{"address":"nope"}'), 400, 'VALIDATION_FAILED');
    await expectEnvelope(
      await post(`${faucet}/solana`, JSON.stringify({ address: signer.address, usdc_atomic: 1000 })),
      400,
      'VALIDATION_FAILED',
    );
    await expectEnvelope(await post(`${faucet}/evm`, '{"address":"0x12"}'), 400, 'VALIDATION_FAILED');
    await expectEnvelope(await post(`${faucet}/solana`, '{"address":'), 400, 'INVALID_JSON');
    expect(await usdcBalanceOf(stack.solana, signer.address)).toBe(0n);
  });

  it('funds a Solana wallet and an EVM address as asked', async () => {
    const signer = await generateKeyPairSigner();
    const res = await post(`${faucet}/solana`, JSON.stringify({ address: signer.address, usdc_atomic: '250000' }));
    expect(res.status).toBe(200);
    expect(((await res.json()) as any).data).toMatchObject({ network: stack.solana.caip2, usdc_atomic: '250000' });
    expect(await usdcBalanceOf(stack.solana, signer.address)).toBe(250_000n);

    const evmAddress = '0x00000000000000000000000000000000000c0de1';
    const evm = await post(`${faucet}/evm`, JSON.stringify({ address: evmAddress, eth: 0.5, usdc_atomic: '7' }));
    expect(evm.status, await evm.clone().text()).toBe(200);
    const balance = await fetch(stack.evm.rpcUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_getBalance', params: [evmAddress, 'latest'] }),
    }).then((r) => r.json() as Promise<{ result: string }>);
    expect(BigInt(balance.result)).toBe(5n * 10n ** 17n);
  });
});

describe('documents that reflect the running server', () => {
  it('llms.txt and the skill name the faucet, its request bodies and the RPC URL of each network', async () => {
    for (const path of ['/llms.txt', '/agent-skill']) {
      const text = await (await fetch(`${base}${path}`)).text();
      expect(text, path).toContain(`POST ${faucet}/solana {"address": "<base58 owner>"`);
      expect(text, path).toContain(`POST ${faucet}/evm`);
      expect(text, path).toContain(`RPC URL: ${stack.solana.rpcUrl}`);
      expect(text, path).toContain(`RPC URL: ${stack.evm.rpcUrl}`);
      expect(text, path).toContain('send nothing to api.devnet.solana.com');
      expect(text, path).toContain('ExactSvmScheme(signer, { rpcUrl: svm.extra.rpcUrl })');
    }
  });

  it('state the real settings: difficulty with its measured cost, the fee, and that dev endpoints are accepted', async () => {
    const llms = await (await fetch(`${base}/llms.txt`)).text();
    expect(llms).toMatch(/Proof of work: difficulty 4 = 16 sha256 attempts on average/);
    expect(llms).toMatch(/This server measured [0-9,]+ attempts\/s/);
    expect(llms).toContain('Marketplace fee: 500 bps (5 %)');
    expect(llms).toContain('http://127.0.0.1:3000/run');
    expect(llms).not.toContain('about a second');
    const onboarding = await (await fetch(`${base}/seller-onboarding`)).text();
    expect(onboarding).toContain('DEVELOPMENT MODE (CROCHET_ALLOW_PRIVATE_ENDPOINTS=1)');
  });

  it('agent-protocol.json carries the settings and the test funds as data', async () => {
    const doc = (await (await fetch(`${base}/.well-known/agent-protocol.json`)).json()) as any;
    expect(doc.settings).toMatchObject({
      proof_of_work: { difficulty: 4, expected_attempts: 16, measured_attempts_per_second: expect.any(Number) },
      fee_bps: 500,
      dev_endpoints_allowed: true,
      test_funds: {
        faucet_url: faucet,
        rpc_urls: { [stack.solana.caip2]: stack.solana.rpcUrl, [stack.evm.caip2]: stack.evm.rpcUrl },
      },
    });
    expect(doc.settings.networks[0]).toMatchObject({
      network: stack.solana.caip2,
      pay_to: stack.solanaPayTo,
      pay_to_kind: 'owner',
      rpc_url: stack.solana.rpcUrl,
    });
  });
});

describe('a 402 on development chains', () => {
  it('says where test funds are and which RPC to pay through; following it pays with an unmodified x402 client', async () => {
    const url = `${base}/api/v1/gateway/${listing}`;
    const init = {
      method: 'POST',
      headers: { authorization: `Bearer ${buyerKey}`, 'content-type': 'application/json' },
      body: '{"q":"docs-only"}',
    };
    const unpaid = await fetch(url, init);
    expect(unpaid.status).toBe(402);
    const { payment } = (await unpaid.json()) as any;
    expect(payment.test_funds.faucet_url).toBe(faucet);
    const svm = payment.accepts.find((a: any) => a.network.startsWith('solana:'));
    expect(svm.extra.rpcUrl).toBe(stack.solana.rpcUrl);
    expect(payment.direct.networks[0]).toMatchObject({ rpc_url: stack.solana.rpcUrl, pay_to_kind: 'owner' });

    // What the 402 says, done literally: the faucet request it names, then the x402 example from the documents.
    const signer = await generateKeyPairSigner();
    const fundWith = payment.test_funds.requests.find((r: any) => r.network === svm.network);
    const [method, faucetRoute] = fundWith.request.split(' ');
    const funded = await fetch(faucetRoute, {
      method,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...fundWith.body, address: signer.address, sol: 0 }),
    });
    expect(funded.status).toBe(200);
    const client = new x402Client().register(svm.network, new ExactSvmScheme(signer, { rpcUrl: svm.extra.rpcUrl }));
    const paid = await wrapFetchWithPayment(fetch, client)(url, init);
    expect(paid.status, await paid.clone().text()).toBe(200);
    const settlement = decodePaymentResponseHeader(paid.headers.get('payment-response')!);
    expect(settlement).toMatchObject({ success: true, network: stack.solana.caip2, payer: signer.address });
    expect(await usdcBalanceOf(stack.solana, signer.address)).toBe(1_000_000n - 10_000n);
  });
});
