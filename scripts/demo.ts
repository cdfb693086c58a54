import { generateKeyPairSync, sign } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  generateSolanaWallet,
  type SolanaDevChain,
  transferUsdc,
  transferUsdcWithMemo,
  usdcBalanceOf,
} from '@crochet/dev-chains';
import { crochetVerifier, verifyReceipt } from '@crochet/plugins';
import { fromAtomic, solveChallenge, toAtomic } from '@crochet/protocol';
import { createSolanaRpc, getBase58Decoder } from '@solana/kit';
import { x402Client } from '@x402/core/client';
import { decodePaymentResponseHeader } from '@x402/core/http';
import { toClientEvmSigner } from '@x402/evm';
import { ExactEvmScheme } from '@x402/evm/exact/client';
import { wrapFetchWithPayment } from '@x402/fetch';
import Fastify from 'fastify';
import { createPublicClient, http } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const BASE = (process.env['DEMO_BASE_URL'] ?? process.env['PUBLIC_BASE_URL'] ?? 'http://localhost:8080').replace(
  /\/$/,
  '',
);
const infoFile = join(root, '.crochet', 'dev-chains.json');
const step = (n: number, text: string) => process.stdout.write(`\n[${n}] ${text}\n`);
const show = (label: string, value: unknown) =>
  process.stdout.write(`    ${label}: ${typeof value === 'string' ? value : JSON.stringify(value)}\n`);

interface DevInfo {
  solana: { rpc_url: string; network: string; usdc_mint: string; pay_to: string };
  evm: {
    rpc_url: string;
    network: string;
    chain_id: number;
    usdc: `0x${string}`;
    pay_to: `0x${string}`;
    buyer_keys: `0x${string}`[];
  };
  faucet_url: string;
}

const api = async (
  method: string,
  path: string,
  body?: unknown,
  key?: string,
  headers: Record<string, string> = {},
) => {
  const res = await fetch(`${BASE}${path}`, {
    method,
    headers: {
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      ...headers,
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const json = (await res.json()) as any;
  if (!res.ok) throw new Error(`${method} ${path} → ${res.status} ${JSON.stringify(json.error ?? json)}`);
  return json.data;
};

const solve = (c: { challenge_id: string; salt: string; difficulty: number }) => ({
  challenge_id: c.challenge_id,
  nonce: solveChallenge(c.salt, c.difficulty),
});

const main = async () => {
  if (!existsSync(infoFile))
    throw new Error('no .crochet/dev-chains.json: start the stack first with `npm start` (dev chains on)');
  const info = JSON.parse(readFileSync(infoFile, 'utf8')) as DevInfo;
  const faucet = (path: string, body: unknown) =>
    fetch(`${info.faucet_url}${path}`, { method: 'POST', body: JSON.stringify(body) }).then((r) => r.json());

  // --- the seller's own server: verifies every request with the signing secret -------------------------------
  let secrets: string[] = [];
  const sellerApp = Fastify();
  await sellerApp.register(async (scope) => {
    await scope.register(crochetVerifier, { secrets: () => secrets });
    scope.post('/summarize', async (request) => {
      const input = request.body as { text?: string };
      return { summary: (input.text ?? '').split(' ').slice(0, 5).join(' '), request_id: request.crochet?.requestId };
    });
  });
  const sellerUrl = await sellerApp.listen({ host: '127.0.0.1', port: 0 });

  step(1, `Seller registers at ${BASE} (proof of work) and publishes a paid listing`);
  const sellerReg = await api('POST', '/api/v1/register', {
    ...solve(await api('POST', '/api/v1/auth/challenge')),
    name: 'demo-seller',
  });
  const sellerKey = sellerReg.api_key as string;
  show('seller', sellerReg.agent.id);
  const created = await api(
    'POST',
    '/api/v1/listings',
    {
      ...solve(await api('POST', '/api/v1/listings/challenge', undefined, sellerKey)),
      name: 'Summarize',
      description: 'Summarizes text in five words',
      pricing_model: 'per_call',
      price: { amount: '0.10', currency: 'USDC' },
      private_endpoint_url: `${sellerUrl}/summarize`,
    },
    sellerKey,
  );
  secrets = [created.gateway_endpoint.signing_secret];
  const listing = created.listing;
  show('listing', `${listing.id} at ${listing.price.amount} ${listing.price.currency}`);
  show('gateway_url', listing.gateway_url);

  step(2, 'Buyer registers with an EVM wallet and proves it (SIWE) so direct EVM transfers count as its own');
  const evmAccount = privateKeyToAccount(info.evm.buyer_keys[0]!);
  await api('POST', '/api/v1/register', {
    ...solve(await api('POST', '/api/v1/auth/challenge')),
    name: 'demo-buyer',
    wallet: { chain: 'evm', address: evmAccount.address },
  }).catch((e: Error) => {
    if (!e.message.includes('WALLET_ALREADY_REGISTERED')) throw e; // a second demo run reuses the wallet's agent
  });
  const recovery = await api('POST', '/api/v1/auth/recover/challenge', { chain: 'evm', address: evmAccount.address });
  const recovered = await api('POST', '/api/v1/auth/recover', {
    chain: 'evm',
    address: evmAccount.address,
    message: recovery.message,
    signature: await evmAccount.signMessage({ message: recovery.message }),
  });
  const buyerKey = recovered.api_key as string;
  show('buyer', `${recovered.agent.id} with verified wallet ${evmAccount.address}`);

  const call = (headers: Record<string, string> = {}) =>
    fetch(listing.gateway_url, {
      method: 'POST',
      headers: { authorization: `Bearer ${buyerKey}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ text: 'Crochet lets agents buy and sell capabilities one call at a time' }),
    });
  const unpaid = async () => {
    for (let i = 0; i < 50; i++) {
      const res = await call();
      if (res.status === 402) return (await res.json()) as any;
      await new Promise((r) => setTimeout(r, 100)); // the proxies learn about the new listing within a moment
    }
    throw new Error('the listing never answered 402');
  };

  step(3, 'Buyer calls the gateway unpaid → 402 with payment requirements');
  const required = await unpaid();
  show('payment_request_id', required.payment.payment_request_id);
  for (const a of required.payment.accepts) show('accepts', `${a.network} ${a.amount} of ${a.asset} → ${a.payTo}`);

  step(4, 'Pays 0.10 USDC on the Solana dev chain with the payment_request_id as memo, and retries');
  const wallet = await generateSolanaWallet();
  await faucet('/solana', { address: wallet.signer.address, sol: 1, usdc_atomic: '1000000' });
  const chain = {
    rpc: createSolanaRpc(info.solana.rpc_url),
    usdcMint: info.solana.usdc_mint,
    usdcDecimals: 6,
  } as unknown as SolanaDevChain;
  const signature = await transferUsdcWithMemo(
    chain,
    wallet.signer,
    info.solana.pay_to as never,
    100_000n,
    required.payment.payment_request_id,
  );
  show('transaction', signature);
  const paid = await call({ 'x-crochet-payment-tx': `${info.solana.network}:${signature}` });
  show('status', paid.status);
  show('answer', await paid.json());
  show('gateway request', paid.headers.get('x-crochet-request-id'));

  step(5, 'Same again over a direct USDC transfer on the EVM dev chain (anvil)');
  await faucet('/evm', { address: evmAccount.address, usdc_atomic: '1000000' });
  const env = { rpcUrl: info.evm.rpc_url, chainId: info.evm.chain_id, usdc: info.evm.usdc };
  const hash = await transferUsdc(env, info.evm.buyer_keys[0]!, info.evm.pay_to, 100_000n);
  show('transaction', hash);
  const evmPaid = await call({ 'x-crochet-payment-tx': `${info.evm.network}:${hash}` });
  show('status', evmPaid.status);
  show('answer', await evmPaid.json());

  step(6, 'Same again with an unmodified x402 client (EIP-3009 authorization, settled by the gateway)');
  const publicClient = createPublicClient({ transport: http(info.evm.rpc_url) });
  const client = new x402Client().register(
    info.evm.network as never,
    new ExactEvmScheme(toClientEvmSigner(evmAccount, publicClient as never)),
  );
  client.setSpendControls?.({ allowedAssets: true } as never);
  const payingFetch = wrapFetchWithPayment(fetch, client);
  const x402Paid = await payingFetch(listing.gateway_url, {
    method: 'POST',
    headers: { authorization: `Bearer ${buyerKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ text: 'paid with x402 by an agent that only knows the x402 protocol' }),
  });
  show('status', x402Paid.status);
  show('answer', await x402Paid.json());
  const settlement = x402Paid.headers.get('payment-response');
  if (settlement) show('settlement', decodePaymentResponseHeader(settlement));

  step(7, "Buyer's history");
  await new Promise((resolve) => setTimeout(resolve, 500)); // completions reach the control plane in batches
  const history = await api('GET', '/api/v1/gateway-requests?limit=5', undefined, buyerKey);
  for (const r of history)
    show(
      r.id,
      `${r.status} ${r.http_status ?? ''} ${r.payment?.rail ?? ''} ${r.payment?.tx ?? r.payment?.outcome?.tx ?? ''}`,
    );

  step(8, 'Both sides see their ledger entries (buyer debits; seller credits net of the marketplace fee)');
  for (const [who, key] of [
    ['buyer', buyerKey],
    ['seller', sellerKey],
  ] as const) {
    const entries = await api('GET', '/api/v1/ledger?limit=6', undefined, key);
    for (const e of entries) show(who, `${e.entry_type} ${e.amount} ${e.currency} for ${e.gateway_request_id}`);
    const balances = await api('GET', '/api/v1/ledger/balances', undefined, key);
    for (const b of balances) show(`${who} balance`, `${b.role} ${b.account} ${b.amount} ${b.currency}`);
  }

  step(9, 'The Solana-paid call has a receipt, verified with the published keys');
  const paidId = paid.headers.get('x-crochet-request-id');
  let receipt: { receipt: string } | undefined;
  for (let i = 0; i < 30 && !receipt; i++) {
    receipt = await api('GET', `/api/v1/gateway-requests/${paidId}/receipt`, undefined, buyerKey).catch(
      () => undefined,
    );
    if (!receipt) await new Promise((resolve) => setTimeout(resolve, 100)); // the full receipt arrives with the completion
  }
  if (!receipt) throw new Error('no receipt was recorded for the paid call');
  const jwks = (await (await fetch(`${BASE}/.well-known/jwks.json`)).json()) as { keys: object[] };
  const verdict = await verifyReceipt(receipt.receipt, jwks);
  show('receipt valid', verdict.valid);
  if (verdict.valid) show('claims', verdict.claims);

  step(10, 'The seller verifies a Solana wallet (signed sign-in message) and is paid out its earnings on chain');
  // A wallet of the seller's own: an ed25519 key pair, signing the message as a Solana wallet's signMessage does.
  const base58 = getBase58Decoder();
  const payoutKeys = generateKeyPairSync('ed25519');
  const payoutAddress = base58.decode(Buffer.from(payoutKeys.publicKey.export({ format: 'jwk' }).x!, 'base64url'));
  const walletChallenge = await api(
    'POST',
    '/api/v1/me/wallets/challenge',
    { chain: 'solana', address: payoutAddress },
    sellerKey,
  );
  const signed = sign(null, Buffer.from(walletChallenge.message, 'utf8'), payoutKeys.privateKey);
  const verified = await api(
    'POST',
    '/api/v1/me/wallets',
    { chain: 'solana', address: payoutAddress, message: walletChallenge.message, signature: base58.decode(signed) },
    sellerKey,
  );
  show('wallet', `${verified.address} verified: ${verified.verified}`);
  const payable = await api('GET', '/api/v1/me/auto-payout', undefined, sellerKey);
  show('payable', `${payable.payable} USDC`);
  // The marketplace's Solana account received only the Solana payments (the others went to its EVM account); a real
  // marketplace keeps each treasury funded, and here the dev faucet tops it up to what this payout needs.
  const treasuryHas = await usdcBalanceOf(chain, info.solana.pay_to);
  const payableAtomic = toAtomic(payable.payable, 'USDC') ?? 0n;
  if (treasuryHas < payableAtomic) {
    await faucet('/solana', { address: info.solana.pay_to, usdc_atomic: String(payableAtomic - treasuryHas) });
  }
  const before = await usdcBalanceOf(chain, payoutAddress);
  const asked = await api('POST', '/api/v1/payouts', { network: info.solana.network }, sellerKey, {
    'idempotency-key': `demo-payout-${sellerReg.agent.id}`,
  });
  show('payout', `${asked.id} ${asked.status}: ${asked.amount} USDC on ${asked.network} → ${asked.to}`);
  let payout = asked;
  for (let i = 0; i < 150 && payout.status !== 'confirmed' && payout.status !== 'failed'; i++) {
    await new Promise((resolve) => setTimeout(resolve, 200)); // the control plane's transfers job sends and books it
    payout = await api('GET', `/api/v1/payouts/${asked.id}`, undefined, sellerKey);
  }
  show('status', `${payout.status}${payout.error ? ` (${payout.error})` : ''}, tx ${payout.tx}`);
  if (payout.status !== 'confirmed') throw new Error(`the payout did not confirm: ${payout.status}`);
  const after = await usdcBalanceOf(chain, payoutAddress);
  show(
    'wallet USDC on chain',
    `${fromAtomic(before, 'USDC')} → ${fromAtomic(after, 'USDC')} (+${fromAtomic(after - before, 'USDC')})`,
  );
  if (after - before !== BigInt(payout.amount_atomic)) throw new Error('the wallet did not receive the payout');
  for (const b of await api('GET', '/api/v1/ledger/balances', undefined, sellerKey)) {
    show('seller balance', `${b.account} ${b.amount} ${b.currency}`);
  }

  await sellerApp.close();
  process.stdout.write('\ndemo complete\n');
};

main().then(
  () => process.exit(0),
  (error: Error) => {
    if (process.env['DEMO_DEBUG']) console.error(error);
    process.stderr.write(
      `demo failed: ${error.message}${error.cause ? ` (${String((error.cause as Error).message ?? error.cause)})` : ''}\n`,
    );
    process.exit(1);
  },
);
