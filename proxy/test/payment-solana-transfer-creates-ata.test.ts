import {
  createFundedWallet,
  generateSolanaWallet,
  transferUsdcWithMemo,
  usdcAtaAddress,
  usdcBalanceOf,
} from '@crochet/dev-chains';
import { getBase58Decoder } from '@solana/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPaidListing, type PaymentStack, paymentTx, startPaymentStack } from './payment-stack.js';
import { gatewayCall, startSeller, type TestSeller } from './stack.js';

/**
 * payTo is an owner address (issue 14): a buyer's wallet may open the marketplace's USDC associated token account in
 * the same transaction as the transfer (CreateAssociatedTokenAccountIdempotent + TransferChecked + memo). The gateway
 * accepts it, whether the account is really created by it or already existed. On the litesvm dev chain, whose
 * getTransaction reports token balances as a cluster does (a new account has no pre-balance).
 */

let stack: PaymentStack;
let seller: TestSeller;
let listing: string;
let buyerKey: string;
let payTo: string;

beforeAll(async () => {
  // A marketplace owner without a USDC token account yet.
  const owner = await generateSolanaWallet();
  payTo = owner.signer.address;
  const treasury = {
    CROCHET_SOLANA_PAY_TO: payTo,
    CROCHET_SOLANA_TREASURY_KEY: getBase58Decoder().decode(owner.secretKey),
  };
  stack = await startPaymentStack({ proxyEnv: { CROCHET_SOLANA_PAY_TO: payTo }, planeEnv: treasury });
  seller = await startSeller();
  const sellerAgent = await stack.plane.register('seller');
  buyerKey = (await stack.plane.register('buyer')).apiKey;
  listing = await createPaidListing(stack, sellerAgent.apiKey, `${seller.url}/paid`, '0.01');
}, 60_000);
afterAll(async () => {
  await seller?.close();
  await stack?.stop();
});

const payWithAtaCreation = async () => {
  const unpaid = await gatewayCall(stack.proxies[0]!, listing, buyerKey, { body: { q: 1 } });
  expect(unpaid.status).toBe(402);
  expect(unpaid.json.payment.accepts[0].payTo).toBe(payTo);
  const wallet = await createFundedWallet(stack.solana, { sol: 1, usdcAtomic: 1_000_000n });
  const signature = await transferUsdcWithMemo(
    stack.solana,
    wallet.signer,
    payTo,
    10_000n,
    unpaid.json.payment.payment_request_id,
    { createDestination: true },
  );
  return gatewayCall(stack.proxies[0]!, listing, buyerKey, {
    body: { q: 1 },
    headers: paymentTx(stack.solana.caip2, signature),
  });
};

describe('a direct Solana transfer whose transaction also creates the recipient token account', () => {
  it('pays when the token account is created by that very transaction', async () => {
    const ata = await usdcAtaAddress(stack.solana, payTo);
    const { value: before } = await stack.solana.rpc.getAccountInfo(ata, { encoding: 'base64' }).send();
    expect(before).toBeNull();
    const paid = await payWithAtaCreation();
    expect(paid.status, paid.text).toBe(200);
    expect(await usdcBalanceOf(stack.solana, payTo)).toBe(10_000n);
    expect(seller.requests).toHaveLength(1);
  });

  it('pays when the (idempotent) creation finds the account already there', async () => {
    const paid = await payWithAtaCreation();
    expect(paid.status, paid.text).toBe(200);
    expect(await usdcBalanceOf(stack.solana, payTo)).toBe(20_000n);
    expect(seller.requests).toHaveLength(2);
  });
});
