/**
 * Real anvil, real TestUSDC, real x402 code (no mocks): the local EVM rail behaves like USDC on a public chain.
 */
import { existsSync } from 'node:fs';
import { x402Client } from '@x402/core/client';
import { x402Facilitator } from '@x402/core/facilitator';
import { decodePaymentSignatureHeader, encodePaymentSignatureHeader } from '@x402/core/http';
import type { Network, PaymentPayload, PaymentRequired, PaymentRequirements } from '@x402/core/types';
import type { PaymentPayloadV1, PaymentRequiredV1, PaymentRequirementsV1 } from '@x402/core/types/v1';
import { type FacilitatorEvmSigner, toClientEvmSigner, toFacilitatorEvmSigner } from '@x402/evm';
import { ExactEvmScheme as ExactEvmClient } from '@x402/evm/exact/client';
import { ExactEvmScheme as ExactEvmFacilitator } from '@x402/evm/exact/facilitator';
import { ExactEvmSchemeV1 as ExactEvmClientV1 } from '@x402/evm/exact/v1/client';
import { ExactEvmSchemeV1 as ExactEvmFacilitatorV1 } from '@x402/evm/exact/v1/facilitator';
import {
  type Address,
  concat,
  createWalletClient,
  getAddress,
  type Hex,
  hashDomain,
  http,
  numberToHex,
  parseSignature,
  publicActions,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  ANVIL_DEV_ACCOUNTS,
  authorizationState,
  compileTestUsdc,
  decodeUsdcLogs,
  devAccount,
  devChain,
  devPublicClient,
  type EvmDevChain,
  MULTICALL3_ADDRESS,
  mintUsdc,
  randomAuthorizationNonce,
  signTransferAuthorization,
  startAnvil,
  startEvmDevChain,
  submitTransferWithAuthorization,
  type TransferAuthorization,
  testUsdcAbi,
  testUsdcCacheFile,
  transferUsdc,
  usdcBalance,
  usdcDomain,
} from './index.js';

const dev = (i: number) => ANVIL_DEV_ACCOUNTS[i]!;
const [deployer, alice, bob, relayer, merchant, carol] = [dev(0), dev(1), dev(2), dev(3), dev(4), dev(5)];
const USDC = 1_000_000n;
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

/** An x402 facilitator signer (what @x402/evm's facilitator needs) for a settler key on a dev chain. */
const facilitatorSignerFor = (env: { rpcUrl: string; chainId: number }, key: Hex): FacilitatorEvmSigner => {
  // devAccount: a local account with a nonce manager, so concurrent settlements from one key do not collide.
  const account = devAccount(env, key);
  const client = createWalletClient({
    account,
    chain: devChain(env.rpcUrl, env.chainId),
    transport: http(env.rpcUrl),
    pollingInterval: 50,
  }).extend(publicActions);
  return toFacilitatorEvmSigner(
    {
      address: account.address,
      getCode: (args) => client.getCode(args),
      readContract: (args) => client.readContract({ ...args, args: args.args ?? [] } as never),
      verifyTypedData: (args) => client.verifyTypedData(args as never),
      writeContract: (args) => client.writeContract({ ...args, args: args.args ?? [] } as never),
      sendTransaction: (args) => client.sendTransaction(args),
      waitForTransactionReceipt: (args) => client.waitForTransactionReceipt(args),
    },
    { confirmationTimeoutMs: 20_000 },
  );
};

const latestTimestamp = async (chain: EvmDevChain): Promise<bigint> =>
  (await devPublicClient(chain).getBlock({ blockTag: 'latest' })).timestamp;

describe('EVM dev chain (anvil + TestUSDC)', () => {
  let chain: EvmDevChain;

  beforeAll(async () => {
    chain = await startEvmDevChain();
    await mintUsdc(chain, alice.address, 1_000n * USDC);
  });
  afterAll(async () => {
    await chain?.stop();
  });

  test('anvil runs the requested chain with its 10 funded dev accounts', async () => {
    expect(chain.chainId).toBe(31337);
    expect(chain.caip2).toBe('eip155:31337');
    expect(chain.rpcUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const client = devPublicClient(chain);
    expect(await client.getChainId()).toBe(31337);
    const nodeAccounts = (await client.request({ method: 'eth_accounts' } as never)) as Address[];
    expect(nodeAccounts.map((a) => getAddress(a))).toEqual(chain.accounts.map((a) => a.address));
    for (const account of chain.accounts) {
      expect(privateKeyToAccount(account.privateKey).address).toBe(account.address);
    }
    expect(await client.getBalance({ address: carol.address })).toBeGreaterThan(0n);
    // Multicall3 at its canonical address, as on public chains (x402 diagnoses failed verifications through it).
    expect((await client.getCode({ address: MULTICALL3_ADDRESS }))?.length).toBeGreaterThan(100);
    const abi = await testUsdcAbi();
    expect(
      await client.multicall({
        contracts: [
          { address: chain.usdc, abi, functionName: 'symbol' },
          { address: chain.usdc, abi, functionName: 'decimals' },
        ],
        allowFailure: false,
      }),
    ).toEqual(['USDC', 6]);
  });

  test('the compiled contract is cached on disk', async () => {
    expect(existsSync(testUsdcCacheFile())).toBe(true);
    expect((await compileTestUsdc()).bytecode).toMatch(/^0x[0-9a-f]+$/);
  });

  test('TestUSDC metadata and EIP-712 domain', async () => {
    const client = devPublicClient(chain);
    const abi = await testUsdcAbi();
    const read = (functionName: string, args: unknown[] = []) =>
      client.readContract({ address: chain.usdc, abi, functionName, args });
    expect(await read('name')).toBe('USD Coin');
    expect(await read('symbol')).toBe('USDC');
    expect(await read('decimals')).toBe(6);
    expect(await read('version')).toBe('2');
    expect(await read('owner')).toBe(deployer.address);
    expect(await usdcDomain(chain)).toEqual({ name: chain.usdcName, version: chain.usdcVersion });
    const domain = { name: 'USD Coin', version: '2', chainId: chain.chainId, verifyingContract: chain.usdc } as const;
    const separator = hashDomain({
      domain: { ...domain, chainId: BigInt(domain.chainId) },
      types: {
        EIP712Domain: [
          { name: 'name', type: 'string' },
          { name: 'version', type: 'string' },
          { name: 'chainId', type: 'uint256' },
          { name: 'verifyingContract', type: 'address' },
        ],
      },
    });
    expect(await read('DOMAIN_SEPARATOR')).toBe(separator);
    const eip5267 = await client.getEip712Domain({ address: chain.usdc });
    expect({ ...eip5267.domain, chainId: Number(eip5267.domain.chainId) }).toMatchObject(domain);
    expect(eip5267.fields).toBe('0x0f');
    expect(eip5267.extensions).toEqual([]);
  });

  test('mint: the owner mints, anyone else is refused', async () => {
    await mintUsdc(chain, bob.address, 5n * USDC);
    expect(await usdcBalance(chain, bob.address)).toBe(5n * USDC);
    await expect(mintUsdc({ ...chain, deployerKey: bob.privateKey }, bob.address, 1n)).rejects.toThrow(
      /caller is not the owner/,
    );
  });

  test('plain transfer moves funds and emits Transfer', async () => {
    const before = await usdcBalance(chain, merchant.address);
    const hash = await transferUsdc(chain, alice.privateKey, merchant.address, 2n * USDC);
    const receipt = await devPublicClient(chain).getTransactionReceipt({ hash });
    expect(receipt.status).toBe('success');
    expect(getAddress(receipt.from)).toBe(alice.address);
    const logs = await decodeUsdcLogs(chain, receipt);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatchObject({
      eventName: 'Transfer',
      args: { from: alice.address, to: merchant.address, value: 2n * USDC },
    });
    expect(await usdcBalance(chain, merchant.address)).toBe(before + 2n * USDC);
    await expect(transferUsdc(chain, carol.privateKey, merchant.address, 1n)).rejects.toThrow(/exceeds balance/);
  });

  test('transferWithAuthorization relayed by a third party; the nonce is single-use', async () => {
    const now = await latestTimestamp(chain);
    const auth: TransferAuthorization = {
      to: merchant.address,
      value: 3n * USDC,
      validAfter: 0,
      validBefore: now + 3600n,
      nonce: randomAuthorizationNonce(),
    };
    const signature = await signTransferAuthorization(chain, alice.privateKey, auth);
    const [aliceBefore, merchantBefore, relayerEth] = await Promise.all([
      usdcBalance(chain, alice.address),
      usdcBalance(chain, merchant.address),
      devPublicClient(chain).getBalance({ address: relayer.address }),
    ]);
    expect(await authorizationState(chain, alice.address, auth.nonce)).toBe(false);

    const { receipt } = await submitTransferWithAuthorization(
      chain,
      relayer.privateKey,
      alice.address,
      auth,
      signature,
    );
    expect(getAddress(receipt.from)).toBe(relayer.address);
    expect(await usdcBalance(chain, alice.address)).toBe(aliceBefore - 3n * USDC);
    expect(await usdcBalance(chain, merchant.address)).toBe(merchantBefore + 3n * USDC);
    expect(await devPublicClient(chain).getBalance({ address: relayer.address })).toBeLessThan(relayerEth); // gas
    const logs = await decodeUsdcLogs(chain, receipt);
    expect(logs.map((l) => l.eventName)).toEqual(['AuthorizationUsed', 'Transfer']);
    expect(logs[0]?.args).toEqual({ authorizer: alice.address, nonce: auth.nonce });
    expect(logs[1]?.args).toEqual({ from: alice.address, to: merchant.address, value: 3n * USDC });
    expect(await authorizationState(chain, alice.address, auth.nonce)).toBe(true);

    await expect(
      submitTransferWithAuthorization(chain, relayer.privateKey, alice.address, auth, signature),
    ).rejects.toThrow(/authorization is used or canceled/);
  });

  test('the (v, r, s) overload is the same authorization', async () => {
    const now = await latestTimestamp(chain);
    const auth = {
      to: bob.address,
      value: 1n,
      validAfter: 0n,
      validBefore: now + 600n,
      nonce: randomAuthorizationNonce(),
    };
    const signature = await signTransferAuthorization(chain, alice.privateKey, auth);
    const { v, r, s } = parseSignature(signature);
    const wallet = createWalletClient({
      account: devAccount(chain, relayer.privateKey),
      chain: devChain(chain.rpcUrl, chain.chainId),
      transport: http(chain.rpcUrl),
    });
    const hash = await wallet.writeContract({
      address: chain.usdc,
      abi: await testUsdcAbi(),
      functionName: 'transferWithAuthorization',
      args: [alice.address, auth.to, auth.value, auth.validAfter, auth.validBefore, auth.nonce, Number(v), r, s],
    });
    expect((await devPublicClient(chain).waitForTransactionReceipt({ hash })).status).toBe('success');
    expect(await authorizationState(chain, alice.address, auth.nonce)).toBe(true);
  });

  test('expired, not-yet-valid, wrong-signer and malleable authorizations revert', async () => {
    const now = await latestTimestamp(chain);
    const base = { to: merchant.address, value: USDC, validAfter: 0n, validBefore: now + 600n };
    const attempt = async (
      auth: TransferAuthorization,
      signerKey: Hex = alice.privateKey,
      mangle?: (s: Hex) => Hex,
    ) => {
      const signature = await signTransferAuthorization(chain, signerKey, auth);
      return submitTransferWithAuthorization(
        chain,
        relayer.privateKey,
        alice.address,
        auth,
        mangle ? mangle(signature) : signature,
      );
    };
    const balance = await usdcBalance(chain, alice.address);

    await expect(attempt({ ...base, validBefore: now - 1n, nonce: randomAuthorizationNonce() })).rejects.toThrow(
      /authorization is expired/,
    );
    await expect(attempt({ ...base, validAfter: now + 3600n, nonce: randomAuthorizationNonce() })).rejects.toThrow(
      /authorization is not yet valid/,
    );
    await expect(attempt({ ...base, nonce: randomAuthorizationNonce() }, bob.privateKey)).rejects.toThrow(
      /invalid signature/,
    );
    // The same signature with s' = n - s and the other v recovers the same key: rejected (EIP-2).
    const highS = (signature: Hex): Hex => {
      const { r, s, yParity } = parseSignature(signature);
      return concat([r, numberToHex(SECP256K1_N - BigInt(s), { size: 32 }), yParity === 0 ? '0x1c' : '0x1b']);
    };
    await expect(attempt({ ...base, nonce: randomAuthorizationNonce() }, alice.privateKey, highS)).rejects.toThrow(
      /invalid signature 's' value/,
    );
    const badV = (signature: Hex): Hex => {
      const { r, s } = parseSignature(signature);
      return concat([r, s, '0x05']);
    };
    await expect(attempt({ ...base, nonce: randomAuthorizationNonce() }, alice.privateKey, badV)).rejects.toThrow(
      /invalid signature 'v' value/,
    );
    await expect(attempt({ ...base, value: 10_000n * USDC, nonce: randomAuthorizationNonce() })).rejects.toThrow(
      /exceeds balance/,
    );
    expect(await usdcBalance(chain, alice.address)).toBe(balance);
  });

  test('receiveWithAuthorization: only the payee submits; cancelAuthorization burns a nonce', async () => {
    const abi = await testUsdcAbi();
    const now = await latestTimestamp(chain);
    const { name, version } = await usdcDomain(chain);
    const domain = { name, version, chainId: chain.chainId, verifyingContract: chain.usdc };
    const aliceAccount = privateKeyToAccount(alice.privateKey);
    const message = {
      from: alice.address,
      to: merchant.address,
      value: USDC,
      validAfter: 0n,
      validBefore: now + 600n,
      nonce: randomAuthorizationNonce(),
    };
    const signature = await aliceAccount.signTypedData({
      domain,
      types: {
        ReceiveWithAuthorization: [
          { name: 'from', type: 'address' },
          { name: 'to', type: 'address' },
          { name: 'value', type: 'uint256' },
          { name: 'validAfter', type: 'uint256' },
          { name: 'validBefore', type: 'uint256' },
          { name: 'nonce', type: 'bytes32' },
        ],
      },
      primaryType: 'ReceiveWithAuthorization',
      message,
    });
    const args = [
      message.from,
      message.to,
      message.value,
      message.validAfter,
      message.validBefore,
      message.nonce,
      signature,
    ];
    const walletOf = (key: Hex) =>
      createWalletClient({
        account: devAccount(chain, key),
        chain: devChain(chain.rpcUrl, chain.chainId),
        transport: http(chain.rpcUrl),
      });
    await expect(
      walletOf(relayer.privateKey).writeContract({
        address: chain.usdc,
        abi,
        functionName: 'receiveWithAuthorization',
        args,
      }),
    ).rejects.toThrow(/caller must be the payee/);
    const hash = await walletOf(merchant.privateKey).writeContract({
      address: chain.usdc,
      abi,
      functionName: 'receiveWithAuthorization',
      args,
    });
    expect((await devPublicClient(chain).waitForTransactionReceipt({ hash })).status).toBe('success');

    // Cancel an unused nonce, then a transfer authorization with it is dead.
    const nonce = randomAuthorizationNonce();
    const cancelSignature = await aliceAccount.signTypedData({
      domain,
      types: {
        CancelAuthorization: [
          { name: 'authorizer', type: 'address' },
          { name: 'nonce', type: 'bytes32' },
        ],
      },
      primaryType: 'CancelAuthorization',
      message: { authorizer: alice.address, nonce },
    });
    const cancelHash = await walletOf(relayer.privateKey).writeContract({
      address: chain.usdc,
      abi,
      functionName: 'cancelAuthorization',
      args: [alice.address, nonce, cancelSignature],
    });
    const cancelReceipt = await devPublicClient(chain).waitForTransactionReceipt({ hash: cancelHash });
    expect((await decodeUsdcLogs(chain, cancelReceipt)).map((l) => l.eventName)).toEqual(['AuthorizationCanceled']);
    expect(await authorizationState(chain, alice.address, nonce)).toBe(true);
    const auth = { to: merchant.address, value: 1n, validAfter: 0n, validBefore: now + 600n, nonce };
    const transferSignature = await signTransferAuthorization(chain, alice.privateKey, auth);
    await expect(
      submitTransferWithAuthorization(chain, relayer.privateKey, alice.address, auth, transferSignature),
    ).rejects.toThrow(/authorization is used or canceled/);
  });

  describe('x402 v2 exact scheme (@x402/evm 2.27) against this chain', () => {
    const requirementsFor = (amount: bigint, payTo: Address = merchant.address): PaymentRequirements => ({
      scheme: 'exact',
      network: chain.caip2,
      asset: chain.usdc,
      amount: amount.toString(),
      payTo,
      maxTimeoutSeconds: 120,
      extra: { name: chain.usdcName, version: chain.usdcVersion },
    });
    const paymentRequiredFor = (requirements: PaymentRequirements): PaymentRequired => ({
      x402Version: 2,
      resource: {
        url: 'http://127.0.0.1/api/v1/gateway/lst_test/x',
        description: 'test',
        mimeType: 'application/json',
      },
      accepts: [requirements],
    });
    /** What an unmodified x402 buyer does: pick the accept, sign, and send the PAYMENT-SIGNATURE header. */
    const buyerPays = async (buyerKey: Hex, paymentRequired: PaymentRequired): Promise<string> => {
      const client = new x402Client().register(
        chain.caip2,
        new ExactEvmClient(toClientEvmSigner(privateKeyToAccount(buyerKey))),
      );
      // x402 clients only pay tokens they know (USDC on public chains) unless told otherwise.
      client.setSpendControls({ allowedAssets: [{ network: chain.caip2, asset: chain.usdc }] });
      return encodePaymentSignatureHeader(await client.createPaymentPayload(paymentRequired));
    };
    let facilitator: x402Facilitator;
    beforeAll(() => {
      facilitator = new x402Facilitator().register(
        chain.caip2,
        new ExactEvmFacilitator(facilitatorSignerFor(chain, relayer.privateKey)),
      );
    });

    test('an x402 client payload verifies and settles on anvil; a replay is refused', async () => {
      const requirements = requirementsFor(250_000n);
      const header = await buyerPays(alice.privateKey, paymentRequiredFor(requirements));
      const payload: PaymentPayload = decodePaymentSignatureHeader(header);
      expect(payload.x402Version).toBe(2);
      expect(payload.accepted).toEqual(requirements);
      const authorization = (payload.payload as { authorization: { from: string; nonce: Hex; to: string } })
        .authorization;
      expect(getAddress(authorization.from)).toBe(alice.address);
      expect(getAddress(authorization.to)).toBe(merchant.address);

      const [aliceBefore, merchantBefore] = await Promise.all([
        usdcBalance(chain, alice.address),
        usdcBalance(chain, merchant.address),
      ]);
      const verified = await facilitator.verify(payload, requirements);
      expect(verified).toMatchObject({ isValid: true, payer: alice.address });

      const settled = await facilitator.settle(payload, requirements);
      expect(settled).toMatchObject({ success: true, network: chain.caip2, payer: alice.address });
      expect(settled.transaction).toMatch(/^0x[0-9a-f]{64}$/);
      const receipt = await devPublicClient(chain).getTransactionReceipt({ hash: settled.transaction as Hex });
      expect(getAddress(receipt.from)).toBe(relayer.address);
      const logs = await decodeUsdcLogs(chain, receipt);
      expect(logs.map((l) => l.eventName)).toEqual(['AuthorizationUsed', 'Transfer']);
      expect(await usdcBalance(chain, alice.address)).toBe(aliceBefore - 250_000n);
      expect(await usdcBalance(chain, merchant.address)).toBe(merchantBefore + 250_000n);
      expect(await authorizationState(chain, alice.address, authorization.nonce)).toBe(true);

      // Replaying the same header: verify simulates, fails, and diagnoses the used nonce; settle fails on-chain.
      expect(await facilitator.verify(payload, requirements)).toMatchObject({
        isValid: false,
        invalidReason: 'invalid_exact_evm_nonce_already_used',
      });
      const replay = await facilitator.settle(payload, requirements);
      expect(replay).toMatchObject({ success: false, errorReason: 'invalid_exact_evm_nonce_already_used' });
    });

    test('verify rejects wrong recipient, wrong amount, wrong domain and an unfunded payer', async () => {
      const requirements = requirementsFor(100_000n);
      const payload = decodePaymentSignatureHeader(await buyerPays(alice.privateKey, paymentRequiredFor(requirements)));
      expect(await facilitator.verify(payload, { ...requirements, payTo: bob.address })).toMatchObject({
        isValid: false,
        invalidReason: 'invalid_exact_evm_recipient_mismatch',
      });
      expect(await facilitator.verify(payload, { ...requirements, amount: '100001' })).toMatchObject({
        isValid: false,
        invalidReason: 'invalid_exact_evm_payload_authorization_value_mismatch',
      });
      // Signed for a different domain name than the token's: the signature checks out off-chain against the stated
      // domain, and the on-chain simulation catches the mismatch.
      const wrongName = { ...requirements, extra: { name: 'USDC', version: '2' } };
      const wrongNamePayload = decodePaymentSignatureHeader(
        await buyerPays(alice.privateKey, paymentRequiredFor(wrongName)),
      );
      expect(await facilitator.verify(wrongNamePayload, wrongName)).toMatchObject({
        isValid: false,
        invalidReason: 'invalid_exact_evm_token_name_mismatch',
      });
      const poor = decodePaymentSignatureHeader(await buyerPays(carol.privateKey, paymentRequiredFor(requirements)));
      expect(await facilitator.verify(poor, requirements)).toMatchObject({
        isValid: false,
        invalidReason: 'invalid_exact_evm_insufficient_balance',
      });
      expect(await facilitator.settle(poor, requirements)).toMatchObject({
        success: false,
        errorReason: 'invalid_exact_evm_insufficient_balance',
      });
    });

    test('concurrent settlements from one settler key all land', async () => {
      const requirements = requirementsFor(10_000n);
      const payloads = await Promise.all(
        Array.from({ length: 5 }, async () =>
          decodePaymentSignatureHeader(await buyerPays(alice.privateKey, paymentRequiredFor(requirements))),
        ),
      );
      const before = await usdcBalance(chain, merchant.address);
      const results = await Promise.all(payloads.map((p) => facilitator.settle(p, requirements)));
      for (const result of results) expect(result).toMatchObject({ success: true });
      expect(new Set(results.map((r) => r.transaction)).size).toBe(5);
      expect(await usdcBalance(chain, merchant.address)).toBe(before + 50_000n);
    });
  });
});

describe('anvil process', () => {
  test('fixed port, block time, and stop() really stops it', async () => {
    const probe = await startAnvil();
    const port = probe.port;
    await probe.stop();
    await probe.stop(); // idempotent
    await expect(fetch(probe.rpcUrl, { method: 'POST' })).rejects.toThrow();

    const anvil = await startAnvil({ port, chainId: 1337, blockTimeSeconds: 1 });
    try {
      expect(anvil.rpcUrl).toBe(`http://127.0.0.1:${port}`);
      expect(anvil.chainId).toBe(1337);
      await expect(startAnvil({ port })).rejects.toThrow(/already in use/);
      const client = devPublicClient(anvil);
      expect(await client.getChainId()).toBe(1337);
      const first = await client.getBlockNumber();
      await new Promise((resolve) => setTimeout(resolve, 2200));
      expect(await client.getBlockNumber()).toBeGreaterThan(first); // blocks come without transactions
    } finally {
      await anvil.stop();
    }
  });
});

describe('x402 v1 (X-PAYMENT) exact scheme on a local chain posing as base-sepolia', () => {
  // v1 names networks ("base-sepolia") and @x402/evm maps the name to a fixed chain id, so a local chain can only
  // take v1 payments when it runs with that chain id (84532).
  let chain: EvmDevChain;
  beforeAll(async () => {
    chain = await startEvmDevChain({ chainId: 84532 });
    await mintUsdc(chain, alice.address, 10n * USDC);
  });
  afterAll(async () => {
    await chain?.stop();
  });

  test('a v1 payload verifies and settles', async () => {
    const requirements: PaymentRequirementsV1 = {
      scheme: 'exact',
      network: 'base-sepolia' as Network,
      maxAmountRequired: '120000',
      resource: 'http://127.0.0.1/api/v1/gateway/lst_test/x',
      description: 'test',
      mimeType: 'application/json',
      outputSchema: {},
      payTo: merchant.address,
      maxTimeoutSeconds: 120,
      asset: chain.usdc,
      extra: { name: chain.usdcName, version: chain.usdcVersion },
    };
    const paymentRequired: PaymentRequiredV1 = { x402Version: 1, accepts: [requirements] };
    const client = new x402Client().registerV1(
      'base-sepolia' as Network,
      new ExactEvmClientV1(toClientEvmSigner(privateKeyToAccount(alice.privateKey))),
    );
    client.setSpendControls({ allowedAssets: [{ network: 'base-sepolia' as Network, asset: chain.usdc }] });
    const payload = (await client.createPaymentPayload(
      paymentRequired as unknown as PaymentRequired,
    )) as unknown as PaymentPayloadV1;
    expect(payload).toMatchObject({ x402Version: 1, scheme: 'exact', network: 'base-sepolia' });

    const facilitator = new x402Facilitator().registerV1(
      'base-sepolia' as Network,
      new ExactEvmFacilitatorV1(facilitatorSignerFor(chain, relayer.privateKey)),
    );
    const asV2 = payload as unknown as PaymentPayload;
    const reqs = requirements as unknown as PaymentRequirements;
    expect(await facilitator.verify(asV2, reqs)).toMatchObject({ isValid: true });
    const settled = await facilitator.settle(asV2, reqs);
    expect(settled).toMatchObject({ success: true, network: 'base-sepolia' });
    expect(await usdcBalance(chain, merchant.address)).toBe(120_000n);
  });
});
