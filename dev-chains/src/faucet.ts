import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ERRORS, type ErrorCode, errorBody } from '@crochet/protocol';
import { address, isAddress } from '@solana/kit';
import { mintUsdc as mintEvmUsdc } from './evm/index.js';
import type { DevPaymentNetwork } from './payment-network.js';
import type { CreateRelayRequestInput } from './relay/stand-in.js';
import { mintUsdc as mintSolanaUsdc, usdcAtaAddress } from './solana/helpers.js';

/**
 * The dev faucet (development only, loopback): funds wallets on the local chains so an agent can pay on them. Every
 * path answers JSON: `GET /` describes the routes and networks, a bad body is 400 `VALIDATION_FAILED` (unknown fields
 * too) or `INVALID_JSON`, an unknown path 404 `ROUTE_NOT_FOUND` — the gateway's error envelope and codes.
 */

/** The most one request may ask for: enough for thousands of test calls, not a way to fill the chain. */
export const FAUCET_LIMITS = Object.freeze({ sol: 100, eth: 100, usdcAtomic: 1_000_000_000_000n });

const BODY_LIMIT_BYTES = 64 * 1024;
const ATOMIC = /^[0-9]{1,20}$/;
const EVM_ADDRESS = /^0x[0-9a-fA-F]{40}$/;

/** What `GET /` answers: the faucet's routes with their bodies, and where each chain is. */
export const faucetHelp = (network: DevPaymentNetwork, faucetUrl: string) => ({
  data: {
    name: 'Crochet dev faucet',
    description:
      'Test funds on the local development chains behind this Crochet instance. Nothing here has value; the chains ' +
      'live as long as the server.',
    faucet_url: faucetUrl,
    routes: [
      {
        method: 'POST',
        path: '/solana',
        body: {
          address: 'required: base58 Solana owner address',
          sol: `optional: number of SOL for fees (0–${FAUCET_LIMITS.sol}); x402 payments need none (the gateway pays the fee)`,
          usdc_atomic: `optional: decimal string of atomic USDC (6 decimals; "1000000" = 1 USDC, at most ${FAUCET_LIMITS.usdcAtomic})`,
        },
        example: { address: '<your Solana address>', sol: 1, usdc_atomic: '1000000' },
        answers: '{"data": {"network", "address", "sol", "usdc_atomic", "usdc_token_account"}}',
      },
      {
        method: 'POST',
        path: '/evm',
        body: {
          address: 'required: 0x EVM address',
          eth: `optional: number of ETH for gas (0–${FAUCET_LIMITS.eth}); x402 payments need none (the gateway pays gas)`,
          usdc_atomic: `optional: decimal string of atomic USDC (6 decimals, at most ${FAUCET_LIMITS.usdcAtomic})`,
        },
        example: { address: '<your 0x address>', eth: 1, usdc_atomic: '1000000' },
        answers: '{"data": {"network", "address", "eth", "usdc_atomic"}}',
      },
      {
        method: 'POST',
        path: '/relay',
        body: {
          request:
            'required: a Relay request the stand-in then reports — {user, recipient, originChainId, ' +
            'destinationChainId, currencyOut: {chainId, address, symbol, decimals}, amountOut, outTxHashes?, status?}',
        },
        answers: '{"data": {"id"}} — present it as X-Crochet-Relay-Request-Id',
      },
    ],
    networks: {
      solana: {
        network: network.solana.caip2,
        rpc_url: network.solana.rpcUrl,
        usdc_mint: network.solana.usdcMint,
        note:
          'A local chain that reuses the CAIP-2 id and USDC mint of public devnet (x402 knows no other Solana test ' +
          'network): send everything to rpc_url, never to api.devnet.solana.com.',
      },
      evm: {
        network: network.evm.caip2,
        chain_id: network.evm.chainId,
        rpc_url: network.evm.rpcUrl,
        usdc: network.evm.usdc,
      },
      relay: { api_url: network.relay.url },
    },
  },
});

class FaucetError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const invalid = (message: string): never => {
  throw new FaucetError('VALIDATION_FAILED', message);
};

const readBody = (req: IncomingMessage): Promise<unknown> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > BODY_LIMIT_BYTES) reject(new FaucetError('PAYLOAD_TOO_LARGE', `At most ${BODY_LIMIT_BYTES} bytes.`));
      else chunks.push(chunk);
    });
    req.on('error', reject);
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(text.trim() === '' ? {} : JSON.parse(text));
      } catch {
        reject(new FaucetError('INVALID_JSON', 'The request body is not valid JSON.'));
      }
    });
  });

/** The body as an object holding only `allowed` fields, with every `required` one present. */
const fieldsOf = (body: unknown, allowed: readonly string[], required: readonly string[]): Record<string, unknown> => {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    return invalid('The body must be a JSON object.');
  const record = body as Record<string, unknown>;
  const unknown = Object.keys(record).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) {
    invalid(
      `Unknown field${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}; this route takes ${allowed.join(', ')}.`,
    );
  }
  for (const name of required) if (record[name] === undefined) invalid(`${name} is required.`);
  return record;
};

const amountOf = (value: unknown, name: string, max: number): number => {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > max) {
    return invalid(`${name} must be a number from 0 to ${max}.`);
  }
  return value;
};

const atomicOf = (value: unknown): bigint => {
  if (value === undefined) return 0n;
  if (typeof value !== 'string' || !ATOMIC.test(value) || BigInt(value) > FAUCET_LIMITS.usdcAtomic) {
    return invalid(`usdc_atomic must be a decimal string of atomic USDC from "0" to "${FAUCET_LIMITS.usdcAtomic}".`);
  }
  return BigInt(value);
};

export interface DevFaucet {
  url: string;
  close(): Promise<void>;
}

/** Starts the faucet on `host` (default 127.0.0.1) and a free port unless `port` is given. */
export const startDevFaucet = async (
  network: DevPaymentNetwork,
  options: { host?: string; port?: number } = {},
): Promise<DevFaucet> => {
  const { solana, evm, relay } = network;
  let url = '';

  const routes: Record<string, (body: unknown) => Promise<unknown>> = {
    'POST /solana': async (body) => {
      const fields = fieldsOf(body, ['address', 'sol', 'usdc_atomic'], ['address']);
      const owner = String(fields['address']);
      if (typeof fields['address'] !== 'string' || !isAddress(owner))
        invalid('address must be a base58 Solana address.');
      const sol = amountOf(fields['sol'], 'sol', FAUCET_LIMITS.sol);
      const usdc = atomicOf(fields['usdc_atomic']);
      if (sol > 0) await solana.airdrop(address(owner), BigInt(Math.round(sol * 1e9)));
      if (usdc > 0n) await mintSolanaUsdc(solana, owner, usdc);
      return {
        network: solana.caip2,
        address: owner,
        sol,
        usdc_atomic: usdc.toString(),
        usdc_token_account: await usdcAtaAddress(solana, owner),
      };
    },
    'POST /evm': async (body) => {
      const fields = fieldsOf(body, ['address', 'eth', 'usdc_atomic'], ['address']);
      const to = fields['address'];
      if (typeof to !== 'string' || !EVM_ADDRESS.test(to)) return invalid('address must be a 0x 20-byte hex address.');
      const eth = amountOf(fields['eth'], 'eth', FAUCET_LIMITS.eth);
      const usdc = atomicOf(fields['usdc_atomic']);
      if (eth > 0) {
        // anvil's cheat code: the balance becomes what it was plus `eth`.
        const rpc = (method: string, params: unknown[]) =>
          fetch(evm.rpcUrl, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
          }).then((r) => r.json() as Promise<{ result: string }>);
        const { result } = await rpc('eth_getBalance', [to, 'latest']);
        const wei = BigInt(result) + BigInt(Math.round(eth * 1e6)) * 10n ** 12n;
        await rpc('anvil_setBalance', [to, `0x${wei.toString(16)}`]);
      }
      if (usdc > 0n) await mintEvmUsdc(evm, to as `0x${string}`, usdc);
      return { network: evm.caip2, address: to, eth, usdc_atomic: usdc.toString() };
    },
    'POST /relay': async (body) => {
      const fields = fieldsOf(body, ['request'], ['request']);
      const request = fields['request'];
      if (typeof request !== 'object' || request === null) return invalid('request must be an object.');
      try {
        return { id: relay.createRequest(request as CreateRelayRequestInput).id };
      } catch (error) {
        return invalid(`request: ${(error as Error).message}`);
      }
    },
    'GET /': async () => faucetHelp(network, url).data,
  };

  const send = (res: ServerResponse, status: number, body: unknown) =>
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(body));

  const server = createServer(async (req, res) => {
    const requestId = `req_${randomBytes(8).toString('hex')}`;
    const path = new URL(req.url ?? '/', 'http://faucet').pathname.replace(/\/+$/, '') || '/';
    const route = routes[`${req.method} ${path}`];
    try {
      if (!route) {
        const known = Object.keys(routes).join(', ');
        throw new FaucetError('ROUTE_NOT_FOUND', `No faucet route ${req.method} ${path}; the routes are ${known}.`);
      }
      const body = req.method === 'POST' ? await readBody(req) : undefined;
      send(res, 200, { data: await route(body) });
    } catch (error) {
      const code = error instanceof FaucetError ? error.code : 'INTERNAL_ERROR';
      const message = error instanceof FaucetError ? error.message : `The faucet failed: ${(error as Error).message}`;
      const hint = 'GET / on the faucet describes every route and its body.';
      send(res, ERRORS[code].status, errorBody(code, requestId, { message, hint }));
    }
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve));
  const bound = server.address() as AddressInfo;
  url = `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
  return {
    url,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
};
