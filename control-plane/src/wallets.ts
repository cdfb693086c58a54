// Wallet ownership proofs for account recovery (DESIGN §3.1): the server hands out a sign-in message carrying a
// single-use nonce, the agent signs it with the wallet registered to its account, and we check the signature and that
// the message is exactly one we could have issued.
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import {
  getAddressEncoder,
  getBase58Encoder,
  isAddress as isSolanaAddress,
  type Address as SolanaAddress,
} from '@solana/kit';
import { type Address, getAddress, isAddress as isEvmAddress, verifyMessage } from 'viem';
import { createSiweMessage, parseSiweMessage, validateSiweMessage } from 'viem/siwe';

export type WalletChain = 'evm' | 'solana';

const RECOVERY_STATEMENT = 'Recover your Crochet API key. Your earlier keys will be revoked.';

// ASN.1 header of an Ed25519 SubjectPublicKeyInfo; node:crypto only imports raw keys wrapped this way (or as JWK).
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const NONCE_RE = /^[a-zA-Z0-9]{8,}$/;
const EVM_SIGNATURE_RE = /^0x[0-9a-fA-F]{130}$/;
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const BASE64URL_RE = /^[A-Za-z0-9_-]+$/;

/** Normalized address (EVM: EIP-55 checksummed via getAddress; Solana: the base58 string if it decodes to 32 bytes) or null when invalid. */
export function normalizeWalletAddress(chain: WalletChain, address: string): string | null {
  const trimmed = address.trim();
  if (chain === 'evm') {
    // Strict mode rejects mixed-case input whose checksum is wrong: that is almost always a typo, not another wallet.
    return isEvmAddress(trimmed) ? getAddress(trimmed) : null;
  }
  // Base58 is a bijection between strings and byte arrays, so a string that decodes to 32 bytes is already canonical.
  return isSolanaAddress(trimmed) ? trimmed : null;
}

export interface RecoveryMessageInput {
  chain: WalletChain;
  /** Normalized (see normalizeWalletAddress). */
  address: string;
  /** host[:port] of the public base URL. */
  domain: string;
  /** The public base URL. */
  uri: string;
  /** At least 8 alphanumeric characters. */
  nonce: string;
  issuedAt: Date;
  expiresAt: Date;
  evmChainId: number;
  /** e.g. 'mainnet' or 'localnet'. */
  solanaChainId: string;
}

/** EVM: an EIP-4361 (SIWE) message built with viem's createSiweMessage, statement 'Recover your Crochet API key. Your earlier keys will be revoked.'. Solana: the Sign-In-With-Solana text form (same layout as SIWE but header '<domain> wants you to sign in with your Solana account:' and 'Chain ID: <solanaChainId>'). */
export function buildRecoveryMessage(input: RecoveryMessageInput): string {
  if (input.chain === 'evm') {
    return createSiweMessage({
      address: input.address as Address,
      chainId: input.evmChainId,
      domain: input.domain,
      uri: input.uri,
      nonce: input.nonce,
      issuedAt: input.issuedAt,
      expirationTime: input.expiresAt,
      statement: RECOVERY_STATEMENT,
      version: '1',
    });
  }
  return renderSolanaMessage({
    domain: input.domain,
    address: input.address,
    statement: RECOVERY_STATEMENT,
    uri: input.uri,
    chainId: input.solanaChainId,
    nonce: input.nonce,
    issuedAt: input.issuedAt,
    expirationTime: input.expiresAt,
  });
}

/** The nonce written in a recovery message (the 'Nonce: ' line), or null. */
export function recoveryMessageNonce(message: string): string | null {
  const lines = message.split('\n').filter((line) => line.startsWith('Nonce: '));
  // Two Nonce lines would let a message be looked up under one nonce and validated under another.
  if (lines.length !== 1) return null;
  const nonce = lines[0]!.slice('Nonce: '.length);
  return NONCE_RE.test(nonce) ? nonce : null;
}

/** Verifies a wallet signature over the exact message. EVM: EIP-191 personal_sign signature as 0x-hex (65 bytes), checked with viem verifyMessage (EOA only); Solana: ed25519 signature of the UTF-8 message bytes, given as base58 (64 bytes) or base64. Returns false (never throws) for malformed signatures or addresses. */
export async function verifyWalletSignature(
  chain: WalletChain,
  address: string,
  message: string,
  signature: string,
): Promise<boolean> {
  try {
    const normalized = normalizeWalletAddress(chain, address);
    if (normalized === null) return false;
    if (chain === 'evm') {
      if (!EVM_SIGNATURE_RE.test(signature)) return false;
      // The pure utility (not the public-client action) only does ecrecover, so contract wallets are never consulted.
      return await verifyMessage({ address: normalized as Address, message, signature: signature as `0x${string}` });
    }
    const publicKey = createPublicKey({
      key: Buffer.concat([ED25519_SPKI_PREFIX, Buffer.from(getAddressEncoder().encode(normalized as SolanaAddress))]),
      format: 'der',
      type: 'spki',
    });
    const data = Buffer.from(message, 'utf8');
    // An 86–88 character string can be valid in both alphabets, so every 64-byte reading gets a chance.
    return decodeSolanaSignature(signature).some((sig) => cryptoVerify(null, data, publicKey, sig));
  } catch {
    return false;
  }
}

/** For EVM messages, also parse with parseSiweMessage and check domain/address/nonce/expiry agree (validateSiweMessage); returns true for solana messages whose Nonce/Expiration lines agree. */
export function recoveryMessageMatches(input: {
  chain: WalletChain;
  address: string;
  domain: string;
  nonce: string;
  message: string;
  now: Date;
}): boolean {
  try {
    const address = normalizeWalletAddress(input.chain, input.address);
    if (address === null || Number.isNaN(input.now.getTime())) return false;
    if (recoveryMessageNonce(input.message) !== input.nonce) return false;
    if (input.chain === 'evm') return evmMessageMatches(input.message, address, input.domain, input.nonce, input.now);
    return solanaMessageMatches(input.message, address, input.domain, input.nonce, input.now);
  } catch {
    return false;
  }
}

function evmMessageMatches(message: string, address: string, domain: string, nonce: string, now: Date): boolean {
  const parsed = parseSiweMessage(message);
  // viem's parser is unanchored and skips unknown text; re-rendering the parsed fields and demanding the identical
  // string rejects messages with smuggled lines or fields we never issue (recovery messages always expire).
  if (!parsed.address || !parsed.chainId || !parsed.domain || !parsed.uri || !parsed.nonce) return false;
  if (!parsed.issuedAt || !parsed.expirationTime || parsed.version !== '1') return false;
  if (Number.isNaN(parsed.issuedAt.getTime()) || Number.isNaN(parsed.expirationTime.getTime())) return false;
  const canonical = createSiweMessage({
    address: parsed.address,
    chainId: parsed.chainId,
    domain: parsed.domain,
    uri: parsed.uri,
    nonce: parsed.nonce,
    issuedAt: parsed.issuedAt,
    expirationTime: parsed.expirationTime,
    statement: parsed.statement,
    version: '1',
  });
  // The statement warns that earlier keys get revoked; a sign-in made for any other purpose must not recover a key.
  if (canonical !== message || parsed.statement !== RECOVERY_STATEMENT) return false;
  return validateSiweMessage({ message: parsed, address: address as Address, domain, nonce, time: now });
}

interface SolanaMessageFields {
  domain: string;
  address: string;
  statement: string;
  uri: string;
  chainId: string;
  nonce: string;
  issuedAt: Date;
  expirationTime: Date;
}

function renderSolanaMessage(fields: SolanaMessageFields): string {
  if (!NONCE_RE.test(fields.nonce)) throw new Error('nonce must be at least 8 alphanumeric characters');
  // One field per line is what makes the message parseable, so nothing may carry its own line break.
  for (const value of [fields.domain, fields.address, fields.statement, fields.uri, fields.chainId]) {
    if (value === '' || /[\r\n]/.test(value)) throw new Error('Sign-In-With-Solana fields must be single-line');
  }
  if (/\s/.test(fields.domain)) throw new Error('domain must be an RFC 3986 authority');
  return [
    `${fields.domain} wants you to sign in with your Solana account:`,
    fields.address,
    '',
    fields.statement,
    '',
    `URI: ${fields.uri}`,
    'Version: 1',
    `Chain ID: ${fields.chainId}`,
    `Nonce: ${fields.nonce}`,
    `Issued At: ${fields.issuedAt.toISOString()}`,
    `Expiration Time: ${fields.expirationTime.toISOString()}`,
  ].join('\n');
}

const SOLANA_MESSAGE_RE =
  /^(?<domain>\S+) wants you to sign in with your Solana account:\n(?<address>[1-9A-HJ-NP-Za-km-z]{32,44})\n\n(?<statement>[^\n]+)\n\nURI: (?<uri>[^\n]+)\nVersion: 1\nChain ID: (?<chainId>[^\n]+)\nNonce: (?<nonce>[a-zA-Z0-9]{8,})\nIssued At: (?<issuedAt>[^\n]+)\nExpiration Time: (?<expirationTime>[^\n]+)$/;

function parseSolanaMessage(message: string): SolanaMessageFields | null {
  const groups = SOLANA_MESSAGE_RE.exec(message)?.groups;
  if (!groups) return null;
  const issuedAt = new Date(groups['issuedAt']!);
  const expirationTime = new Date(groups['expirationTime']!);
  if (Number.isNaN(issuedAt.getTime()) || Number.isNaN(expirationTime.getTime())) return null;
  return {
    domain: groups['domain']!,
    address: groups['address']!,
    statement: groups['statement']!,
    uri: groups['uri']!,
    chainId: groups['chainId']!,
    nonce: groups['nonce']!,
    issuedAt,
    expirationTime,
  };
}

function solanaMessageMatches(message: string, address: string, domain: string, nonce: string, now: Date): boolean {
  const parsed = parseSolanaMessage(message);
  if (!parsed) return false;
  // Date parsing accepts many spellings; only the exact form we render counts, as with EVM.
  if (renderSolanaMessage(parsed) !== message) return false;
  return (
    parsed.statement === RECOVERY_STATEMENT &&
    parsed.domain === domain &&
    parsed.address === address &&
    parsed.nonce === nonce &&
    now.getTime() < parsed.expirationTime.getTime()
  );
}

function decodeSolanaSignature(signature: string): Buffer[] {
  const candidates: Buffer[] = [];
  try {
    candidates.push(Buffer.from(getBase58Encoder().encode(signature)));
  } catch {
    // Not base58; base64 may still apply.
  }
  // Buffer's base64 decoder silently skips invalid characters, so the alphabet is checked first.
  if (BASE64_RE.test(signature)) candidates.push(Buffer.from(signature, 'base64'));
  else if (BASE64URL_RE.test(signature)) candidates.push(Buffer.from(signature, 'base64url'));
  return candidates.filter((sig) => sig.length === 64);
}
