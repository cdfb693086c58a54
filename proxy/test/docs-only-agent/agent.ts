/**
 * A docs-only agent (issue 14): given nothing but Crochet's base URL, it reads what the server publishes — llms.txt,
 * the documents it links (agent-protocol.json, the OpenAPI document, the signature test vectors), the 402 body and
 * the dev faucet's own help — and from those alone registers a seller and a buyer (solving the proof of work the way
 * the documents describe it), publishes a free and a paid listing on a seller server whose signature check is written
 * from the published spec, discovers them, calls the free one, and pays for the paid one with a direct Solana
 * transfer built as the documents describe it (then once more with an unmodified x402 client).
 *
 * It imports nothing of Crochet — node built-ins and published npm packages only (the test reads these import lines
 * to make sure) — and counts every HTTP call it makes to Crochet and to the faucet.
 */
import { createHash } from 'node:crypto';
import {
  address,
  appendTransactionMessageInstructions,
  createSolanaRpc,
  createTransactionMessage,
  generateKeyPairSigner,
  getBase64EncodedWireTransaction,
  getSignatureFromTransaction,
  type Instruction,
  pipe,
  type Signature,
  setTransactionMessageFeePayerSigner,
  setTransactionMessageLifetimeUsingBlockhash,
  signTransactionMessageWithSigners,
} from '@solana/kit';
import {
  findAssociatedTokenPda,
  getCreateAssociatedTokenIdempotentInstruction,
  getTransferCheckedInstruction,
} from '@solana-program/token';
import { wrapFetchWithPayment, x402Client } from '@x402/fetch';
import { ExactSvmScheme } from '@x402/svm/exact/client';
import {
  type DocsOnlySeller,
  type PublishedSignatureSpec,
  signatureCheckFromSpec,
  startDocsOnlySeller,
} from './seller.js';

/** One HTTP call the agent made: to Crochet, to the faucet, or elsewhere (which it never should). */
export interface AgentCall {
  to: 'crochet' | 'faucet' | 'other';
  method: string;
  url: string;
  status: number;
}

export interface DocsOnlyAgentRun {
  /** Every call to Crochet and the faucet, in order (chain RPC calls go through @solana/kit and are not here). */
  calls: AgentCall[];
  /** How many of them it took to get the first paid answer, and how long (from the first call). */
  callsToFirstPaidAnswer: number;
  secondsToFirstPaidAnswer: number;
  /** The proof-of-work difficulty the documents stated and the challenges carried. */
  documentedDifficulty: number;
  challengeDifficulties: number[];
  seller: DocsOnlySeller;
  sellerApiKey: string;
  buyerApiKey: string;
  listings: { free: { id: string; gatewayUrl: string }; paid: { id: string; gatewayUrl: string; price: string } };
  free: { status: number; body: any };
  paid: { status: number; body: any; requestId: string | null; proof: string };
  /** The second paid call, through @x402/fetch as the documents show it. */
  x402: { status: number; body: any; paymentResponse: string | null; calls: number };
  buyerAddress: string;
}

type Json = any;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The markdown links of a text document: label → URL. */
const linksOf = (text: string): Map<string, string> =>
  new Map([...text.matchAll(/\[([^\]]+)\]\((\S+?)\)/g)].map((m) => [m[1]!, m[2]!]));

/** Leading zero bits of a digest, as the documents define them. */
const leadingZeroBits = (h: Uint8Array): number => {
  let bits = 0;
  for (const byte of h) {
    if (byte !== 0) return bits + Math.clz32(byte) - 24;
    bits += 8;
  }
  return bits;
};

export const runDocsOnlyAgent = async (baseUrl: string): Promise<DocsOnlyAgentRun> => {
  const base = new URL(baseUrl);
  const calls: AgentCall[] = [];
  let faucetOrigin: string | undefined;
  let started: number | undefined;

  /** fetch, counted: every request the agent sends goes through here (the x402 client's too). */
  const counted: typeof fetch = async (input, init) => {
    started ??= performance.now();
    const request = new Request(input, init);
    const origin = new URL(request.url).origin;
    const res = await fetch(request);
    calls.push({
      to: origin === base.origin ? 'crochet' : origin === faucetOrigin ? 'faucet' : 'other',
      method: request.method,
      url: request.url,
      status: res.status,
    });
    return res;
  };
  const json = async (
    url: string,
    init: RequestInit = {},
  ): Promise<{ status: number; headers: Headers; body: Json }> => {
    const res = await counted(url, init);
    const text = await res.text();
    let body: Json = null;
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
    return { status: res.status, headers: res.headers, body };
  };
  const expectStatus = (res: { status: number; body: Json }, status: number, what: string) => {
    if (res.status !== status) throw new Error(`${what}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  };

  // 1. The documents. llms.txt names the others.
  const llms = await (await counted(new URL('/llms.txt', base).toString())).text();
  const links = linksOf(llms);
  const linkTo = (label: RegExp): string =>
    [...links].find(([name]) => label.test(name))?.[1] ?? failDocs(`llms.txt links no document matching ${label}`);
  const protocol = expectStatus(await json(linkTo(/agent protocol/i)), 200, 'agent-protocol.json');
  const openapi = expectStatus(await json(linkTo(/openapi/i)), 200, 'OpenAPI');
  const signatureSpec = expectStatus(
    await json(linkTo(/signature test vectors/i)),
    200,
    'signature test vectors',
  ) as PublishedSignatureSpec;

  /** An operation of the OpenAPI document by its operationId: where to send it and what its body requires. */
  const operation = (operationId: string) => {
    for (const [path, methods] of Object.entries(openapi.paths as Record<string, Record<string, Json>>)) {
      for (const [method, op] of Object.entries(methods)) {
        if (op.operationId !== operationId) continue;
        const body = op.requestBody?.content?.['application/json']?.schema;
        return {
          method: method.toUpperCase(),
          url: (params: Record<string, string> = {}) =>
            new URL(
              path.replace(/\{(\w+)\}/g, (_, name: string) => params[name] ?? ''),
              openapi.servers[0].url,
            ).href,
          required: (body?.required ?? []) as string[],
          properties: Object.keys(body?.properties ?? {}),
        };
      }
    }
    return failDocs(`the OpenAPI document has no operation ${operationId}`);
  };
  /** A request body with exactly what the operation allows, and every field it requires present. */
  const bodyFor = (op: ReturnType<typeof operation>, body: Record<string, unknown>) => {
    const missing = op.required.filter((name) => body[name] === undefined);
    const unknown = Object.keys(body).filter((name) => !op.properties.includes(name));
    if (missing.length || unknown.length) failDocs(`body missing ${missing} / not allowed ${unknown}`);
    return JSON.stringify(body);
  };

  const settings = protocol.settings ?? failDocs('agent-protocol.json states no settings');
  const pow = protocol.auth.obtain.proof_of_work;
  if (pow.algorithm !== 'sha256' || pow.input !== 'utf8(salt + nonce)' || !/leading zero bits/.test(pow.target)) {
    failDocs(`a proof of work this agent does not know: ${JSON.stringify(pow)}`);
  }
  const documentedDifficulty = settings.proof_of_work.difficulty as number;
  const challengeDifficulties: number[] = [];

  /** Asks for a challenge and solves it as the documents say: sha256(utf8(salt + nonce)), decimal nonces from 0. */
  const solve = async (operationId: string, authorization?: string) => {
    const op = operation(operationId);
    const challenge = expectStatus(
      await json(op.url(), { method: op.method, headers: authorization ? { authorization } : {} }),
      201,
      operationId,
    ).data;
    challengeDifficulties.push(challenge.difficulty);
    for (let n = 0; ; n++) {
      const h = createHash('sha256')
        .update(challenge.salt + n)
        .digest();
      if (leadingZeroBits(h) >= challenge.difficulty) return { challenge_id: challenge.challenge_id, nonce: String(n) };
    }
  };
  const register = async (name: string) => {
    const op = operation('register');
    const data = expectStatus(
      await json(op.url(), {
        method: op.method,
        headers: { 'content-type': 'application/json' },
        body: bodyFor(op, { ...(await solve('createChallenge')), name }),
      }),
      201,
      'register',
    ).data;
    return data.authorization_header as string;
  };

  // 2. The seller: a server whose signature check comes from the published spec, registered, with two listings.
  const seller = await startDocsOnlySeller(signatureCheckFromSpec(signatureSpec));
  const sellerAuth = await register('docs-only seller');
  const word = `docsonly${Date.now().toString(36)}`;
  const publish = async (fields: Record<string, unknown>) => {
    const op = operation('createListing');
    const data = expectStatus(
      await json(op.url(), {
        method: op.method,
        headers: { authorization: sellerAuth, 'content-type': 'application/json' },
        body: bodyFor(op, { ...(await solve('createListingChallenge', sellerAuth)), ...fields }),
      }),
      201,
      'create listing',
    ).data;
    seller.addSecret(data.listing.id, data.gateway_endpoint.signing_secret);
    return data.listing;
  };
  await publish({
    name: `Echo ${word}`,
    description: 'Echoes its input, free',
    pricing_model: 'free',
    private_endpoint_url: `${seller.url}/free`,
  });
  await publish({
    name: `Answer ${word}`,
    description: 'Answers the question, per call',
    pricing_model: 'per_call',
    price: { amount: '0.01', currency: 'USDC' },
    private_endpoint_url: `${seller.url}/paid`,
  });

  // 3. The buyer: registers, discovers both listings by a word of their names.
  const buyerAuth = await register('docs-only buyer');
  const search = operation('listListings');
  const found = expectStatus(
    await json(`${search.url()}?q=${encodeURIComponent(word)}`, { headers: { authorization: buyerAuth } }),
    200,
    'search',
  ).data as Json[];
  const free = found.find((l) => l.pricing_model === 'free') ?? failDocs('the free listing was not found');
  const paid = found.find((l) => l.pricing_model === 'per_call') ?? failDocs('the paid listing was not found');

  const call = (gatewayUrl: string, body: unknown, headers: Record<string, string> = {}) =>
    json(gatewayUrl, {
      method: 'POST',
      headers: { authorization: buyerAuth, 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
  /** Waits as Retry-After says (or a moment), for the retryable answers the documents list. */
  const retryable = async (res: { status: number; headers: Headers; body: Json }) => {
    const code = res.body?.error?.code;
    const again =
      (res.status === 402 && (code === 'PAYMENT_UNCONFIRMED' || code === 'PAYMENT_PENDING')) ||
      res.status === 503 ||
      // A listing published a moment ago may not have reached every gateway proxy yet.
      (res.status === 404 && code === 'LISTING_NOT_FOUND');
    if (again) await sleep(Math.min(5, Number(res.headers.get('retry-after') ?? '0.5') || 0.5) * 1000);
    return again;
  };

  // 4. The free call.
  let freeRes = await call(free.gateway_url, { question: 'echo me' });
  for (let i = 0; i < 5 && (await retryable(freeRes)); i++)
    freeRes = await call(free.gateway_url, { question: 'echo me' });

  // 5. The paid call: 402, test funds from the faucet the 402 names, a direct Solana transfer, the same call again.
  const question = { question: 'what is six times seven?' };
  let unpaid = await call(paid.gateway_url, question);
  for (let i = 0; i < 5 && unpaid.status !== 402 && (await retryable(unpaid)); i++) {
    unpaid = await call(paid.gateway_url, question);
  }
  const payment = expectStatus(unpaid, 402, 'the unpaid call').payment;
  const direct =
    (payment.direct.networks as Json[]).find((n) => n.network.startsWith('solana:')) ??
    failDocs('the 402 offers no direct Solana transfer');
  const network = (settings.networks as Json[]).find((n) => n.network === direct.network) ?? {};
  const testFunds = payment.test_funds ?? settings.test_funds ?? failDocs('nothing names test funds');
  faucetOrigin = new URL(testFunds.faucet_url).origin;
  const help = expectStatus(await json(testFunds.faucet_url), 200, 'faucet help').data;
  const route =
    (help.routes as Json[]).find((r) => r.method === 'POST' && r.path === '/solana') ??
    failDocs('the faucet has no Solana route');
  const signer = await generateKeyPairSigner();
  const wanted = BigInt(payment.amount_atomic) * 10n;
  const example = route.example as Record<string, unknown>;
  expectStatus(
    await json(new URL(route.path, `${testFunds.faucet_url}/`).href, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        ...example,
        address: signer.address,
        usdc_atomic: (BigInt(String(example['usdc_atomic'] ?? '0')) > wanted
          ? BigInt(String(example['usdc_atomic']))
          : wanted
        ).toString(),
      }),
    }),
    200,
    'faucet',
  );

  const rpcUrl = direct.rpc_url ?? testFunds.rpc_urls?.[direct.network] ?? failDocs('no RPC URL for the network');
  const rpc = createSolanaRpc(rpcUrl);
  const tokenProgram = address(network.token_program ?? failDocs('no token program stated'));
  const memoProgram = address(network.memo_programs?.[0] ?? failDocs('no memo program stated'));
  const mint = address(direct.asset);
  const [source] = await findAssociatedTokenPda({ owner: signer.address, mint, tokenProgram });
  const [destination] = await findAssociatedTokenPda({ owner: address(direct.pay_to), mint, tokenProgram });
  const decimals = (payment.accepts as Json[]).find((a) => a.network === direct.network)?.extra?.decimals ?? 6;
  const memo: Instruction = {
    programAddress: memoProgram,
    accounts: [],
    data: new TextEncoder().encode(direct.memo ?? payment.payment_request_id),
  };
  const { value: blockhash } = await rpc.getLatestBlockhash().send();
  const transaction = await signTransactionMessageWithSigners(
    pipe(
      createTransactionMessage({ version: 0 }),
      (m) => setTransactionMessageFeePayerSigner(signer, m),
      (m) => setTransactionMessageLifetimeUsingBlockhash(blockhash, m),
      (m) =>
        appendTransactionMessageInstructions(
          [
            getCreateAssociatedTokenIdempotentInstruction({
              payer: signer,
              ata: destination,
              owner: address(direct.pay_to),
              mint,
            }),
            getTransferCheckedInstruction({
              source,
              mint,
              destination,
              authority: signer,
              amount: BigInt(payment.amount_atomic),
              decimals,
            }),
            memo,
          ],
          m,
        ),
    ),
  );
  const signature: Signature = getSignatureFromTransaction(transaction);
  await rpc.sendTransaction(getBase64EncodedWireTransaction(transaction), { encoding: 'base64' }).send();
  for (let i = 0; i < 200; i++) {
    const { value } = await rpc.getSignatureStatuses([signature]).send();
    const status = value[0]?.confirmationStatus;
    if (value[0]?.err) throw new Error(`the transfer failed: ${JSON.stringify(value[0].err)}`);
    if (status === 'confirmed' || status === 'finalized') break;
    await sleep(50);
  }
  // The header and its format as the 402 gives them: "<caip2-network>:<transaction id>".
  const proof = `${direct.network}:${signature}`;
  const proofHeader = { [payment.direct.header]: proof };
  let paidRes = await call(paid.gateway_url, question, proofHeader);
  for (let i = 0; i < 8 && (await retryable(paidRes)); i++)
    paidRes = await call(paid.gateway_url, question, proofHeader);
  expectStatus(paidRes, 200, 'the paid call');
  const callsToFirstPaidAnswer = calls.filter((c) => c.to !== 'other').length;
  const secondsToFirstPaidAnswer = (performance.now() - started!) / 1000;

  // 6. Once more with x402 on Solana, exactly as the documents show it (the signer needs no SOL for this).
  const before = calls.length;
  const svm =
    (payment.accepts as Json[]).find((a) => a.network.startsWith('solana:')) ?? failDocs('no x402 Solana option');
  const client = new x402Client().register(svm.network, new ExactSvmScheme(signer, { rpcUrl: svm.extra.rpcUrl }));
  const paidFetch = wrapFetchWithPayment(counted, client);
  const x402Res = await paidFetch(paid.gateway_url, {
    method: 'POST',
    headers: { authorization: buyerAuth, 'content-type': 'application/json' },
    body: JSON.stringify(question),
  });
  const x402Text = await x402Res.text();

  return {
    calls,
    callsToFirstPaidAnswer,
    secondsToFirstPaidAnswer,
    documentedDifficulty,
    challengeDifficulties,
    seller,
    sellerApiKey: sellerAuth.replace(/^Bearer /, ''),
    buyerApiKey: buyerAuth.replace(/^Bearer /, ''),
    listings: {
      free: { id: free.id, gatewayUrl: free.gateway_url },
      paid: { id: paid.id, gatewayUrl: paid.gateway_url, price: paid.price.amount },
    },
    free: { status: freeRes.status, body: freeRes.body },
    paid: {
      status: paidRes.status,
      body: paidRes.body,
      requestId: paidRes.headers.get('x-crochet-request-id'),
      proof,
    },
    x402: {
      status: x402Res.status,
      body: JSON.parse(x402Text),
      paymentResponse: x402Res.headers.get('payment-response'),
      calls: calls.length - before,
    },
    buyerAddress: signer.address,
  };
};

/** What the documents did not say: the run stops here, naming it. */
const failDocs = (what: string): never => {
  throw new Error(`docs-only agent: ${what}`);
};
