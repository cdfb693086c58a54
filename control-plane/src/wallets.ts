// Wallet ownership proofs (DESIGN §3.1, §3.9): the server hands out a sign-in message carrying a single-use nonce, the
// agent signs it with the wallet, and we check the signature and that the message is exactly one we could have issued
// for that purpose. One implementation serves recovery (any holder of a registered wallet gets a new key) and
// verification (an agent adds a wallet with its API key); the statement tells the two apart, and a verification
// statement names the agent, so a signature made for one purpose or agent is worthless for another.
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { ApiError } from '@crochet/protocol';
import {
  getAddressEncoder,
  getBase58Encoder,
  isAddress as isSolanaAddress,
  type Address as SolanaAddress,
} from '@solana/kit';
import { type Address, getAddress, isAddress as isEvmAddress, verifyMessage } from 'viem';
import { createSiweMessage, parseSiweMessage, validateSiweMessage } from 'viem/siwe';

export type WalletChain = 'evm' | 'solana';

/** The statement of a recovery message: whoever signs it gets a new key for the wallet's agent. */
export const RECOVERY_STATEMENT = 'Recover your Crochet API key. Your earlier keys will be revoked.';

/** The statement of a verification message: names the agent the wallet is added to, and what that means. */
export const verificationStatement = (agentId: string): string =>
  `Add this wallet to Crochet agent ${agentId}: payments from it count as this agent's and payouts may be sent to it.`;

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

/** The normalized address, or 400 WALLET_ADDRESS_INVALID. */
export const walletAddressOrThrow = (chain: WalletChain, address: string): string => {
  const normalized = normalizeWalletAddress(chain, address);
  if (normalized === null) throw new ApiError('WALLET_ADDRESS_INVALID');
  return normalized;
};

/** Where messages are issued: the public site and the chain ids written in them. */
export interface SignInSite {
  /** host[:port] of the public base URL. */
  domain: string;
  /** The public base URL. */
  uri: string;
  evmChainId: number;
  /** e.g. 'mainnet' or 'localnet'. */
  solanaChainId: string;
}

/** The site of a public base URL. */
export const signInSite = (publicBaseUrl: string, evmChainId: number, solanaChainId: string): SignInSite => {
  const base = new URL(publicBaseUrl);
  return { domain: base.host, uri: base.origin, evmChainId, solanaChainId };
};

export interface SignInMessageInput {
  chain: WalletChain;
  /** Normalized (see normalizeWalletAddress). */
  address: string;
  /** RECOVERY_STATEMENT or verificationStatement(agentId); one line. */
  statement: string;
  site: SignInSite;
  /** At least 8 alphanumeric characters. */
  nonce: string;
  issuedAt: Date;
  expiresAt: Date;
}

/** EVM: an EIP-4361 (SIWE) message built with viem's createSiweMessage. Solana: the Sign-In-With-Solana text form (same layout as SIWE but header '<domain> wants you to sign in with your Solana account:' and 'Chain ID: <solanaChainId>'). Both carry domain, address, statement, URI, version 1, chain id, nonce, issued-at and expiration. */
export function buildSignInMessage(input: SignInMessageInput): string {
  const { site } = input;
  if (input.chain === 'evm') {
    return createSiweMessage({
      address: input.address as Address,
      chainId: site.evmChainId,
      domain: site.domain,
      uri: site.uri,
      nonce: input.nonce,
      issuedAt: input.issuedAt,
      expirationTime: input.expiresAt,
      statement: input.statement,
      version: '1',
    });
  }
  return renderSolanaMessage({
    domain: site.domain,
    address: input.address,
    statement: input.statement,
    uri: site.uri,
    chainId: site.solanaChainId,
    nonce: input.nonce,
    issuedAt: input.issuedAt,
    expirationTime: input.expiresAt,
  });
}

/** The nonce written in a sign-in message (the 'Nonce: ' line), or null. */
export function signInMessageNonce(message: string): string | null {
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

/** What a signed message must be: the expected statement, site, wallet address and nonce, at `now`. */
export interface ExpectedSignIn {
  chain: WalletChain;
  address: string;
  statement: string;
  site: SignInSite;
  nonce: string;
  message: string;
  now: Date;
}

/** Whether `message` is exactly a message this server renders for the expected statement, site, address and nonce, not yet expired at `now`. EVM: parsed with parseSiweMessage, re-rendered and compared, then validateSiweMessage (domain, address, nonce, time) plus URI and chain id; Solana: the same fields from the Sign-In-With-Solana form. */
export function signInMessageMatches(input: ExpectedSignIn): boolean {
  try {
    const address = normalizeWalletAddress(input.chain, input.address);
    if (address === null || Number.isNaN(input.now.getTime())) return false;
    if (signInMessageNonce(input.message) !== input.nonce) return false;
    const expected = { ...input, address };
    return input.chain === 'evm' ? evmMessageMatches(expected) : solanaMessageMatches(expected);
  } catch {
    return false;
  }
}

function evmMessageMatches({ message, address, statement, site, nonce, now }: ExpectedSignIn): boolean {
  const parsed = parseSiweMessage(message);
  // viem's parser is unanchored and skips unknown text; re-rendering the parsed fields and demanding the identical
  // string rejects messages with smuggled lines or fields we never issue (our messages always expire).
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
  // The statement says what the signature is for (recovery revokes keys; verification names one agent): a sign-in
  // made for any other purpose or agent must not count.
  if (canonical !== message || parsed.statement !== statement) return false;
  // EIP-4361 §5.3 (verifying): the URI and chain id must be the relying party's own, as the domain must.
  if (parsed.uri !== site.uri || parsed.chainId !== site.evmChainId) return false;
  if (parsed.issuedAt.getTime() >= parsed.expirationTime.getTime()) return false;
  return validateSiweMessage({ message: parsed, address: address as Address, domain: site.domain, nonce, time: now });
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

function solanaMessageMatches({ message, address, statement, site, nonce, now }: ExpectedSignIn): boolean {
  const parsed = parseSolanaMessage(message);
  if (!parsed) return false;
  // Date parsing accepts many spellings; only the exact form we render counts, as with EVM.
  if (renderSolanaMessage(parsed) !== message) return false;
  return (
    parsed.statement === statement &&
    parsed.domain === site.domain &&
    parsed.uri === site.uri &&
    parsed.chainId === site.solanaChainId &&
    parsed.address === address &&
    parsed.nonce === nonce &&
    parsed.issuedAt.getTime() < parsed.expirationTime.getTime() &&
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
