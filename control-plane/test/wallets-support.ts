import { generateKeyPairSync, sign } from 'node:crypto';
import { redisKeys } from '@crochet/protocol';
import { getBase58Decoder } from '@solana/kit';
import { Redis } from 'ioredis';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { TEST_REDIS_URL, type TestPlane, type TestWallet } from './helpers.js';

/** A fresh EVM wallet (personal_sign, as SIWE wallets sign). */
export const evmWallet = (): TestWallet & { address: `0x${string}` } => {
  const account = privateKeyToAccount(generatePrivateKey());
  return { chain: 'evm', address: account.address, sign: (message) => account.signMessage({ message }) };
};

/** A fresh Solana wallet (ed25519 over the message bytes, base58, as signMessage gives it). */
export const solanaWallet = (): TestWallet => {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const base58 = getBase58Decoder();
  return {
    chain: 'solana',
    address: base58.decode(Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url')),
    sign: (message) => base58.decode(sign(null, Buffer.from(message, 'utf8'), privateKey)),
  };
};

/** The EVM wallets in an agent's published config entry, read from Redis as a proxy reads it. */
export const publishedEvmWallets = async (plane: TestPlane, agentId: string): Promise<string[] | undefined> => {
  const redis = new Redis(TEST_REDIS_URL);
  try {
    const entry = await redis.hget(redisKeys(plane.config.redisPrefix).configAgents, agentId);
    return entry ? (JSON.parse(entry).evm_wallets as string[]) : undefined;
  } finally {
    redis.disconnect();
  }
};
