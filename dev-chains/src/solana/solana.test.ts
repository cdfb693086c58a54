import {
  appendTransactionMessageInstructions,
  compileTransactionMessage,
  createSolanaRpc,
  createTransactionMessage,
  generateKeyPairSigner,
  getBase64EncodedWireTransaction,
  getCompiledTransactionMessageEncoder,
  getSignatureFromTransaction,
  isSolanaError,
  type KeyPairSigner,
  lamports,
  partiallySignTransactionMessageWithSigners,
  pipe,
  type Rpc,
  type Signature,
  SOLANA_ERROR__JSON_RPC__SERVER_ERROR_SEND_TRANSACTION_PREFLIGHT_FAILURE,
  SOLANA_ERROR__JSON_RPC__SERVER_ERROR_TRANSACTION_SIGNATURE_VERIFICATION_FAILURE,
  SOLANA_ERROR__TRANSACTION_ERROR__ALREADY_PROCESSED,
  SOLANA_ERROR__TRANSACTION_ERROR__BLOCKHASH_NOT_FOUND,
  type SolanaRpcApi,
  setTransactionMessageFeePayer,
  setTransactionMessageFeePayerSigner,
  setTransactionMessageLifetimeUsingBlockhash,
  signTransactionMessageWithSigners,
  signature as toSignature,
} from '@solana/kit';
import { getAddMemoInstruction, LEGACY_MEMO_PROGRAM_ADDRESS_V3 } from '@solana-program/memo';
import { getTransferCheckedInstruction } from '@solana-program/token';
import { x402Client } from '@x402/core/client';
import { x402Facilitator } from '@x402/core/facilitator';
import type { PaymentPayload, PaymentRequired, PaymentRequirements } from '@x402/core/types';
import { normalizeNetwork, SOLANA_DEVNET_CAIP2, toFacilitatorSvmSigner, USDC_DEVNET_ADDRESS } from '@x402/svm';
import { ExactSvmScheme as ExactSvmClientScheme } from '@x402/svm/exact/client';
import { ExactSvmScheme as ExactSvmFacilitatorScheme } from '@x402/svm/exact/facilitator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createFundedWallet,
  type FundedWallet,
  generateWallet,
  mintUsdc,
  sendInstructions,
  solBalanceOf,
  transferUsdcWithMemo,
  usdcAtaAddress,
  usdcBalanceOf,
  usdcTokenAccount,
} from './helpers.js';
import { MEMO_PROGRAM, TOKEN_PROGRAM } from './parsers.js';
import { type SolanaDevChain, startSolanaDevChain } from './rpc-server.js';

let chain: SolanaDevChain;
let rpc: Rpc<SolanaRpcApi>;

beforeAll(async () => {
  chain = await startSolanaDevChain();
  rpc = createSolanaRpc(chain.rpcUrl);
});

afterAll(async () => {
  await chain?.stop();
});

async function rawRpc(body: unknown): Promise<any> {
  const res = await fetch(chain.rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return res.json();
}

/** A signed USDC TransferChecked (+ memo) from `from` to `toOwner`, not yet sent. */
async function signedTransfer(from: KeyPairSigner, toOwner: string, amount: bigint, memo: string) {
  const source = await usdcAtaAddress(chain, from.address);
  const destination = await usdcAtaAddress(chain, toOwner);
  const { value: latest } = await rpc.getLatestBlockhash().send();
  const message = pipe(
    createTransactionMessage({ version: 0 }),
    (m) => setTransactionMessageFeePayerSigner(from, m),
    (m) => setTransactionMessageLifetimeUsingBlockhash(latest, m),
    (m) =>
      appendTransactionMessageInstructions(
        [
          getTransferCheckedInstruction({
            source,
            mint: chain.usdcMint,
            destination,
            authority: from,
            amount,
            decimals: 6,
          }),
          getAddMemoInstruction({ memo }, { programAddress: LEGACY_MEMO_PROGRAM_ADDRESS_V3 }),
        ],
        m,
      ),
  );
  const signed = await signTransactionMessageWithSigners(message);
  return { wire: getBase64EncodedWireTransaction(signed), signature: getSignatureFromTransaction(signed) };
}

async function expectRpcError(promise: Promise<unknown>, code: number): Promise<any> {
  try {
    await promise;
  } catch (error) {
    expect(isSolanaError(error)).toBe(true);
    expect((error as any).context.__code).toBe(code);
    return error;
  }
  throw new Error(`expected JSON-RPC error ${code}`);
}

describe('Solana dev chain: JSON-RPC basics', () => {
  it('identifies as devnet with a CAIP-2 id x402 accepts', async () => {
    expect(chain.caip2).toBe(SOLANA_DEVNET_CAIP2);
    expect(normalizeNetwork(chain.caip2)).toBe(chain.caip2);
    const genesis = await rpc.getGenesisHash().send();
    expect(chain.caip2).toBe(`solana:${genesis.slice(0, 32)}`);
    expect(chain.usdcMint).toBe(USDC_DEVNET_ADDRESS);
    expect(await rpc.getHealth().send()).toBe('ok');
    const version = await rpc.getVersion().send();
    expect(typeof version['solana-core']).toBe('string');
  });

  it('serves getLatestBlockhash, getSlot, getBlockHeight, getEpochInfo, isBlockhashValid, rent', async () => {
    const { context, value } = await rpc.getLatestBlockhash().send();
    const slot = await rpc.getSlot().send();
    const height = await rpc.getBlockHeight().send();
    expect(context.slot).toBe(slot);
    expect(typeof value.blockhash).toBe('string');
    expect(value.lastValidBlockHeight).toBe(height + 150n);
    expect((await rpc.isBlockhashValid(value.blockhash).send()).value).toBe(true);
    const epoch = await rpc.getEpochInfo().send();
    expect(epoch.absoluteSlot).toBe(slot);
    expect(epoch.blockHeight).toBe(height);
    expect(await rpc.getMinimumBalanceForRentExemption(165n).send()).toBe(2039280n);
  });

  it('airdrops through a real recorded transfer and reports balances', async () => {
    const wallet = await generateKeyPairSigner();
    expect((await rpc.getBalance(wallet.address).send()).value).toBe(0n);
    const slotBefore = await rpc.getSlot().send();
    const { value: before } = await rpc.getLatestBlockhash().send();
    const sig = await rpc.requestAirdrop(wallet.address, lamports(2_000_000_000n)).send();
    expect((await rpc.getBalance(wallet.address).send()).value).toBe(2_000_000_000n);
    // The transaction closed a block: new slot and blockhash, the old blockhash is still valid.
    expect(await rpc.getSlot().send()).toBe(slotBefore + 1n);
    const { value: after } = await rpc.getLatestBlockhash().send();
    expect(after.blockhash).not.toBe(before.blockhash);
    expect((await rpc.isBlockhashValid(before.blockhash).send()).value).toBe(true);

    const { value: statuses } = await rpc.getSignatureStatuses([sig]).send();
    expect(statuses[0]).toMatchObject({ confirmationStatus: 'finalized', err: null, slot: slotBefore });
    const tx = await rpc
      .getTransaction(sig, { encoding: 'jsonParsed', maxSupportedTransactionVersion: 0, commitment: 'confirmed' })
      .send();
    expect(tx?.meta?.err).toBeNull();
    expect(tx?.transaction.message.instructions[0]).toMatchObject({
      program: 'system',
      parsed: { type: 'transfer', info: { destination: wallet.address, lamports: 2_000_000_000n } },
    });
  });

  it('exposes the USDC-like mint (6 decimals) with jsonParsed and base64', async () => {
    const parsed = await rpc.getAccountInfo(chain.usdcMint, { encoding: 'jsonParsed' }).send();
    expect(parsed.value?.owner).toBe(TOKEN_PROGRAM);
    expect(parsed.value?.data).toMatchObject({
      program: 'spl-token',
      parsed: { type: 'mint', info: { decimals: 6, mintAuthority: chain.mintAuthority.address, isInitialized: true } },
      space: 82n,
    });
    const raw = await rpc.getAccountInfo(chain.usdcMint, { encoding: 'base64' }).send();
    expect(raw.value?.data[1]).toBe('base64');
    expect(Buffer.from(raw.value!.data[0], 'base64').length).toBe(82);
    const multiple = await rpc
      .getMultipleAccounts([chain.usdcMint, (await generateKeyPairSigner()).address], { encoding: 'base64' })
      .send();
    expect(multiple.value[0]?.owner).toBe(TOKEN_PROGRAM);
    expect(multiple.value[1]).toBeNull();
  });

  it('answers batch requests and unknown methods like a JSON-RPC 2.0 server', async () => {
    const responses = await rawRpc([
      { jsonrpc: '2.0', id: 1, method: 'getSlot' },
      { jsonrpc: '2.0', id: 2, method: 'getHealth' },
      { jsonrpc: '2.0', id: 3, method: 'noSuchMethod' },
    ]);
    expect(responses).toHaveLength(3);
    expect(typeof responses[0].result).toBe('number');
    expect(responses[1]).toEqual({ jsonrpc: '2.0', id: 2, result: 'ok' });
    expect(responses[2].error.code).toBe(-32601);
    expect((await rawRpc({ jsonrpc: '2.0', id: 4, method: 'getBalance', params: ['nope'] })).error.code).toBe(-32602);
  });
});

describe('Solana dev chain: USDC transfers', () => {
  let buyer: FundedWallet;
  let seller: KeyPairSigner;

  beforeAll(async () => {
    buyer = await createFundedWallet(chain, { sol: 1, usdcAtomic: 5_000_000n });
    seller = await generateKeyPairSigner();
  });

  it('funds wallets with SOL and USDC', async () => {
    expect(await usdcBalanceOf(chain, buyer.address)).toBe(5_000_000n);
    expect(await solBalanceOf(chain, buyer.address)).toBe(1_000_000_000n);
    const balance = await rpc.getTokenAccountBalance(buyer.tokenAccount).send();
    expect(balance.value).toEqual({ amount: '5000000', decimals: 6, uiAmount: 5, uiAmountString: '5' });
    expect(buyer.secretKey).toHaveLength(64);
  });

  it('records a direct transfer with memo: token balances, owners, memo, fee', async () => {
    const memo = 'pay_01HXYZ-direct';
    const sig = await transferUsdcWithMemo(chain, buyer.signer, seller.address, 1_250_000n, memo);
    const sellerAta = await usdcAtaAddress(chain, seller.address);
    expect(await usdcBalanceOf(chain, seller.address)).toBe(1_250_000n);
    expect(await usdcBalanceOf(chain, buyer.address)).toBe(3_750_000n);

    const tx = await rpc
      .getTransaction(sig, { encoding: 'jsonParsed', maxSupportedTransactionVersion: 0, commitment: 'confirmed' })
      .send();
    expect(tx).not.toBeNull();
    const meta = tx!.meta!;
    expect(meta.err).toBeNull();
    expect(meta.status).toEqual({ Ok: null });
    expect(meta.fee).toBe(5000n);
    expect(typeof tx!.blockTime).toBe('bigint');
    expect(tx!.version).toBe(0);
    const keys = tx!.transaction.message.accountKeys;
    expect(keys[0]).toEqual({ pubkey: buyer.address, signer: true, writable: true, source: 'transaction' });
    expect(meta.preBalances).toHaveLength(keys.length);
    expect(meta.postBalances).toHaveLength(keys.length);
    expect(meta.preBalances[0]! - meta.postBalances[0]!).toBeGreaterThanOrEqual(5000n);

    const keyOf = (b: { accountIndex: number }) => keys[b.accountIndex]!.pubkey;
    const pre = meta.preTokenBalances!;
    const post = meta.postTokenBalances!;
    // The seller's ATA was created by this transaction: only in postTokenBalances.
    expect(pre.map(keyOf)).toEqual([buyer.tokenAccount]);
    expect(pre[0]).toMatchObject({
      mint: chain.usdcMint,
      owner: buyer.address,
      programId: TOKEN_PROGRAM,
      uiTokenAmount: { amount: '5000000', decimals: 6, uiAmount: 5, uiAmountString: '5' },
    });
    const postBuyer = post.find((b) => keyOf(b) === buyer.tokenAccount);
    const postSeller = post.find((b) => keyOf(b) === sellerAta);
    expect(postBuyer).toMatchObject({
      owner: buyer.address,
      uiTokenAmount: { amount: '3750000', uiAmountString: '3.75' },
    });
    expect(postSeller).toMatchObject({
      owner: seller.address,
      mint: chain.usdcMint,
      uiTokenAmount: { amount: '1250000', decimals: 6, uiAmount: 1.25, uiAmountString: '1.25' },
    });

    const instructions = tx!.transaction.message.instructions as any[];
    expect(instructions.find((ix) => ix.program === 'spl-memo')).toEqual({
      program: 'spl-memo',
      programId: MEMO_PROGRAM,
      parsed: memo,
      stackHeight: null,
    });
    expect(instructions.find((ix) => ix.program === 'spl-associated-token-account')?.parsed.type).toBe(
      'createIdempotent',
    );
    expect(instructions.find((ix) => ix.program === 'spl-token')?.parsed).toEqual({
      type: 'transferChecked',
      info: {
        source: buyer.tokenAccount,
        mint: chain.usdcMint,
        destination: sellerAta,
        authority: buyer.address,
        // kit decodes integers outside its allowlisted paths as bigint, as it would from a real cluster.
        tokenAmount: { amount: '1250000', decimals: 6n, uiAmount: 1.25, uiAmountString: '1.25' },
      },
    });
    expect(meta.logMessages).toContain(`Program ${MEMO_PROGRAM} invoke [1]`);
    expect(meta.logMessages?.some((line) => line.includes(memo))).toBe(true);
    // The ATA creation's CPIs show up as parsed inner instructions.
    expect((meta.innerInstructions ?? []).length).toBeGreaterThan(0);

    // encoding 'json': raw account keys and compiled instructions.
    const json = await rpc.getTransaction(sig, { encoding: 'json', maxSupportedTransactionVersion: 0 }).send();
    expect(json!.transaction.message.accountKeys[0]).toBe(buyer.address);
    expect(json!.transaction.message.header.numRequiredSignatures).toBe(1);
    expect(json!.meta!.loadedAddresses).toEqual({ readonly: [], writable: [] });
    // A v0 transaction without maxSupportedTransactionVersion gets the real RPC's -32015.
    const legacyClient = await rawRpc({ jsonrpc: '2.0', id: 1, method: 'getTransaction', params: [sig, 'json'] });
    expect(legacyClient.error.code).toBe(-32015);

    const history = await rpc.getSignaturesForAddress(sellerAta).send();
    expect(history[0]).toMatchObject({ signature: sig, err: null, memo: `[${memo.length}] ${memo}` });
  });

  it('reports signature statuses (finalized for landed, null for unknown)', async () => {
    const sig = await transferUsdcWithMemo(chain, buyer.signer, seller.address, 1n, 'status');
    const unknown = toSignature('1'.repeat(64));
    const { value } = await rpc.getSignatureStatuses([sig, unknown], { searchTransactionHistory: true }).send();
    expect(value[0]).toMatchObject({ confirmationStatus: 'finalized', err: null, confirmations: null });
    expect(value[0]?.status).toEqual({ Ok: null });
    expect(value[1]).toBeNull();
    expect(
      await rpc.getTransaction(unknown, { encoding: 'json', maxSupportedTransactionVersion: 0 }).send(),
    ).toBeNull();
  });

  it('finality: held back, a landed transfer is confirmed and counts its confirmations until enough blocks top it', async () => {
    chain.setFinalizationDepth(4);
    try {
      const sig = await transferUsdcWithMemo(chain, buyer.signer, seller.address, 1n, 'finality');
      const status = async () => (await rpc.getSignatureStatuses([sig]).send()).value[0];
      const at = (commitment: 'confirmed' | 'finalized') =>
        rpc.getTransaction(sig, { commitment, encoding: 'json', maxSupportedTransactionVersion: 0 }).send();
      expect(await status()).toMatchObject({ confirmationStatus: 'confirmed', confirmations: 0n, err: null });
      expect(await at('confirmed')).not.toBeNull();
      // As on a cluster, history is served at `finalized` unless asked otherwise (kit itself asks for `confirmed`).
      expect(await at('finalized')).toBeNull();
      const raw = await fetch(chain.rpcUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'getTransaction', params: [sig, { encoding: 'json' }] }),
      });
      expect(((await raw.json()) as { result: unknown }).result).toBeNull();
      const history = await rpc.getSignaturesForAddress(buyer.address, { commitment: 'confirmed', limit: 1 }).send();
      expect(history[0]).toMatchObject({ signature: sig, confirmationStatus: 'confirmed' });
      const final = await rpc.getSignaturesForAddress(buyer.address, { commitment: 'finalized', limit: 1 }).send();
      expect(final[0]?.signature).not.toBe(sig);
      await expect(
        rpc
          .getTransaction(sig, {
            commitment: 'processed' as never,
            encoding: 'json',
            maxSupportedTransactionVersion: 0,
          })
          .send(),
      ).rejects.toThrow(/commitment below `confirmed`/);
      expect(await rpc.getSlot({ commitment: 'finalized' }).send()).toBeLessThan(await rpc.getSlot().send());

      chain.advanceSlots(3);
      expect(await status()).toMatchObject({ confirmationStatus: 'confirmed', confirmations: 3n });
      chain.advanceSlots(1);
      expect(await status()).toMatchObject({ confirmationStatus: 'finalized', confirmations: null });
      expect(await at('finalized')).not.toBeNull();
    } finally {
      chain.setFinalizationDepth(0);
    }
  });

  it("also runs @solana-program/memo's default memo program address", async () => {
    const sig = await sendInstructions(chain, buyer.signer, [getAddMemoInstruction({ memo: 'default address' })]);
    const tx = await rpc.getTransaction(sig, { encoding: 'jsonParsed', maxSupportedTransactionVersion: 0 }).send();
    expect(tx!.transaction.message.instructions[0]).toMatchObject({ program: 'spl-memo', parsed: 'default address' });
  });

  it('lands identical transfers sent one after another as separate transactions', async () => {
    const before = await usdcBalanceOf(chain, seller.address);
    const a = await transferUsdcWithMemo(chain, buyer.signer, seller.address, 10n, 'same');
    const b = await transferUsdcWithMemo(chain, buyer.signer, seller.address, 10n, 'same');
    expect(a).not.toBe(b);
    expect(await usdcBalanceOf(chain, seller.address)).toBe(before + 20n);
  });

  it('rejects a failing transaction in preflight with the logs, and nothing changes', async () => {
    const poor = await createFundedWallet(chain, { sol: 1, usdcAtomic: 1_000n });
    const { wire, signature } = await signedTransfer(poor.signer, seller.address, 5_000n, 'too much');
    const slot = await rpc.getSlot().send();
    const sol = await solBalanceOf(chain, poor.address);
    const error = await expectRpcError(
      rpc.sendTransaction(wire, { encoding: 'base64' }).send(),
      SOLANA_ERROR__JSON_RPC__SERVER_ERROR_SEND_TRANSACTION_PREFLIGHT_FAILURE,
    );
    expect(isSolanaError(error, SOLANA_ERROR__JSON_RPC__SERVER_ERROR_SEND_TRANSACTION_PREFLIGHT_FAILURE)).toBe(true);
    expect(error.context.logs).toContain('Program log: Error: insufficient funds');
    // kit turns `err: { InstructionError: [0, { Custom: 1 }] }` into the cause.
    expect(error.cause?.context).toMatchObject({ index: 0, code: 1 });
    expect(await usdcBalanceOf(chain, poor.address)).toBe(1_000n);
    expect(await solBalanceOf(chain, poor.address)).toBe(sol);
    expect(await rpc.getSlot().send()).toBe(slot);
    expect((await rpc.getSignatureStatuses([signature]).send()).value[0]).toBeNull();

    // With skipPreflight it lands as a failed transaction: fee charged, tokens untouched, err recorded.
    const sig = await rpc.sendTransaction(wire, { encoding: 'base64', skipPreflight: true }).send();
    expect(sig).toBe(signature);
    const status = (await rpc.getSignatureStatuses([sig]).send()).value[0];
    const failure = { InstructionError: [0n, { Custom: 1n }] }; // kit decodes these integers as bigint
    expect(status?.err).toEqual(failure);
    const tx = await rpc.getTransaction(sig, { encoding: 'jsonParsed', maxSupportedTransactionVersion: 0 }).send();
    expect(tx!.meta!.err).toEqual(failure);
    expect(tx!.meta!.status).toEqual({ Err: failure });
    expect(await solBalanceOf(chain, poor.address)).toBe(sol - 5000n);
    expect(await usdcBalanceOf(chain, poor.address)).toBe(1_000n);
  });

  it('rejects bad signatures, replays and expired blockhashes', async () => {
    const { wire, signature } = await signedTransfer(buyer.signer, seller.address, 7n, 'replay');
    // Tampered signature → -32003.
    const bytes = Buffer.from(wire, 'base64');
    bytes[1] = (bytes[1] ?? 0) ^ 0xff;
    await expectRpcError(
      rpc.sendTransaction(bytes.toString('base64') as typeof wire, { encoding: 'base64' }).send(),
      SOLANA_ERROR__JSON_RPC__SERVER_ERROR_TRANSACTION_SIGNATURE_VERIFICATION_FAILURE,
    );
    // First send lands; a replay is AlreadyProcessed (preflight) or a no-op returning the same signature.
    const before = await usdcBalanceOf(chain, seller.address);
    expect(await rpc.sendTransaction(wire, { encoding: 'base64' }).send()).toBe(signature);
    const replay = await expectRpcError(
      rpc.sendTransaction(wire, { encoding: 'base64' }).send(),
      SOLANA_ERROR__JSON_RPC__SERVER_ERROR_SEND_TRANSACTION_PREFLIGHT_FAILURE,
    );
    expect(isSolanaError(replay.cause, SOLANA_ERROR__TRANSACTION_ERROR__ALREADY_PROCESSED)).toBe(true);
    expect(await rpc.sendTransaction(wire, { encoding: 'base64', skipPreflight: true }).send()).toBe(signature);
    expect(await usdcBalanceOf(chain, seller.address)).toBe(before + 7n);

    // A blockhash older than 150 blocks is gone.
    const stale = await signedTransfer(buyer.signer, seller.address, 8n, 'stale');
    const staleHash = (await rpc.getLatestBlockhash().send()).value.blockhash;
    chain.advanceSlots(151);
    expect((await rpc.isBlockhashValid(staleHash).send()).value).toBe(false);
    const expired = await expectRpcError(
      rpc.sendTransaction(stale.wire, { encoding: 'base64' }).send(),
      SOLANA_ERROR__JSON_RPC__SERVER_ERROR_SEND_TRANSACTION_PREFLIGHT_FAILURE,
    );
    expect(isSolanaError(expired.cause, SOLANA_ERROR__TRANSACTION_ERROR__BLOCKHASH_NOT_FOUND)).toBe(true);
    expect(await usdcBalanceOf(chain, seller.address)).toBe(before + 7n);
  });

  it('simulates partially signed transactions (sigVerify false) and replaces blockhashes', async () => {
    const feePayer = await chain.createFeePayer();
    const source = await usdcAtaAddress(chain, buyer.address);
    const destination = await usdcAtaAddress(chain, seller.address);
    const { value: latest } = await rpc.getLatestBlockhash().send();
    const message = pipe(
      createTransactionMessage({ version: 0 }),
      (m) => setTransactionMessageFeePayer(feePayer.address, m),
      (m) => setTransactionMessageLifetimeUsingBlockhash(latest, m),
      (m) =>
        appendTransactionMessageInstructions(
          [
            getTransferCheckedInstruction({
              source,
              mint: chain.usdcMint,
              destination,
              authority: buyer.signer,
              amount: 3n,
              decimals: 6,
            }),
          ],
          m,
        ),
    );
    const partial = await partiallySignTransactionMessageWithSigners(message);
    const wire = getBase64EncodedWireTransaction(partial);
    const sim = await rpc
      .simulateTransaction(wire, {
        encoding: 'base64',
        sigVerify: false,
        replaceRecentBlockhash: false,
        commitment: 'confirmed',
        accounts: { addresses: [destination], encoding: 'base64' },
      })
      .send();
    expect(sim.value.err).toBeNull();
    expect(sim.value.logs?.[0]).toBe(`Program ${TOKEN_PROGRAM} invoke [1]`);
    expect(sim.value.unitsConsumed).toBeGreaterThan(0n);
    expect(sim.value.accounts?.[0]?.owner).toBe(TOKEN_PROGRAM);
    // Missing fee payer signature: sigVerify true → -32003.
    await expectRpcError(
      rpc.simulateTransaction(wire, { encoding: 'base64', sigVerify: true }).send(),
      SOLANA_ERROR__JSON_RPC__SERVER_ERROR_TRANSACTION_SIGNATURE_VERIFICATION_FAILURE,
    );
    // Nothing was sent.
    expect(sim.context.slot).toBe(await rpc.getSlot().send());

    chain.advanceSlots(200);
    const expired = await rpc.simulateTransaction(wire, { encoding: 'base64' }).send();
    expect(expired.value.err).toBe('BlockhashNotFound');
    const replaced = await rpc.simulateTransaction(wire, { encoding: 'base64', replaceRecentBlockhash: true }).send();
    expect(replaced.value.err).toBeNull();
    expect(replaced.value.replacementBlockhash?.blockhash).toBe(
      (await rpc.getLatestBlockhash().send()).value.blockhash,
    );

    // getFeeForMessage: 5000 per signature for a fresh message, null for an expired blockhash.
    const { value: fresh } = await rpc.getLatestBlockhash().send();
    const compiled = compileTransactionMessage(setTransactionMessageLifetimeUsingBlockhash(fresh, message));
    const b64 = Buffer.from(getCompiledTransactionMessageEncoder().encode(compiled)).toString('base64');
    expect((await rpc.getFeeForMessage(b64 as never).send()).value).toBe(10000n);
    const oldCompiled = compileTransactionMessage(message);
    const oldB64 = Buffer.from(getCompiledTransactionMessageEncoder().encode(oldCompiled)).toString('base64');
    expect((await rpc.getFeeForMessage(oldB64 as never).send()).value).toBeNull();
  });
});

describe('Solana dev chain: x402 exact SVM payments end to end', () => {
  let feePayer: KeyPairSigner;
  let facilitator: x402Facilitator;
  let payTo: string;

  const requirementsFor = (overrides: Partial<PaymentRequirements> = {}): PaymentRequirements => ({
    scheme: 'exact',
    network: chain.caip2 as PaymentRequirements['network'],
    asset: chain.usdcMint,
    amount: '10000',
    payTo,
    maxTimeoutSeconds: 60,
    extra: { feePayer: feePayer.address },
    ...overrides,
  });

  const paymentRequiredFor = (requirements: PaymentRequirements): PaymentRequired => ({
    x402Version: 2,
    resource: { url: 'http://localhost/api/v1/call/listing', description: 'test', mimeType: 'application/json' },
    accepts: [requirements],
  });

  const clientFor = (signer: KeyPairSigner) =>
    new x402Client().register(
      chain.caip2 as PaymentRequirements['network'],
      new ExactSvmClientScheme(signer, { rpcUrl: chain.rpcUrl }),
    );

  beforeAll(async () => {
    feePayer = await chain.createFeePayer(5_000_000_000n);
    const signer = toFacilitatorSvmSigner(feePayer, { defaultRpcUrl: chain.rpcUrl });
    facilitator = new x402Facilitator().register(
      chain.caip2 as PaymentRequirements['network'],
      new ExactSvmFacilitatorScheme(signer),
    );
    const seller = await generateWallet();
    payTo = seller.signer.address;
    await usdcTokenAccount(chain, payTo);
  });

  it('advertises the fee payer via getSupported', () => {
    const kind = facilitator.getSupported().kinds.find((k) => k.network === chain.caip2);
    expect(kind).toMatchObject({ scheme: 'exact', x402Version: 2, extra: { feePayer: feePayer.address } });
  });

  it('creates, verifies and settles a payment of 10000 atomic USDC; the facilitator pays the fee', async () => {
    const buyer = await createFundedWallet(chain, { sol: 0, usdcAtomic: 1_000_000n });
    const requirements = requirementsFor({ extra: { feePayer: feePayer.address, memo: 'pay_x402_demo' } });
    const payload: PaymentPayload = await clientFor(buyer.signer).createPaymentPayload(
      paymentRequiredFor(requirements),
    );
    expect(payload.x402Version).toBe(2);
    expect(typeof payload.payload['transaction']).toBe('string');

    const verified = await facilitator.verify(payload, requirements);
    expect(verified).toMatchObject({ isValid: true, payer: buyer.address });

    const feePayerBefore = await solBalanceOf(chain, feePayer.address);
    const settled = await facilitator.settle(payload, requirements);
    expect(settled).toMatchObject({ success: true, network: chain.caip2, payer: buyer.address });
    const sig = settled.transaction as Signature;

    expect(await usdcBalanceOf(chain, buyer.address)).toBe(990_000n);
    expect(await usdcBalanceOf(chain, payTo)).toBe(10_000n);
    expect(await solBalanceOf(chain, buyer.address)).toBe(0n);

    const tx = await rpc
      .getTransaction(sig, { encoding: 'jsonParsed', maxSupportedTransactionVersion: 0, commitment: 'confirmed' })
      .send();
    const meta = tx!.meta!;
    const keys = tx!.transaction.message.accountKeys;
    expect(keys[0]?.pubkey).toBe(feePayer.address);
    expect(meta.err).toBeNull();
    // 2 signatures + priority fee (20000 CU × 1 µlamport → 1 lamport): exactly what the fee payer lost.
    expect(meta.fee).toBe(10_001n);
    expect(feePayerBefore - (await solBalanceOf(chain, feePayer.address))).toBe(meta.fee);
    const payToAta = await usdcAtaAddress(chain, payTo);
    const post = meta.postTokenBalances!.find((b) => keys[b.accountIndex]?.pubkey === payToAta);
    expect(post).toMatchObject({ owner: payTo, mint: chain.usdcMint, uiTokenAmount: { amount: '10000' } });
    const instructions = tx!.transaction.message.instructions as any[];
    expect(instructions.find((ix) => ix.program === 'spl-memo')?.parsed).toBe('pay_x402_demo');
    expect(instructions.find((ix) => ix.program === 'spl-token')?.parsed).toMatchObject({
      type: 'transferChecked',
      info: { authority: buyer.address, destination: payToAta, tokenAmount: { amount: '10000' } },
    });

    // The same payload cannot be settled twice by this facilitator (its settlement cache)...
    const again = await facilitator.settle(payload, requirements);
    expect(again).toMatchObject({ success: false, errorReason: 'duplicate_settlement' });
    // ...while a fresh facilitator re-signs it into the very same transaction, which the chain (like a real
    // cluster) does not execute twice: "success" with the same signature and no second transfer. A gateway must
    // therefore dedupe on the settled signature itself.
    const other = new x402Facilitator().register(
      chain.caip2 as PaymentRequirements['network'],
      new ExactSvmFacilitatorScheme(toFacilitatorSvmSigner(feePayer, { defaultRpcUrl: chain.rpcUrl })),
    );
    const replayed = await other.settle(payload, requirements);
    expect(replayed).toMatchObject({ success: true, transaction: sig });
    expect(await usdcBalanceOf(chain, payTo)).toBe(10_000n);
    expect(await usdcBalanceOf(chain, buyer.address)).toBe(990_000n);
  });

  it('rejects payloads that do not match the requirements or cannot pay', async () => {
    const buyer = await createFundedWallet(chain, { sol: 0, usdcAtomic: 5_000n });
    const requirements = requirementsFor({ amount: '4000' });
    const payload = await clientFor(buyer.signer).createPaymentPayload(paymentRequiredFor(requirements));
    expect(
      await facilitator.verify(payload, requirementsFor({ amount: '4001', extra: requirements.extra })),
    ).toMatchObject({ isValid: false });

    const tooMuch = requirementsFor({ amount: '6000' });
    const broke = await clientFor(buyer.signer).createPaymentPayload(paymentRequiredFor(tooMuch));
    const verdict = await facilitator.verify(broke, tooMuch);
    expect(verdict).toMatchObject({ isValid: false, invalidReason: 'invalid_exact_svm_transaction_simulation_failed' });
    const settled = await facilitator.settle(broke, tooMuch);
    expect(settled.success).toBe(false);
    expect(await usdcBalanceOf(chain, buyer.address)).toBe(5_000n);

    await mintUsdc(chain, buyer.address, 1_000n);
    expect((await facilitator.settle(broke, tooMuch)).success).toBe(true);
    expect(await usdcBalanceOf(chain, buyer.address)).toBe(0n);
  });
});
